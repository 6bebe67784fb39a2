//! Limits and bad input: each gets its documented answer, and nobody else
//! is disturbed.

use futures::SinkExt;
use serde_json::json;
use switchboard_protocol::{CloseCode, ErrorCode, ServerFrame};
use switchboard_tests::{
    Event, RawTcp, TestServer, connect, eventually, raw_close_code, raw_connect, raw_next,
    raw_send, test_config,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn malformed_json_gets_an_error_frame_and_the_connection_keeps_working() {
    let server = TestServer::start().await;
    let (mut socket, welcome) = raw_connect(&server, "alice").await;
    assert_eq!((welcome.user.as_str(), welcome.protocol), ("alice", 1));

    raw_send(&mut socket, "{this is not json").await;
    let ServerFrame::Error(error) = raw_next(&mut socket).await else { panic!("expected error") };
    assert_eq!((error.code, error.id), (ErrorCode::MALFORMED, None));

    raw_send(&mut socket, r#"{"type":"teleport","id":"t1"}"#).await;
    let ServerFrame::Error(error) = raw_next(&mut socket).await else { panic!("expected error") };
    assert_eq!((error.code, error.id.as_deref()), (ErrorCode::UNKNOWN_TYPE, Some("t1")));

    raw_send(&mut socket, r#"{"type":"join","id":"j1","room":42}"#).await;
    let ServerFrame::Error(error) = raw_next(&mut socket).await else { panic!("expected error") };
    assert_eq!((error.code, error.id.as_deref()), (ErrorCode::INVALID_FRAME, Some("j1")));

    socket.send(WsMessage::Binary(vec![1, 2, 3].into())).await.unwrap();
    let ServerFrame::Error(error) = raw_next(&mut socket).await else { panic!("expected error") };
    assert_eq!(error.code, ErrorCode::BINARY_UNSUPPORTED);

    // Frames are strict: a field the protocol does not name is refused.
    raw_send(
        &mut socket,
        r#"{"type":"publish","id":"p0","room":"general","event":"chat","data":1,"from":"mallory"}"#,
    )
    .await;
    let ServerFrame::Error(error) = raw_next(&mut socket).await else { panic!("expected error") };
    assert_eq!((error.code, error.id.as_deref()), (ErrorCode::INVALID_FRAME, Some("p0")));
    assert!(error.message.contains("from"), "{}", error.message);

    // Still fully usable: join, publish, receive it as ourselves.
    raw_send(&mut socket, r#"{"type":"join","id":"j2","room":"general"}"#).await;
    let mut acked = false;
    let mut message = None;
    raw_send(
        &mut socket,
        r#"{"type":"publish","id":"p1","room":"general","event":"chat","data":1}"#,
    )
    .await;
    while message.is_none() || !acked {
        match raw_next(&mut socket).await {
            ServerFrame::Ack(ack) => acked |= ack.id == "p1",
            ServerFrame::Message(m) => message = Some(m),
            ServerFrame::Presence(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(message.unwrap().from, "alice", "the hub sets `from`, never the client");
}

#[tokio::test]
async fn an_oversize_message_closes_with_1009_and_others_are_untouched() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    let (mut socket, _) = raw_connect(&server, "mallory").await;
    let huge = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(600 * 1024));
    let _ = socket.send(WsMessage::Text(huge.into())).await;
    assert_eq!(raw_close_code(&mut socket).await, CloseCode::MESSAGE_TOO_BIG.0);

    alice.send("alice", "still", "here").await.unwrap();
    assert_eq!(alice_events.next_message().await.event, "still");
}

#[tokio::test]
async fn max_connections_refuses_the_next_upgrade_with_503() {
    let mut config = test_config();
    config.limits.max_connections = 2;
    let server = TestServer::start_with(config).await;
    let (first, _) = raw_connect(&server, "a").await;
    let (_second, _) = raw_connect(&server, "b").await;

    let url = format!("{}?user_id=c", server.ws_url());
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body =
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("too_many_connections"), "{body}");
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }

    // A freed slot is usable again.
    drop(first);
    eventually("a slot to free up", || async {
        tokio_tungstenite::connect_async(url.clone()).await.ok().map(drop)
    })
    .await;
}

#[tokio::test]
async fn heartbeat_timeout_closes_a_silent_client_with_4001() {
    let mut config = test_config();
    config.heartbeat.interval_ms = 100;
    config.heartbeat.timeout_ms = 300;
    let server = TestServer::start_with(config).await;
    let started = std::time::Instant::now();
    let mut silent = RawTcp::connect(&server, "user_id=silent").await;
    let welcome = silent.next_frame().await.expect("welcome");
    assert_eq!(welcome.opcode, 1);
    let mut pings = 0;
    let code = loop {
        let frame = silent.next_frame().await.expect("a frame before the close");
        match frame.opcode {
            9 => pings += 1,
            8 => break frame.close_code().unwrap(),
            other => panic!("unexpected opcode {other}"),
        }
    };
    assert_eq!(code, CloseCode::HEARTBEAT_TIMEOUT.0);
    assert!(pings >= 2, "the hub pinged before giving up ({pings} pings)");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn a_client_that_answers_pings_outlives_the_heartbeat_timeout() {
    let mut config = test_config();
    config.heartbeat.interval_ms = 50;
    config.heartbeat.timeout_ms = 150;
    let server = TestServer::start_with(config).await;
    let (mut socket, _) = raw_connect(&server, "alive").await;
    // tungstenite answers each ping while we read; count ten of them, which
    // spans more than three timeouts, with no close in between.
    let mut pings = 0;
    while pings < 10 {
        match switchboard_tests::raw_next_message(&mut socket).await {
            WsMessage::Ping(_) => pings += 1,
            WsMessage::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_slow_consumer_is_disconnected_and_memory_stays_bounded() {
    let mut config = test_config();
    config.limits.max_message_bytes = 128 * 1024;
    config.limits.outbound_queue_bytes = 256 * 1024;
    config.limits.outbound_queue_messages = 16;
    config.rooms.publish_requires_join = false;
    let server = TestServer::start_with(config).await;
    // Joins `flood` at connect time and then never reads a byte.
    let _stalled = RawTcp::connect(&server, "user_id=stalled&room=flood").await;
    let (reader, mut reader_events) = connect(&server, "reader").await;
    reader.join("flood").await.unwrap();
    let (publisher, _) = connect(&server, "publisher").await;

    let payload = "y".repeat(100 * 1024);
    let mut published = 0;
    let mut received = 0;
    loop {
        publisher.publish("flood", "bulk", json!({"n": published, "pad": payload})).await.unwrap();
        published += 1;
        // The well-behaved reader keeps up and gets every message in order.
        while received < published {
            let message = reader_events.next_message().await;
            if message.event == "bulk" {
                assert_eq!(message.data["n"], received);
                received += 1;
            }
        }
        let stats: serde_json::Value = switchboard_tests::get_json(&server, "/api/stats").await;
        if stats["slow_consumers_total"] == 1 {
            break;
        }
        // Loopback socket buffers hold a few MB; 400 × 100 KiB is far beyond them.
        assert!(published < 400, "the stalled client was never cut off");
    }
    eventually("the stalled connection to be gone", || async {
        let online: serde_json::Value = switchboard_tests::get_json(&server, "/api/online").await;
        (online["users"] == json!(["publisher", "reader"])).then_some(())
    })
    .await;
    assert!(reader.is_connected() && publisher.is_connected());
}

#[tokio::test]
async fn graceful_shutdown_closes_with_1001_and_the_sdk_plans_to_reconnect() {
    let server = TestServer::start().await;
    let (mut socket, _) = raw_connect(&server, "raw").await;
    let (_client, mut events) = connect(&server, "sdk").await;
    let stopping = tokio::spawn(server.stop());
    assert_eq!(raw_close_code(&mut socket).await, CloseCode::GOING_AWAY.0);
    let event = events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await;
    let Event::Disconnected(disconnected) = event else { unreachable!() };
    assert_eq!(disconnected.code, Some(CloseCode::GOING_AWAY));
    assert!(disconnected.will_reconnect);
    stopping.await.unwrap();
}
