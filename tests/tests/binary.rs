//! Binary payloads end to end, against a real hub over real sockets: the
//! SDK publishing and sending bytes as binary messages, members that speak
//! binary getting them raw and JSON-only ones as base64 text, bytes through
//! history, recovery, the inbox, SSE, the HTTP API and a compressed
//! connection. Hostile binary input (broken envelopes, binary before
//! auth, compressed bombs) is in `hostile.rs`.

use futures::SinkExt;
use serde_json::{Value, json};
use switchboard_protocol::binary::{envelope, split_envelope, to_base64};
use switchboard_protocol::{Encoding, ServerFrame};
use switchboard_tests::{
    Event, Proxy, SseReader, TestServer, client_at, connect, eventually, fast_reconnect, post_json,
    raw_connect, raw_next, raw_send,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Every byte value, and more: a payload no text encoding would survive.
fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|n| (n * 7 % 256) as u8).collect()
}

/// A raw WebSocket that asked for binary, with its `welcome` read.
async fn raw_binary(server: &TestServer, user: &str) -> switchboard_tests::RawSocket {
    let url = format!("{}?user_id={user}&binary=1", server.ws_url());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(matches!(raw_next(&mut socket).await, ServerFrame::Welcome(_)));
    socket
}

/// Sends `frame` on a raw socket and reads until its ack.
async fn raw_request(socket: &mut switchboard_tests::RawSocket, frame: Value) {
    let id = frame["id"].as_str().unwrap().to_owned();
    raw_send(socket, &frame.to_string()).await;
    loop {
        match raw_next(socket).await {
            ServerFrame::Ack(ack) if ack.id == id => return,
            ServerFrame::Error(err) => panic!("{err:?}"),
            _ => {}
        }
    }
}

/// The next binary message on a raw socket, past text frames.
async fn raw_next_binary(socket: &mut switchboard_tests::RawSocket) -> Vec<u8> {
    loop {
        match switchboard_tests::raw_next_message(socket).await {
            WsMessage::Binary(bytes) => return bytes.to_vec(),
            WsMessage::Text(_) | WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bytes_published_by_the_sdk_arrive_as_bytes_and_as_base64_for_json_clients() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    let (bob, mut bob_events) = connect(&server, "bob").await;
    alice.join("files").await.unwrap();
    bob.join("files").await.unwrap();
    let (mut json_only, _) = raw_connect(&server, "carol").await;
    raw_request(&mut json_only, json!({"type": "join", "id": "j", "room": "files"})).await;

    let bytes = blob(70_000);
    alice.publish_bytes("files", "upload", bytes.clone()).await.unwrap();
    let got = bob_events.next_message().await;
    assert_eq!(got.binary.as_deref(), Some(&bytes[..]));
    assert_eq!((got.data, got.encoding, got.event.as_str()), (Value::Null, None, "upload"));
    assert_eq!(got.from, "alice");
    // The sender in the room gets its own message, as for JSON.
    assert_eq!(alice_events.next_message().await.binary.as_deref(), Some(&bytes[..]));
    // A client that speaks only JSON reads base64 text and the encoding.
    let message = loop {
        if let ServerFrame::Message(message) = raw_next(&mut json_only).await {
            break message;
        }
    };
    assert_eq!(message.encoding, Some(Encoding::Base64));
    assert_eq!(message.data, json!(to_base64(&bytes)));

    // A JSON payload next to it is untouched.
    alice.publish("files", "note", json!({"n": 1})).await.unwrap();
    let note = bob_events.next_message().await;
    assert_eq!((note.data, note.binary), (json!({"n": 1}), None));
}

#[tokio::test]
async fn a_raw_binary_publish_goes_out_as_a_binary_message_with_its_header() {
    let server = TestServer::start().await;
    let mut sender = raw_binary(&server, "ann").await;
    let mut reader = raw_binary(&server, "ben").await;
    for socket in [&mut sender, &mut reader] {
        raw_request(socket, json!({"type": "join", "id": "j", "room": "raw"})).await;
    }
    let header = r#"{"type":"publish","id":"p","room":"raw","event":"bin","exclude_self":true}"#;
    sender.send(WsMessage::Binary(envelope(header, &[0, 255, 10]).into())).await.unwrap();
    let got = raw_next_binary(&mut reader).await;
    let (header, payload) = split_envelope(&got).unwrap();
    assert_eq!(payload, &[0, 255, 10]);
    let header: Value = serde_json::from_str(header).unwrap();
    assert_eq!(header["type"], "message");
    assert_eq!((header["room"].as_str(), header["from"].as_str()), (Some("raw"), Some("ann")));
    assert_eq!(header["offset"], 1);
    assert!(header.get("data").is_none());
}

#[tokio::test]
async fn bytes_come_back_from_history_and_from_a_resumed_join() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (reader, mut reader_events) = client_at(&proxy.ws_url(), "reader", fast_reconnect());
    reader.connect().await.unwrap();
    reader.join("archive").await.unwrap();
    let (writer, _) = connect(&server, "writer").await;
    writer.join("archive").await.unwrap();
    writer.publish_bytes("archive", "chunk", blob(10)).await.unwrap();
    assert_eq!(reader_events.next_message().await.binary, Some(blob(10)));

    // Cut off, while two more chunks and a JSON message are published.
    proxy.refuse(true);
    proxy.cut_all();
    eventually("the reader to notice", || async { (!reader.is_connected()).then_some(()) }).await;
    writer.publish_bytes("archive", "chunk", blob(3_000)).await.unwrap();
    writer.publish("archive", "text", "between").await.unwrap();
    writer.publish_bytes("archive", "chunk", vec![]).await.unwrap();
    proxy.refuse(false);
    // The replay comes before the rejoin's answer.
    let mut replayed = Vec::new();
    loop {
        match reader_events.next().await {
            Event::Message(message) => replayed.push((message.binary, message.data)),
            Event::Joined(joined) if joined.rejoin => {
                assert_eq!(joined.recovered, Some(true));
                break;
            }
            _ => {}
        }
    }
    assert_eq!(
        replayed,
        [(Some(blob(3_000)), Value::Null), (None, json!("between")), (Some(vec![]), Value::Null)]
    );

    // A history page carries base64 text; the SDK shows bytes.
    let page = writer.history("archive", None, None).await.unwrap();
    let payloads: Vec<_> = page.messages.iter().map(|m| (m.binary.clone(), m.encoding)).collect();
    assert_eq!(
        payloads,
        [(Some(blob(10)), None), (Some(blob(3_000)), None), (None, None), (Some(vec![]), None)]
    );
}

#[tokio::test]
async fn bytes_sent_privately_wait_in_the_inbox_and_arrive_as_bytes() {
    let server = TestServer::start().await;
    let (sender, _) = connect(&server, "sender").await;
    let reached = sender.send_bytes("later", "key", blob(300)).await.unwrap();
    assert_eq!(reached, 0, "nobody connected: it waits in the inbox");
    let (_later, mut events) = connect(&server, "later").await;
    let got = events.next_message().await;
    assert_eq!((got.binary, got.to.as_deref()), (Some(blob(300)), Some("later")));
}

#[tokio::test]
async fn the_http_api_publishes_bytes_as_base64_and_sse_reads_them_so() {
    let server = TestServer::start().await;
    let (client, mut events) = connect(&server, "viewer").await;
    client.join("feed").await.unwrap();
    let mut sse = SseReader::open(&server, "user_id=watcher&rooms=feed", None).await;
    let bytes = blob(600);
    let answer = post_json(
        &server,
        "/api/broadcast",
        json!({"room": "feed", "event": "thumb", "data": to_base64(&bytes), "encoding": "base64"}),
    )
    .await;
    assert_eq!(answer["delivered"], 2, "the SDK client and the SSE feed: {answer}");
    assert_eq!(events.next_message().await.binary, Some(bytes.clone()));
    let event = loop {
        let event = sse.next().await;
        if event.event.is_none() {
            break event;
        }
    };
    let frame: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(
        (frame["data"].as_str(), frame["encoding"].as_str()),
        (Some(&*to_base64(&bytes)), Some("base64"))
    );

    // Text that is not base64 is refused, and nothing is sent.
    let refused = switchboard_tests::http()
        .post(server.http("/api/send"))
        .json(&json!({"to": "viewer", "event": "x", "data": "not base64!", "encoding": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 422);
}

#[tokio::test]
async fn a_long_binary_message_goes_compressed_to_a_client_that_negotiated_deflate() {
    use switchboard_tests::RawTcp;
    use switchboard_tests::deflate::{BROWSER_OFFER, inflate};
    let server = TestServer::start().await;
    let mut raw =
        RawTcp::connect_with_headers(&server, "user_id=zip&binary=1", BROWSER_OFFER).await;
    let join = json!({"type": "join", "id": "j", "room": "zip"}).to_string();
    raw.send_frame(1, true, join.as_bytes()).await;
    loop {
        let frame = raw.next_frame().await.expect("a frame");
        if frame.opcode == 1 && frame.text().contains(r#""id":"j""#) {
            break;
        }
    }
    let (publisher, _) = connect(&server, "publisher").await;
    // Compressible bytes, well past the threshold.
    let bytes = vec![42u8; 20_000];
    publisher.join("zip").await.unwrap();
    publisher.publish_bytes("zip", "flat", bytes.clone()).await.unwrap();
    let frame = loop {
        let frame = raw.next_frame().await.expect("a frame");
        if frame.opcode == 2 {
            break frame;
        }
    };
    assert!(frame.rsv1, "compressed");
    assert!(frame.payload.len() < 1_000, "{} bytes on the wire", frame.payload.len());
    let inflated = inflate(&frame.payload);
    assert_eq!(split_envelope(&inflated).unwrap().1, &bytes[..]);
}

/// The SDK's side of the wire, against a hub the test plays: bytes go out
/// as a binary message (an envelope whose header is the publish without
/// data), a binary message in is a message with bytes, and on a URL that
/// says `binary=0` the same bytes go as base64 text.
#[tokio::test]
async fn the_sdk_sends_and_reads_bytes_as_binary_messages_and_as_base64_when_told_to() {
    use switchboard_sdk::Client;
    use switchboard_tests::scripted::ScriptedHub;
    for binary in [true, false] {
        let mut hub = ScriptedHub::start().await;
        let url = if binary { hub.ws_url() } else { format!("{}?binary=0", hub.ws_url()) };
        let client = Client::builder(url).user("alice").build().unwrap();
        let mut events = switchboard_tests::record(&client);
        let mut connection = hub.welcomed(&client).await;
        let publish = tokio::spawn({
            let client = client.clone();
            async move { client.publish_bytes("r", "blob", vec![0u8, 1, 255]).await }
        });
        let id = match connection.message().await.expect("the publish") {
            WsMessage::Binary(message) if binary => {
                let (header, payload) = split_envelope(&message).unwrap();
                assert_eq!(payload, &[0, 1, 255]);
                let header: Value = serde_json::from_str(header).unwrap();
                assert_eq!(
                    (header["type"].as_str(), header["room"].as_str()),
                    (Some("publish"), Some("r"))
                );
                assert!(header.get("data").is_none(), "{header}");
                header["id"].as_str().unwrap().to_owned()
            }
            WsMessage::Text(text) if !binary => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(
                    (frame["data"].as_str(), frame["encoding"].as_str()),
                    (Some("AAH/"), Some("base64"))
                );
                frame["id"].as_str().unwrap().to_owned()
            }
            other => panic!("binary={binary}: {other:?}"),
        };
        connection.ack(&id).await;
        publish.await.unwrap().unwrap();
        // A message with bytes, as the hub writes it to a binary client.
        let header = r#"{"type":"message","room":"r","from":"bob","event":"blob","ts":1}"#;
        connection.send_binary(envelope(header, &[9, 8, 7])).await;
        let got = events.next_message().await;
        assert_eq!(
            (got.binary, got.data, got.from.as_str()),
            (Some(vec![9, 8, 7]), Value::Null, "bob")
        );
        client.close().await;
    }
}

/// A replay after a reconnect reaches a raw client that speaks binary as
/// binary messages, in order with the JSON ones.
#[tokio::test]
async fn a_resumed_join_replays_bytes_as_binary_messages() {
    let server = TestServer::start().await;
    let mut first = raw_binary(&server, "reader").await;
    let join = json!({"type": "join", "id": "j", "room": "replay"});
    raw_send(&mut first, &join.to_string()).await;
    let epoch = loop {
        if let ServerFrame::Ack(ack) = raw_next(&mut first).await {
            break ack.epoch.unwrap();
        }
    };
    drop(first);
    let (writer, _) = connect(&server, "writer").await;
    writer.join("replay").await.unwrap();
    writer.publish_bytes("replay", "chunk", blob(100)).await.unwrap();
    writer.publish("replay", "text", "plain").await.unwrap();
    let mut again = raw_binary(&server, "reader").await;
    let join = json!({"type": "join", "id": "k", "room": "replay", "since": {"epoch": epoch, "offset": 0}});
    raw_send(&mut again, &join.to_string()).await;
    let bytes = raw_next_binary(&mut again).await;
    let (header, payload) = split_envelope(&bytes).unwrap();
    assert_eq!(payload, &blob(100)[..]);
    assert!(header.contains(r#""offset":1"#), "{header}");
    let text = loop {
        if let ServerFrame::Message(message) = raw_next(&mut again).await {
            break message;
        }
    };
    assert_eq!((text.data, text.offset), (json!("plain"), Some(2)));
}

#[tokio::test]
async fn the_api_sends_bytes_to_one_session_and_broadcasts_them_to_everyone() {
    let server = TestServer::start().await;
    let (_client, mut events) = connect(&server, "tab").await;
    let mut raw = raw_binary(&server, "raw").await;
    let welcome_of = |value: &Value| value["session"].as_str().unwrap().to_owned();
    let listing = switchboard_tests::get_json(&server, "/api/connections?user=tab").await;
    let session = welcome_of(&listing["connections"][0]);
    let answer = post_json(
        &server,
        &format!("/api/connections/{session}/send"),
        json!({"event": "one", "data": to_base64(&[1, 2, 3]), "encoding": "base64"}),
    )
    .await;
    assert_eq!(answer["status"], "reached", "{answer}");
    assert_eq!(events.next_message().await.binary, Some(vec![1, 2, 3]));
    let answer = post_json(
        &server,
        "/api/broadcast",
        json!({"event": "all", "data": to_base64(&[4, 5]), "encoding": "base64"}),
    )
    .await;
    assert_eq!(answer["delivered"], 2, "{answer}");
    assert_eq!(events.next_message().await.binary, Some(vec![4, 5]));
    let got = raw_next_binary(&mut raw).await;
    let (header, payload) = split_envelope(&got).unwrap();
    assert_eq!(payload, &[4, 5]);
    assert!(
        !header.contains("room") && !header.contains("offset"),
        "a broadcast to everyone: {header}"
    );
}
