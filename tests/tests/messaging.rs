//! Rooms, private messages, presence and multi-connection users, through
//! the SDK against a real hub.

use serde_json::json;
use switchboard_protocol::PresenceAction;
use switchboard_tests::{TestServer, connect};

#[tokio::test]
async fn private_chat_between_two_users() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    let (bob, mut bob_events) = connect(&server, "bob").await;

    let delivered = alice.send("bob", "dm", json!({"text": "hi bob"})).await.unwrap();
    assert_eq!(delivered, 1);
    let message = bob_events.next_message().await;
    assert_eq!(message.from, "alice");
    assert_eq!(message.to.as_deref(), Some("bob"));
    assert_eq!(message.room, None);
    assert_eq!((message.event.as_str(), message.data.clone()), ("dm", json!({"text": "hi bob"})));
    assert!(message.ts > 1_700_000_000_000, "ts is Unix milliseconds");

    bob.send("alice", "dm", "hi alice").await.unwrap();
    let reply = alice_events.next_message().await;
    assert_eq!((reply.from.as_str(), reply.data), ("bob", json!("hi alice")));
}

#[tokio::test]
async fn a_private_message_to_nobody_reports_zero_deliveries() {
    let server = TestServer::start().await;
    let (alice, _events) = connect(&server, "alice").await;
    assert_eq!(alice.send("nobody", "dm", 1).await.unwrap(), 0);
}

#[tokio::test]
async fn room_publish_reaches_members_only_the_sender_included() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    let (bob, mut bob_events) = connect(&server, "bob").await;
    let (carol, mut carol_events) = connect(&server, "carol").await;
    alice.join("general").await.unwrap();
    bob.join("general").await.unwrap();
    carol.join("other").await.unwrap();

    alice.publish("general", "chat", json!({"text": "hello room"})).await.unwrap();
    for events in [&mut alice_events, &mut bob_events] {
        let message = events.next_message().await;
        assert_eq!(message.room.as_deref(), Some("general"));
        assert_eq!((message.from.as_str(), message.event.as_str()), ("alice", "chat"));
        assert_eq!(message.data, json!({"text": "hello room"}));
    }

    // Carol's connection delivers in order: if the marker published after the
    // acked room message arrives first, the room message never will.
    bob.publish("general", "chat", "second").await.unwrap();
    carol.publish("other", "marker", "after").await.unwrap();
    let first = carol_events.next_message().await;
    assert_eq!((first.event.as_str(), first.room.as_deref()), ("marker", Some("other")));
}

#[tokio::test]
async fn publishing_to_a_room_not_joined_is_refused() {
    let server = TestServer::start().await;
    let (alice, _events) = connect(&server, "alice").await;
    match alice.publish("general", "chat", "hi").await {
        Err(switchboard_sdk::Error::Server { code, .. }) => {
            assert_eq!(code, switchboard_protocol::ErrorCode::NOT_JOINED)
        }
        other => panic!("expected not_joined, got {other:?}"),
    }
}

#[tokio::test]
async fn one_user_with_two_connections_gets_a_private_message_on_both() {
    let server = TestServer::start().await;
    let (_tab1, mut tab1_events) = connect(&server, "alice").await;
    let (_tab2, mut tab2_events) = connect(&server, "alice").await;
    let (bob, _bob_events) = connect(&server, "bob").await;

    assert_eq!(bob.send("alice", "dm", "to every tab").await.unwrap(), 2);
    for events in [&mut tab1_events, &mut tab2_events] {
        let message = events.next_message().await;
        assert_eq!((message.from.as_str(), message.data), ("bob", json!("to every tab")));
    }
}

#[tokio::test]
async fn presence_join_and_leave_are_per_user() {
    let server = TestServer::start().await;
    let (watcher, mut watcher_events) = connect(&server, "watcher").await;
    assert_eq!(watcher.join("lobby").await.unwrap(), vec!["watcher".to_owned()]);
    let own = watcher_events.next_presence().await;
    assert_eq!((own.user.as_str(), own.action), ("watcher", PresenceAction::Join));

    let (tab1, _e1) = connect(&server, "alice").await;
    let (tab2, _e2) = connect(&server, "alice").await;
    let members = tab1.join("lobby").await.unwrap();
    assert_eq!(members, vec!["alice".to_owned(), "watcher".to_owned()]);
    let joined = watcher_events.next_presence().await;
    assert_eq!((joined.room.as_str(), joined.user.as_str()), ("lobby", "alice"));
    assert_eq!(joined.action, PresenceAction::Join);

    // A second tab joining and the first leaving announce nothing: alice is
    // still present. The marker proves no presence event came before it.
    tab2.join("lobby").await.unwrap();
    tab1.leave("lobby").await.unwrap();
    watcher.publish("lobby", "marker", 1).await.unwrap();
    let next = watcher_events
        .wait_for("marker or presence", |e| {
            matches!(
                e,
                switchboard_tests::Event::Message(_) | switchboard_tests::Event::Presence(_)
            )
        })
        .await;
    assert!(
        matches!(&next, switchboard_tests::Event::Message(m) if m.event == "marker"),
        "expected no presence before the marker, got {next:?}"
    );

    // Alice's last connection in the room going away announces the leave.
    tab2.close().await;
    let left = watcher_events.next_presence().await;
    assert_eq!((left.user.as_str(), left.action), ("alice", PresenceAction::Leave));
}

/// Reads go through a per-thread buffer and a small per-connection read
/// buffer (`transport/pooled_read.rs`): frames of every size around those
/// buffers' bounds, sent back to back in one write, each arrive whole and in
/// order.
#[tokio::test]
async fn frames_of_every_size_sent_in_one_write_arrive_whole_and_in_order() {
    use futures::SinkExt;
    use switchboard_protocol::ServerFrame;
    use switchboard_tests::{raw_connect, raw_next, raw_send};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let server = TestServer::start().await;
    let (mut socket, _) = raw_connect(&server, "alice").await;
    raw_send(&mut socket, r#"{"type":"join","id":"j","room":"sizes"}"#).await;
    assert!(matches!(raw_next(&mut socket).await, ServerFrame::Ack(_)));
    // Around the 128 B read buffer, the 16 KiB pool and past both.
    let sizes = [1, 60, 127, 128, 129, 1_000, 16 * 1024 - 80, 16 * 1024, 16 * 1024 + 1, 60_000];
    for (n, size) in sizes.iter().enumerate() {
        let text = format!(
            r#"{{"type":"publish","room":"sizes","event":"e{n}","data":"{}"}}"#,
            "x".repeat(*size)
        );
        // `feed` gathers them; the flush below writes them together.
        socket.feed(WsMessage::Text(text.into())).await.unwrap();
    }
    socket.flush().await.unwrap();
    for (n, size) in sizes.iter().enumerate() {
        let message = loop {
            match raw_next(&mut socket).await {
                ServerFrame::Message(message) => break message,
                // Alice's own arrival in the room.
                ServerFrame::Presence(_) => continue,
                other => panic!("expected message e{n}, got {other:?}"),
            }
        };
        assert_eq!(message.event, format!("e{n}"));
        assert_eq!(message.data.as_str().map(str::len), Some(*size));
    }
}
