//! permessage-deflate over real sockets, spoken by hand: the negotiation,
//! RSV1 frames both ways, one compressed form shared by a room's members,
//! batched messages inflated whole, and the counters in `/metrics`.
//! Hostile compressed input is in `hostile.rs`.

use serde_json::{Value, json};
use switchboard_server::Config;
use switchboard_server::config::CompressionConfig;
use switchboard_tests::deflate::{ANSWER, BROWSER_OFFER, compress};
use switchboard_tests::{RawTcp, TestServer, client_frame, http, test_config};

/// The next text frame: whether it came compressed, and its JSON.
async fn next_text(raw: &mut RawTcp) -> (bool, Value) {
    loop {
        let frame = raw.next_frame().await.expect("a frame");
        if frame.opcode == 1 {
            return (frame.rsv1, serde_json::from_str(&frame.text()).unwrap());
        }
    }
}

/// The next text frame of `kind` (`ack`, `message`, …), past presence and
/// the rest.
async fn next_of(raw: &mut RawTcp, kind: &str) -> (bool, Value) {
    loop {
        let (compressed, frame) = next_text(raw).await;
        if frame["type"] == kind {
            return (compressed, frame);
        }
    }
}

/// Connects `user` (offering deflate when `offer`), joins `room` and waits
/// for the join's ack.
async fn member(server: &TestServer, user: &str, extra: &str, offer: bool) -> RawTcp {
    let headers = if offer { BROWSER_OFFER } else { "" };
    let query = format!("user_id={user}{extra}");
    let mut raw = RawTcp::connect_with_headers(server, &query, headers).await;
    assert_eq!(next_text(&mut raw).await.1["type"], "welcome");
    let join = json!({"type": "join", "id": "j", "room": "big"}).to_string();
    send(&mut raw, &join, false).await;
    loop {
        let (_, frame) = next_text(&mut raw).await;
        if frame["type"] == "ack" && frame["id"] == "j" {
            return raw;
        }
    }
}

/// Sends one text message, compressed (RSV1) or not.
async fn send(raw: &mut RawTcp, text: &str, compressed: bool) {
    if compressed {
        raw.send_frame_rsv1(1, true, true, &compress(text.as_bytes())).await;
    } else {
        raw.send_frame(1, true, text.as_bytes()).await;
    }
}

/// A publish to `big` with `len` bytes of data.
fn publish(id: &str, len: usize) -> String {
    let data = "lorem ipsum dolor sit amet ".repeat(len / 27 + 1);
    json!({"type": "publish", "id": id, "room": "big", "event": id, "data": data}).to_string()
}

/// A figure of the hub's `/metrics`.
async fn figure(server: &TestServer, name: &str) -> u64 {
    let metrics = http().get(server.http("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| {
        panic!("{name} not in {metrics}");
    });
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_browser_offer_gets_deflate_and_a_room_message_arrives_compressed_and_intact() {
    let server = TestServer::start_with(test_config()).await;
    let mut zip = member(&server, "zip", "", true).await;
    assert_eq!(zip.answer_header("sec-websocket-extensions").as_deref(), Some(ANSWER));
    let mut plain = member(&server, "plain", "", false).await;
    assert_eq!(plain.answer_header("sec-websocket-extensions"), None, "nothing offered");

    // A compressed publish (RSV1) from the deflating member.
    send(&mut zip, &publish("p1", 4_000), true).await;
    let (ack_compressed, ack) = next_of(&mut zip, "ack").await;
    assert_eq!((ack["type"].as_str(), ack["id"].as_str()), (Some("ack"), Some("p1")));
    assert!(!ack_compressed, "an answer under the threshold goes plain");
    let (compressed, message) = next_of(&mut zip, "message").await;
    assert!(compressed, "a 4 KB message goes compressed");
    assert_eq!(message["type"], "message");
    assert!(message["data"].as_str().unwrap().starts_with("lorem ipsum"));
    // The member without the extension gets the same message, plain.
    assert_eq!(next_of(&mut plain, "message").await, (false, message));

    assert_eq!(figure(&server, "switchboard_deflate_connections_total").await, 1);
    let before = figure(&server, "switchboard_deflate_payload_bytes_total{stage=\"before\"}").await;
    let after = figure(&server, "switchboard_deflate_payload_bytes_total{stage=\"after\"}").await;
    assert!(before > 4_000 && after * 3 < before, "before {before}, after {after}");
}

#[tokio::test]
async fn a_batching_client_inflates_several_compressed_messages_from_one_frame() {
    let server = TestServer::start_with(test_config()).await;
    // The publishes go compressed in one write (about 5 KB), so the hub
    // reads and commits them together: the member's queue then holds them
    // all at once, and its writer sends them several to a write, joined
    // inside one deflate stream.
    let mut zip = member(&server, "zip", "&batch=1", true).await;
    let mut publisher = member(&server, "pub", "", true).await;
    let count = 30;
    let mut burst = Vec::new();
    for n in 0..count {
        let text = publish(&format!("m{n}"), 1_500 + n * 10);
        burst.extend(client_frame(1, true, 0x40, &compress(text.as_bytes())));
    }
    publisher.send_bytes(&burst).await;
    let mut acked = 0;
    while acked < count {
        acked += usize::from(next_of(&mut publisher, "ack").await.1["type"] == "ack");
    }
    let mut seen = Vec::new();
    let (mut compressed_frames, mut joined) = (0, 0);
    while seen.len() < count {
        let frame = zip.next_frame().await.expect("a frame");
        if frame.opcode != 1 {
            continue;
        }
        let text = frame.text();
        compressed_frames += usize::from(frame.rsv1);
        joined += usize::from(frame.rsv1 && text.contains('\n'));
        for line in text.split('\n') {
            let message: Value = serde_json::from_str(line).unwrap();
            if message["type"] == "message" {
                seen.push(message["event"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(compressed_frames >= 1);
    assert!(joined >= 1, "no compressed frame held several messages");
    let expected: Vec<String> = (0..count).map(|n| format!("m{n}")).collect();
    assert_eq!(seen, expected, "every message, in order");
}

#[tokio::test]
async fn compression_off_or_a_smaller_window_sends_nothing_compressed() {
    let off = Config {
        compression: CompressionConfig { enabled: false, ..CompressionConfig::default() },
        ..test_config()
    };
    let server = TestServer::start_with(off).await;
    let mut raw = member(&server, "zip", "", true).await;
    assert_eq!(raw.answer_header("sec-websocket-extensions"), None, "declined when off");
    send(&mut raw, &publish("p", 4_000), false).await;
    let (compressed, message) = next_of(&mut raw, "message").await;
    assert!(!compressed && message["data"].as_str().unwrap().len() > 4_000);
    server.stop().await;

    // A client that allows the hub only a 1 KiB window: agreed, inflated,
    // but what the hub sends goes plain (its frames are made for 32 KiB).
    let server = TestServer::start_with(test_config()).await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
    let mut raw = RawTcp::connect_with_headers(&server, "user_id=small&room=big", offer).await;
    assert_eq!(
        raw.answer_header("sec-websocket-extensions"),
        Some(format!("{ANSWER}; server_max_window_bits=10"))
    );
    send(&mut raw, &publish("p", 4_000), true).await;
    loop {
        let (compressed, frame) = next_text(&mut raw).await;
        assert!(!compressed, "{frame}");
        if frame["type"] == "message" {
            break;
        }
    }
}
