//! The hostile-client suite: every case asserts the exact answer (HTTP
//! status, error code or close code) over real sockets, and that a
//! well-behaved client connected alongside keeps receiving its messages.

use std::time::Duration;

use futures::SinkExt;
use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};
use switchboard_protocol::{CloseCode, ErrorCode, MAX_ID_BYTES, ServerFrame};
use switchboard_server::Config;
use switchboard_server::config::{Access, RoomRule};
use switchboard_tests::deflate::{self, BROWSER_OFFER};
use switchboard_tests::{
    RawSocket, RawTcp, TIMEOUT, TestServer, get_json, http, raw_close_code, raw_next, raw_send,
    test_config,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "hostile-suite-secret";

/// A client that behaves, in room `calm`; `check` proves it still receives.
struct Bystander {
    socket: RawSocket,
    marker: u64,
    /// Every other message that reached it, for tests asserting that
    /// nothing leaked.
    others: Vec<switchboard_protocol::Message>,
}

impl Bystander {
    async fn join(server: &TestServer, query: &str) -> Bystander {
        let mut socket = open(server, query).await.expect("the bystander connects");
        welcome(&mut socket).await;
        raw_send(&mut socket, r#"{"type":"join","id":"calm","room":"calm"}"#).await;
        loop {
            if let ServerFrame::Ack(ack) = raw_next(&mut socket).await {
                if ack.id == "calm" {
                    break;
                }
            }
        }
        Bystander { socket, marker: 0, others: Vec::new() }
    }

    /// A fresh broadcast to `calm` reaches the bystander.
    async fn check(&mut self, server: &TestServer, key: Option<&str>) {
        self.marker += 1;
        let mut request = http().post(server.http("/api/broadcast"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request
            .json(&json!({"event": "marker", "room": "calm", "data": self.marker}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        loop {
            if let ServerFrame::Message(m) = raw_next(&mut self.socket).await {
                if m.event == "marker" && m.data == json!(self.marker) {
                    return;
                }
                self.others.push(m);
            }
        }
    }
}

/// Opens a raw WebSocket with `query`; the HTTP status on refusal.
async fn open(server: &TestServer, query: &str) -> Result<RawSocket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    handshake(format!("{}?{query}", server.ws_url()).into_client_request().unwrap()).await
}

/// Performs a WebSocket handshake; the HTTP status when refused.
async fn handshake(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<RawSocket, u16> {
    match tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("in time")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected handshake failure: {other}"),
    }
}

async fn welcome(socket: &mut RawSocket) {
    assert!(matches!(raw_next(socket).await, ServerFrame::Welcome(_)));
}

async fn connected(server: &TestServer, user: &str) -> RawSocket {
    let mut socket = open(server, &format!("user_id={user}")).await.unwrap();
    welcome(&mut socket).await;
    socket
}

/// Sends `text` and expects an `error` frame with `code`.
async fn expect_error(socket: &mut RawSocket, text: &str, code: ErrorCode) {
    raw_send(socket, text).await;
    loop {
        match raw_next(socket).await {
            ServerFrame::Error(error) => {
                assert_eq!(error.code, code, "{text:.80}: {}", error.message);
                return;
            }
            // Answers to earlier requests may still be on their way.
            ServerFrame::Presence(_) | ServerFrame::Message(_) | ServerFrame::Ack(_) => continue,
            other => panic!("{text:.80}: expected error {code}, got {other:?}"),
        }
    }
}

async fn ping_pong(socket: &mut RawSocket, id: &str) {
    raw_send(socket, &format!(r#"{{"type":"ping","id":"{id}"}}"#)).await;
    loop {
        match raw_next(socket).await {
            ServerFrame::Pong { id: Some(got) } if got == id => return,
            ServerFrame::Error(error) if error.code == ErrorCode::RATE_LIMITED => continue,
            ServerFrame::Presence(_) | ServerFrame::Message(_) | ServerFrame::Pong { .. } => {
                continue;
            }
            other => panic!("expected pong {id}, got {other:?}"),
        }
    }
}

fn token(claims: Value, secret: &str) -> String {
    encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn user_token(user: &str) -> String {
    token(json!({"sub": user, "exp": now() + 600}), SECRET)
}

fn token_config() -> Config {
    let mut config = test_config();
    config.auth.jwt_secret = Some(SECRET.into());
    config.auth.auth_timeout_ms = 500;
    config
}

// ---- malformed and oversized frames ----

#[tokio::test]
async fn frame_errors_get_their_codes_and_the_connection_goes_on() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    let cases: [(&str, ErrorCode); 9] = [
        ("{this is not json", ErrorCode::MALFORMED),
        ("[1,2,3]", ErrorCode::MALFORMED),
        (r#"{"no":"type"}"#, ErrorCode::MALFORMED),
        (r#"{"type":"teleport"}"#, ErrorCode::UNKNOWN_TYPE),
        (r#"{"type":"join","room":5}"#, ErrorCode::INVALID_FRAME),
        (r#"{"type":"send","event":"x"}"#, ErrorCode::INVALID_FRAME),
        (r#"{"type":"publish","room":["a"],"event":"x"}"#, ErrorCode::INVALID_FRAME),
        (r#"{"type":"join","room":""}"#, ErrorCode::INVALID_NAME),
        (r#"{"type":"join","room":"a\u0007b"}"#, ErrorCode::INVALID_NAME),
    ];
    for (text, code) in cases {
        expect_error(&mut hostile, text, code).await;
    }
    let long = "r".repeat(129);
    expect_error(
        &mut hostile,
        &format!(r#"{{"type":"join","room":"{long}"}}"#),
        ErrorCode::INVALID_NAME,
    )
    .await;
    let long_event = "e".repeat(129);
    expect_error(
        &mut hostile,
        &format!(r#"{{"type":"send","to":"x","event":"{long_event}"}}"#),
        ErrorCode::INVALID_NAME,
    )
    .await;
    ping_pong(&mut hostile, "still-alive").await;
    calm.check(&server, None).await;
}

#[tokio::test]
async fn malformed_binary_envelopes_get_their_codes_and_the_connection_goes_on() {
    use switchboard_protocol::binary::envelope;
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let url = format!("{}?user_id=mallory&binary=1", server.ws_url());
    let (mut hostile, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    welcome(&mut hostile).await;
    let cases: [(Vec<u8>, ErrorCode, Option<&str>); 8] = [
        (vec![], ErrorCode::MALFORMED, None),
        (vec![0, 0, 0], ErrorCode::MALFORMED, None),
        (vec![0xff, 0xff, 0xff, 0xff, b'{', b'}'], ErrorCode::MALFORMED, None),
        (vec![0, 0, 0, 2, 0xc3, 0x28, 1], ErrorCode::MALFORMED, None),
        (envelope("[1,2]", b"x"), ErrorCode::MALFORMED, None),
        (
            envelope(r#"{"type":"join","id":"a","room":"r"}"#, b"x"),
            ErrorCode::INVALID_FRAME,
            Some("a"),
        ),
        (
            envelope(r#"{"type":"publish","id":"b","room":"calm","event":"e","data":[1]}"#, b"x"),
            ErrorCode::INVALID_FRAME,
            Some("b"),
        ),
        (
            envelope(
                r#"{"type":"send","id":"c","to":"calm","event":"e","encoding":"base64"}"#,
                b"",
            ),
            ErrorCode::INVALID_FRAME,
            Some("c"),
        ),
    ];
    for (message, code, id) in cases {
        hostile.send(WsMessage::Binary(message.into())).await.unwrap();
        let ServerFrame::Error(error) = raw_next(&mut hostile).await else {
            panic!("expected an error")
        };
        assert_eq!((error.code, error.id.as_deref()), (code, id), "{}", error.message);
    }
    // A header nested too deep is refused before it is parsed.
    let deep = format!(
        r#"{{"type":"publish","id":"d","room":"r","event":"e","x":{}{}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    hostile.send(WsMessage::Binary(envelope(&deep, b"").into())).await.unwrap();
    let ServerFrame::Error(error) = raw_next(&mut hostile).await else { panic!("an error") };
    assert_eq!(error.code, ErrorCode::INVALID_FRAME);
    // JSON that claims base64 and is not.
    expect_error(
        &mut hostile,
        r#"{"type":"publish","id":"e","room":"r","event":"e","data":"*","encoding":"base64"}"#,
        ErrorCode::INVALID_FRAME,
    )
    .await;
    expect_error(
        &mut hostile,
        r#"{"type":"publish","id":"f","room":"r","event":"e","data":"AA==","encoding":"hex"}"#,
        ErrorCode::INVALID_FRAME,
    )
    .await;
    ping_pong(&mut hostile, "after-envelopes").await;
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_binary_message_before_the_auth_frame_closes_with_4500() {
    use switchboard_protocol::binary::envelope;
    let server = TestServer::start_with(token_config()).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;
    let mut early = open(&server, "binary=1").await.unwrap();
    let auth = format!(r#"{{"type":"auth","token":"{}"}}"#, user_token("early"));
    early.send(WsMessage::Binary(envelope(&auth, b"").into())).await.unwrap();
    assert_eq!(raw_close_code(&mut early).await, CloseCode::UNAUTHORIZED.0);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_compressed_binary_bomb_closes_with_1009_and_a_compressed_binary_publish_is_taken() {
    use switchboard_protocol::binary::envelope;
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let connect =
        || RawTcp::connect_with_headers(&server, "user_id=mallory&binary=1", BROWSER_OFFER);
    let mut raw = connect().await;
    assert_eq!(raw.next_frame().await.unwrap().opcode, 1, "welcome");
    // A binary publish, compressed, is inflated and carried out.
    let publish = envelope(r#"{"type":"publish","id":"z","room":"calm","event":"e"}"#, &[7; 5_000]);
    raw.send_frame_rsv1(2, true, true, &deflate::compress(&publish)).await;
    let answer = loop {
        let frame = raw.next_frame().await.expect("an answer");
        if frame.opcode == 1 {
            break frame.text();
        }
    };
    assert!(answer.contains(r#""code":201"#), "carried out (and refused: not joined): {answer}");
    // A bomb in a binary message costs the hub no more than in a text one.
    raw.send_frame_rsv1(2, true, true, &deflate::bomb(64 << 20)).await;
    assert_eq!(raw.close_code().await, CloseCode::MESSAGE_TOO_BIG.0);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn binary_frames_are_refused_with_104() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    hostile.send(WsMessage::Binary(vec![0, 159, 146, 150].into())).await.unwrap();
    let ServerFrame::Error(error) = raw_next(&mut hostile).await else {
        panic!("expected an error")
    };
    assert_eq!(error.code, ErrorCode::BINARY_UNSUPPORTED);
    ping_pong(&mut hostile, "after-binary").await;
    calm.check(&server, None).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut raw = RawTcp::connect(&server, "user_id=mallory").await;
    assert_eq!(raw.next_frame().await.unwrap().opcode, 1, "welcome");
    raw.send_frame(1, true, &[b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(raw.close_code().await, CloseCode::INVALID_PAYLOAD.0);
    calm.check(&server, None).await;
}

/// A raw connection that negotiated permessage-deflate, past its welcome.
async fn deflating(server: &TestServer) -> RawTcp {
    let mut raw = RawTcp::connect_with_headers(server, "user_id=mallory", BROWSER_OFFER).await;
    assert!(raw.answer_header("sec-websocket-extensions").is_some(), "deflate negotiated");
    assert_eq!(raw.next_frame().await.unwrap().opcode, 1, "welcome");
    raw
}

#[tokio::test]
async fn a_decompression_bomb_closes_with_1009() {
    // What the bomb costs the hub's memory: `bomb.rs`, a test binary of
    // its own so that nothing else moves the process's peak.
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(1, true, true, &deflate::bomb(64 << 20)).await;
    assert_eq!(raw.close_code().await, CloseCode::MESSAGE_TOO_BIG.0);
    // Compressed bytes past the limit are refused before they are inflated.
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(1, false, true, &vec![0; 300 * 1024]).await;
    raw.send_frame(0, true, &vec![0; 300 * 1024]).await;
    assert_eq!(raw.close_code().await, CloseCode::MESSAGE_TOO_BIG.0);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn broken_compressed_frames_close_with_1007_or_1002() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    // Not deflate data.
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(1, true, true, &[0xff; 32]).await;
    assert_eq!(raw.close_code().await, CloseCode::INVALID_PAYLOAD.0);
    // Deflate data that is not UTF-8 in a text message.
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(1, true, true, &deflate::compress(&[b'{', 0xff, 0xfe, b'}'])).await;
    assert_eq!(raw.close_code().await, CloseCode::INVALID_PAYLOAD.0);
    // RSV1 on a continuation frame.
    let mut raw = deflating(&server).await;
    let data = deflate::compress(br#"{"type":"ping","id":"x"}"#);
    raw.send_frame_rsv1(1, false, true, &data[..2]).await;
    raw.send_frame_rsv1(0, true, true, &data[2..]).await;
    assert_eq!(raw.close_code().await, 1002);
    // RSV1 on a connection that did not negotiate the extension.
    let mut raw = RawTcp::connect(&server, "user_id=mallory").await;
    raw.next_frame().await.unwrap();
    raw.send_frame_rsv1(1, true, true, &data).await;
    assert_eq!(raw.close_code().await, 1002);
    // A compressed binary message is a binary message: error 104 on a
    // connection that did not ask for binary, and the connection goes on.
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(2, true, true, &deflate::compress(&[0, 1, 2, 3, 4, 5, 6, 7])).await;
    let error = loop {
        let frame = raw.next_frame().await.expect("an answer");
        if frame.opcode == 1 {
            break frame.text();
        }
    };
    assert!(error.contains(r#""code":104"#), "{error}");
    raw.send_frame(1, true, br#"{"type":"ping","id":"after-104"}"#).await;
    let pong = loop {
        let frame = raw.next_frame().await.expect("an answer");
        if frame.opcode == 1 {
            break frame.text();
        }
    };
    assert_eq!(pong, r#"{"type":"pong","id":"after-104"}"#, "the connection goes on");
    // RSV2 on a compressed message.
    let mut raw = deflating(&server).await;
    raw.send_frame_bits(1, true, 0x60, &deflate::compress(br#"{"type":"ping"}"#)).await;
    assert_eq!(raw.close_code().await, 1002);
    // A compressed message split over fragments, a ping between, is fine.
    let mut raw = deflating(&server).await;
    raw.send_frame_rsv1(1, false, true, &data[..3]).await;
    raw.send_frame(9, true, b"between").await;
    raw.send_frame(0, true, &data[3..]).await;
    let pong = loop {
        let frame = raw.next_frame().await.expect("an answer");
        if frame.opcode == 1 {
            break frame.text();
        }
    };
    assert_eq!(pong, r#"{"type":"pong","id":"x"}"#);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_600_kib_frame_and_a_megabyte_of_whitespace_close_with_1009() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    for payload in
        [format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(600 * 1024)), " ".repeat(1 << 20)]
    {
        let mut hostile = connected(&server, "mallory").await;
        let _ = hostile.send(WsMessage::Text(payload.into())).await;
        assert_eq!(raw_close_code(&mut hostile).await, CloseCode::MESSAGE_TOO_BIG.0);
    }
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_message_split_into_ten_thousand_continuation_frames_is_reassembled() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut raw = RawTcp::connect(&server, "user_id=mallory").await;
    raw.next_frame().await.unwrap();
    let mut message = br#"{"type":"ping","id":"frag""#.to_vec();
    message.resize(9_999, b' ');
    message.push(b'}');
    raw.send_frame(1, false, &message[..1]).await;
    for byte in &message[1..message.len() - 1] {
        raw.send_frame(0, false, std::slice::from_ref(byte)).await;
    }
    raw.send_frame(0, true, &message[message.len() - 1..]).await;
    let pong = loop {
        let frame = raw.next_frame().await.expect("an answer");
        if frame.opcode == 1 {
            break String::from_utf8(frame.payload).unwrap();
        }
    };
    assert_eq!(pong, r#"{"type":"pong","id":"frag"}"#);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn deeply_nested_json_is_refused_with_102() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    let deep = format!(
        r#"{{"type":"publish","room":"r","event":"e","data":{}{}}}"#,
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    expect_error(&mut hostile, &deep, ErrorCode::INVALID_FRAME).await;
    ping_pong(&mut hostile, "after-nesting").await;
    calm.check(&server, None).await;
}

// ---- identity and permissions ----

#[tokio::test]
async fn fields_the_protocol_does_not_name_are_refused_with_102() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    // A forged sender, a misspelled field, a field of another frame type:
    // each is refused whole, nothing of it delivered.
    for text in [
        r#"{"type":"send","id":"s1","to":"calm","event":"dm","from":"admin","data":1}"#,
        r#"{"type":"send","id":"s2","to":"calm","event":"dm","dat":1}"#,
        r#"{"type":"join","id":"j1","room":"calm","since":{"epoch":"e","offset":0},"Room":"x"}"#,
        r#"{"type":"ping","id":"p1","room":"calm"}"#,
    ] {
        raw_send(&mut hostile, text).await;
        let ServerFrame::Error(error) = raw_next(&mut hostile).await else {
            panic!("{text}: expected an error")
        };
        assert_eq!(error.code, ErrorCode::INVALID_FRAME, "{text}: {}", error.message);
        assert!(error.id.is_some(), "{text}: the id is echoed so the caller can match it");
        assert!(error.message.contains("unknown field"), "{text}: {}", error.message);
    }
    ping_pong(&mut hostile, "after-unknown-fields").await;
    calm.check(&server, None).await;
    assert!(calm.others.is_empty(), "nothing was delivered: {:?}", calm.others);
}

#[tokio::test]
async fn request_ids_longer_than_128_bytes_are_refused_and_not_echoed() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    let long = "i".repeat(MAX_ID_BYTES + 1);
    raw_send(&mut hostile, &format!(r#"{{"type":"send","id":"{long}","to":"calm","event":"x"}}"#))
        .await;
    let ServerFrame::Error(error) = raw_next(&mut hostile).await else { panic!("expected error") };
    assert_eq!((error.code, error.id), (ErrorCode::INVALID_FRAME, None));
    let longest = "i".repeat(MAX_ID_BYTES);
    ping_pong(&mut hostile, &longest).await;
    calm.check(&server, None).await;
    assert!(calm.others.is_empty(), "the refused send was not delivered: {:?}", calm.others);
}

#[tokio::test]
async fn blank_names_are_refused_everywhere() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    assert_eq!(open(&server, "user_id=%20%20").await.err(), Some(400));
    assert_eq!(open(&server, "user_id=x&room=%09").await.err(), Some(422));
    let mut hostile = connected(&server, "mallory").await;
    for text in [
        r#"{"type":"join","room":" "}"#,
        r#"{"type":"send","to":"   ","event":"x"}"#,
        r#"{"type":"send","to":"calm","event":" "}"#,
        r#"{"type":"history","room":" "}"#,
    ] {
        expect_error(&mut hostile, text, ErrorCode::INVALID_NAME).await;
    }
    for (path, body) in [
        ("/api/send", json!({"to": " ", "event": "x"})),
        ("/api/broadcast", json!({"room": "  ", "event": "x"})),
        ("/api/broadcast", json!({"event": " "})),
    ] {
        let response = http().post(server.http(path)).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 422, "{path} {body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "invalid_name", "{path} {body}");
    }
    calm.check(&server, None).await;
    assert!(calm.others.is_empty(), "{:?}", calm.others);
}

#[tokio::test]
async fn admin_bodies_and_queries_with_unknown_fields_are_refused() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    // `roms` for `rooms` would otherwise turn a room message into a
    // broadcast to everyone.
    for (path, body) in [
        ("/api/broadcast", json!({"roms": ["other"], "event": "x", "data": 1})),
        ("/api/broadcast", json!({"Room": "other", "event": "x"})),
        ("/api/send", json!({"to": "calm", "event": "x", "from": "admin"})),
        ("/api/disconnect", json!({"user": "calm", "close_code": 4000})),
    ] {
        let response = http().post(server.http(path)).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 422, "{path} {body}");
        let answer: Value = response.json().await.unwrap();
        assert!(
            answer["error"]["message"].as_str().unwrap().contains("unknown field"),
            "{path}: {answer}"
        );
    }
    let response = http().get(server.http("/api/rooms/calm/history?limt=5")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    calm.check(&server, None).await;
    assert!(calm.others.is_empty(), "nothing was delivered: {:?}", calm.others);
}

#[tokio::test]
async fn reading_the_history_of_rooms_that_do_not_exist_stores_nothing() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    // Connecting opens the user's inbox; reading must add nothing to that.
    let streams_before = get_json(&server, "/api/stats").await["streams"].clone();
    assert!(streams_before.is_u64(), "{streams_before}");
    // Within the default burst of 200 frames, so every one is answered.
    for n in 0..150 {
        raw_send(
            &mut hostile,
            &format!(r#"{{"type":"history","id":"h{n}","room":"ghost-ws-{n}","limit":1}}"#),
        )
        .await;
    }
    let mut answered = 0;
    while answered < 150 {
        match raw_next(&mut hostile).await {
            ServerFrame::Ack(ack) => {
                assert_eq!(ack.epoch, None, "a room without a stream has no epoch");
                assert_eq!(ack.messages.as_deref().map(<[_]>::len), Some(0));
                answered += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for n in 0..300 {
        let page = get_json(&server, &format!("/api/rooms/ghost-api-{n}/history")).await;
        assert_eq!((page["epoch"].clone(), page["offset"].clone()), (Value::Null, json!(0)));
    }
    let stats = get_json(&server, "/api/stats").await;
    assert_eq!(stats["streams"], streams_before, "no stream was created by reading");
    calm.check(&server, None).await;
}

#[tokio::test]
async fn publishing_to_a_room_not_joined_is_refused_with_201() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    expect_error(
        &mut hostile,
        r#"{"type":"publish","id":"p","room":"calm","event":"spam"}"#,
        ErrorCode::NOT_JOINED,
    )
    .await;
    calm.check(&server, None).await;
}

#[tokio::test]
async fn room_permissions_refuse_and_leak_nothing() {
    let mut config = test_config();
    let rule = |pattern: &str, join, publish, history, presence| RoomRule {
        pattern: pattern.into(),
        join,
        publish,
        history,
        presence,
    };
    config.permissions.rooms = vec![
        rule("staff", Access::Server, Access::Server, Access::Server, Access::Server),
        rule("news", Access::Anyone, Access::Server, Access::Server, Access::Anyone),
        rule("quiet:*", Access::Anyone, Access::Anyone, Access::Anyone, Access::Server),
        rule("private:*", Access::Claim, Access::Claim, Access::Claim, Access::Claim),
    ];
    config.permissions.send = Access::Server;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    expect_error(&mut hostile, r#"{"type":"join","id":"1","room":"staff"}"#, ErrorCode::FORBIDDEN)
        .await;
    expect_error(
        &mut hostile,
        r#"{"type":"join","id":"2","room":"private:x"}"#,
        ErrorCode::FORBIDDEN,
    )
    .await;
    expect_error(
        &mut hostile,
        r#"{"type":"history","id":"3","room":"news"}"#,
        ErrorCode::FORBIDDEN,
    )
    .await;
    expect_error(
        &mut hostile,
        r#"{"type":"send","id":"4","to":"calm","event":"x"}"#,
        ErrorCode::FORBIDDEN,
    )
    .await;
    raw_send(&mut hostile, r#"{"type":"join","id":"5","room":"news"}"#).await;
    expect_error(
        &mut hostile,
        r#"{"type":"publish","id":"6","room":"news","event":"x"}"#,
        ErrorCode::FORBIDDEN,
    )
    .await;

    // The refused room's traffic never reaches mallory; a quiet room shows no members.
    let staff = http()
        .post(server.http("/api/broadcast"))
        .json(&json!({"event": "secret", "room": "staff"}));
    staff.send().await.unwrap();
    raw_send(&mut hostile, r#"{"type":"join","id":"7","room":"quiet:a"}"#).await;
    loop {
        match raw_next(&mut hostile).await {
            ServerFrame::Ack(ack) if ack.id == "7" => {
                assert_eq!(ack.members, None, "no presence in a quiet room");
                break;
            }
            ServerFrame::Message(m) => assert_ne!(m.event, "secret", "nothing leaks"),
            ServerFrame::Presence(p) => {
                assert_ne!(p.room, "quiet:a", "no presence in a quiet room")
            }
            _ => {}
        }
    }
    // Server-Sent Events obey the same rules.
    let sse =
        http().get(server.http("/sse?user_id=mallory&rooms=news,staff")).send().await.unwrap();
    assert_eq!(sse.status().as_u16(), 403);
    let body: Value = sse.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    calm.check(&server, None).await;
}

#[tokio::test]
async fn room_names_with_path_tricks_are_just_names() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    raw_send(&mut hostile, r#"{"type":"join","id":"j","room":"../../etc/passwd"}"#).await;
    loop {
        if let ServerFrame::Ack(ack) = raw_next(&mut hostile).await {
            assert_eq!(ack.id, "j");
            break;
        }
    }
    let room = get_json(&server, "/api/rooms/..%2F..%2Fetc%2Fpasswd").await;
    assert_eq!(room["id"], "../../etc/passwd", "the name is opaque: no path is ever touched");
    let missing = http().get(server.http("/api/rooms/../../etc/passwd")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn bad_user_ids_are_refused_before_the_upgrade() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    assert_eq!(open(&server, "user_id=%07bell").await.err(), Some(400));
    assert_eq!(open(&server, &format!("user_id={}", "u".repeat(129))).await.err(), Some(400));
    assert_eq!(open(&server, "room=general").await.err(), Some(400));
    calm.check(&server, None).await;
}

#[tokio::test]
async fn more_rooms_than_allowed_is_refused_with_202() {
    let mut config = test_config();
    config.limits.max_rooms_per_connection = 3;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    for room in ["a", "b", "c"] {
        raw_send(&mut hostile, &format!(r#"{{"type":"join","room":"{room}"}}"#)).await;
    }
    expect_error(&mut hostile, r#"{"type":"join","id":"d","room":"d"}"#, ErrorCode::LIMIT_EXCEEDED)
        .await;
    calm.check(&server, None).await;
}

// ---- floods and connection limits ----

#[tokio::test]
async fn a_flood_of_frames_is_rate_limited_then_disconnected_with_4002() {
    let server = TestServer::start().await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut hostile = connected(&server, "mallory").await;
    let flood = WsMessage::Text(r#"{"type":"ping"}"#.into());
    for _ in 0..10_000 {
        if hostile.feed(flood.clone()).await.is_err() {
            break;
        }
    }
    let _ = hostile.flush().await;
    let mut limited = 0;
    let code = loop {
        match switchboard_tests::raw_next_message(&mut hostile).await {
            WsMessage::Text(text) => {
                if let Ok(ServerFrame::Error(error)) = serde_json::from_str::<ServerFrame>(&text) {
                    assert_eq!(error.code, ErrorCode::RATE_LIMITED);
                    limited += 1;
                }
            }
            WsMessage::Close(Some(frame)) => break u16::from(frame.code),
            _ => {}
        }
    };
    assert!(limited > 0, "excess frames were answered with 203 first");
    assert_eq!(code, CloseCode::RATE_LIMITED.0);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn connections_from_one_ip_past_its_limits_get_429() {
    let mut config = test_config();
    config.limits.max_connections_per_ip = 20;
    config.limits.connections_per_ip_per_sec = 10_000;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut held = Vec::new();
    let mut refused = 0;
    for n in 0..1_000 {
        match open(&server, &format!("user_id=bot{n}")).await {
            Ok(socket) => held.push(socket),
            Err(status) => {
                assert_eq!(status, 429);
                refused += 1;
            }
        }
    }
    assert_eq!(held.len(), 19, "20 per IP, the bystander included");
    assert_eq!(refused, 981);
    calm.check(&server, None).await;

    let mut config = test_config();
    config.limits.connections_per_ip_per_sec = 5;
    let server = TestServer::start_with(config).await;
    let statuses: Vec<Result<(), u16>> = {
        let mut out = Vec::new();
        for n in 0..30 {
            out.push(open(&server, &format!("user_id=fast{n}")).await.map(drop));
        }
        out
    };
    assert!(statuses.contains(&Err(429)), "a burst past the rate is refused");
}

#[tokio::test]
async fn one_user_past_max_connections_per_user_gets_429() {
    let mut config = test_config();
    config.limits.max_connections_per_user = 3;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let mut tabs = Vec::new();
    for _ in 0..3 {
        tabs.push(connected(&server, "hoarder").await);
    }
    assert_eq!(open(&server, "user_id=hoarder").await.err(), Some(429));
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_handshake_that_never_completes_is_cut_off() {
    let mut config = test_config();
    config.limits.handshake_timeout_ms = 300;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /ws?user_id=slow HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // The hub may answer 408 first; either way the socket reaches its end,
    // long before TIMEOUT (without the deadline it would stay open for good).
    let mut buffer = [0u8; 1024];
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the half-open handshake was cut off");
    calm.check(&server, None).await;
}

#[tokio::test]
async fn origins_and_addresses_outside_the_lists_get_403() {
    let mut config = test_config();
    config.limits.allowed_origins = vec!["https://app.example".into()];
    config.limits.deny_ips = vec!["127.0.0.2/32".parse().unwrap()];
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}?user_id=web", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let mut request = format!("{}?user_id=web", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("origin", "https://app.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok(), "the allowed origin connects");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(server.addr).await.unwrap();
    let url = format!("{}?user_id=denied", server.ws_url());
    match tokio_tungstenite::client_async(url, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }

    // The lists hold for every route, not only the WebSocket: a denied
    // address neither reads the admin API nor publishes through it.
    let denied = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .timeout(TIMEOUT)
        .build()
        .unwrap();
    for path in ["/api/stats", "/api/rooms/calm/history", "/health", "/sse?user_id=x", "/nowhere"] {
        let response = denied.get(server.http(path)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403, "GET {path}");
    }
    for (path, body) in [
        ("/api/broadcast", json!({"room": "calm", "event": "intruder"})),
        ("/api/send", json!({"to": "calm", "event": "intruder"})),
        ("/api/disconnect", json!({"user": "calm"})),
    ] {
        let response = denied.post(server.http(path)).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 403, "POST {path}");
    }
    calm.check(&server, None).await;
    assert!(calm.others.is_empty(), "nothing from the denied address: {:?}", calm.others);
}

/// Opens a WebSocket that claims, through `X-Forwarded-For`, to be
/// forwarded for `chain`; the HTTP status when refused.
async fn open_forwarded(server: &TestServer, user: &str, chain: &str) -> Result<RawSocket, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}?user_id={user}", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("x-forwarded-for", chain.parse().unwrap());
    handshake(request).await
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_apply_to_the_forwarded_client_and_forgeries_do_not_help() {
    let mut config = test_config();
    config.limits.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.limits.max_connections_per_ip = 1;
    config.limits.deny_ips = vec!["203.0.113.66/32".parse().unwrap()];
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    // Two clients behind the same proxy are two addresses, one slot each.
    let _first = open_forwarded(&server, "first", "198.51.100.1").await.expect("own slot");
    let _second = open_forwarded(&server, "second", "198.51.100.2").await.expect("own slot");
    assert_eq!(open_forwarded(&server, "again", "198.51.100.1").await.err(), Some(429));
    assert_eq!(open_forwarded(&server, "denied", "203.0.113.66").await.err(), Some(403));
    // An entry the client wrote itself (left of what the proxy appended) is
    // not believed: neither to escape the deny list nor to frame someone.
    assert_eq!(open_forwarded(&server, "sly", "198.51.100.9, 203.0.113.66").await.err(), Some(403));
    let framed = open_forwarded(&server, "framed", "203.0.113.66, 198.51.100.3").await;
    assert!(framed.is_ok(), "judged by the proxy-written 198.51.100.3");
    calm.check(&server, None).await;

    // Without trusted proxies the header is ignored: the peer is the client.
    let mut config = test_config();
    config.limits.deny_ips = vec!["203.0.113.66/32".parse().unwrap()];
    config.limits.max_connections_per_ip = 2;
    let server = TestServer::start_with(config).await;
    let _one = open_forwarded(&server, "one", "203.0.113.66").await.expect("header ignored");
    let _two = open_forwarded(&server, "two", "198.51.100.1").await.expect("second from 127.0.0.1");
    assert_eq!(
        open_forwarded(&server, "three", "198.51.100.2").await.err(),
        Some(429),
        "a forged header does not buy another slot"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_with_bounded_memory() {
    let mut config = test_config();
    config.limits.max_message_bytes = 64 * 1024;
    config.limits.outbound_queue_bytes = 128 * 1024;
    config.rooms.publish_requires_join = false;
    config.limits.messages_per_sec = 100_000;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let _stalled = RawTcp::connect(&server, "user_id=stalled&room=firehose").await;
    let mut publisher = connected(&server, "hose").await;
    let pad = "z".repeat(60 * 1024);
    for n in 0..2_000 {
        raw_send(
            &mut publisher,
            &format!(r#"{{"type":"publish","room":"firehose","event":"x","data":"{pad}{n}"}}"#),
        )
        .await;
        if n % 50 == 0 {
            let stats: Value =
                http().get(server.http("/api/stats")).send().await.unwrap().json().await.unwrap();
            if stats["slow_consumers_total"] == 1 {
                calm.check(&server, None).await;
                return;
            }
        }
    }
    panic!("the stalled client was never cut off");
}

// ---- tokens ----

#[tokio::test]
async fn bad_tokens_are_refused_before_the_upgrade_with_401() {
    let server = TestServer::start_with(token_config()).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;
    let expired = token(json!({"sub": "a", "exp": now() - 10}), SECRET);
    let wrong = token(json!({"sub": "a", "exp": now() + 60}), "not-the-secret");
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0.";
    let future = token(json!({"sub": "a", "exp": now() + 60, "nbf": now() + 30}), SECRET);
    for (query, expected) in [
        (format!("token={expired}"), "token_expired"),
        ("token=garbage".to_owned(), "invalid_token"),
        (format!("token={wrong}"), "invalid_token"),
        (format!("token={none}"), "invalid_token"),
        (format!("token={future}"), "invalid_token"),
        ("user_id=mallory".to_owned(), "token_required"),
    ] {
        let response = http().get(server.http(&format!("/ws?{query}"))).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], expected, "{query}");
        assert_eq!(open(&server, &query).await.err(), Some(401));
    }
    // A header works like the query.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.ws_url().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", user_token("native")).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    let health: Value =
        http().get(server.http("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["auth"], "token");
    calm.check(&server, None).await;
}

#[tokio::test]
async fn a_user_past_the_limit_by_auth_frame_is_closed_with_4003() {
    let mut config = token_config();
    config.limits.max_connections_per_user = 2;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = open(&server, &format!("token={}", user_token("hoarder"))).await.unwrap();
        welcome(&mut tab).await;
        tabs.push(tab);
    }
    // The upgrade carries no token, so only the auth frame names the user:
    // the limit is checked then, and the connection is closed, not welcomed.
    let mut third = open(&server, "").await.unwrap();
    raw_send(&mut third, &format!(r#"{{"type":"auth","token":"{}"}}"#, user_token("hoarder")))
        .await;
    assert_eq!(raw_close_code(&mut third).await, CloseCode::CONNECTION_LIMIT.0);
    calm.check(&server, None).await;
}

#[tokio::test]
async fn the_auth_frame_must_come_first_and_in_time() {
    let server = TestServer::start_with(token_config()).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;

    let mut good = open(&server, "").await.unwrap();
    raw_send(&mut good, &format!(r#"{{"type":"auth","token":"{}"}}"#, user_token("late"))).await;
    let ServerFrame::Welcome(welcome) = raw_next(&mut good).await else { panic!("welcome") };
    assert_eq!(welcome.user, "late");

    let mut wrong = open(&server, "").await.unwrap();
    raw_send(&mut wrong, r#"{"type":"ping"}"#).await;
    assert_eq!(raw_close_code(&mut wrong).await, CloseCode::UNAUTHORIZED.0);

    let mut forged = open(&server, "").await.unwrap();
    raw_send(&mut forged, r#"{"type":"auth","token":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}"#)
        .await;
    assert_eq!(raw_close_code(&mut forged).await, CloseCode::UNAUTHORIZED.0);

    let mut silent = open(&server, "").await.unwrap();
    assert_eq!(
        raw_close_code(&mut silent).await,
        CloseCode::UNAUTHORIZED.0,
        "no auth frame within 500 ms"
    );
    calm.check(&server, None).await;
}

#[tokio::test]
async fn tokens_are_refreshed_in_band_or_the_connection_expires_with_4004() {
    let mut config = token_config();
    config.auth.refresh_before_ms = 1_500;
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;
    let short = |user: &str| token(json!({"sub": user, "exp": now() + 2}), SECRET);

    // Refreshed: the warning comes, a new token for the same user is accepted.
    let mut keeper = open(&server, &format!("token={}", short("keeper"))).await.unwrap();
    welcome(&mut keeper).await;
    let ServerFrame::Refresh { expires_in_ms } = raw_next(&mut keeper).await else {
        panic!("refresh warning")
    };
    assert!(expires_in_ms <= 2_000);
    raw_send(
        &mut keeper,
        &format!(r#"{{"type":"auth","id":"r","token":"{}"}}"#, user_token("mallory")),
    )
    .await;
    let ServerFrame::Error(error) = raw_next(&mut keeper).await else {
        panic!("another user's token")
    };
    assert_eq!(error.code, ErrorCode::INVALID_TOKEN);
    raw_send(
        &mut keeper,
        &format!(r#"{{"type":"auth","id":"r2","token":"{}"}}"#, user_token("keeper")),
    )
    .await;
    assert!(matches!(raw_next(&mut keeper).await, ServerFrame::Ack(ack) if ack.id == "r2"));

    // Not refreshed: closed with 4004 when it expires.
    let mut lapsed = open(&server, &format!("token={}", short("lapsed"))).await.unwrap();
    welcome(&mut lapsed).await;
    assert_eq!(raw_close_code(&mut lapsed).await, CloseCode::TOKEN_EXPIRED.0);

    // The refreshed one outlived its first token.
    ping_pong(&mut keeper, "alive").await;
    calm.check(&server, None).await;
}

#[tokio::test]
async fn private_rooms_need_the_rooms_claim() {
    let mut config = token_config();
    config.permissions.rooms = vec![RoomRule {
        pattern: "private:*".into(),
        join: Access::Claim,
        publish: Access::Claim,
        history: Access::Claim,
        presence: Access::Claim,
    }];
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, &format!("token={}", user_token("calm"))).await;
    let member =
        token(json!({"sub": "member", "exp": now() + 600, "rooms": ["private:team"]}), SECRET);
    let mut socket = open(&server, &format!("token={member}")).await.unwrap();
    welcome(&mut socket).await;
    raw_send(&mut socket, r#"{"type":"join","id":"ok","room":"private:team"}"#).await;
    loop {
        match raw_next(&mut socket).await {
            ServerFrame::Ack(ack) => {
                assert_eq!(ack.id, "ok");
                break;
            }
            ServerFrame::Presence(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    expect_error(
        &mut socket,
        r#"{"type":"join","id":"no","room":"private:other"}"#,
        ErrorCode::FORBIDDEN,
    )
    .await;
    calm.check(&server, None).await;
}

// ---- the admin API ----

#[tokio::test]
async fn the_admin_api_needs_its_key_and_bounds_bodies() {
    let mut config = test_config();
    config.api.key = Some("admin-key".into());
    let server = TestServer::start_with(config).await;
    let mut calm = Bystander::join(&server, "user_id=calm").await;
    let response = http().get(server.http("/api/stats")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong =
        http().get(server.http("/api/stats")).bearer_auth("admin-kez").send().await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let right =
        http().get(server.http("/api/stats")).bearer_auth("admin-key").send().await.unwrap();
    assert_eq!(right.status().as_u16(), 200);
    let health = http().get(server.http("/health")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200, "/health stays open");
    let big = json!({"event": "x", "data": "y".repeat(600 * 1024)});
    let response = http()
        .post(server.http("/api/broadcast"))
        .bearer_auth("admin-key")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    calm.check(&server, Some("admin-key")).await;
}

#[tokio::test]
async fn insecure_mode_says_so_on_health() {
    let server = TestServer::start().await;
    let health: Value =
        http().get(server.http("/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["auth"], "insecure");
    assert!(health["warnings"][0].as_str().unwrap().contains("auth.insecure"));
    let _ = Duration::ZERO;
}
