//! The in-process server API of an embedded hub (`AppState::send`,
//! `publish`, `broadcast`, `disconnect`, `online_users`, `room_members`):
//! what service code in the embedding process calls instead of its own
//! HTTP API, on one node and across a cluster.

use serde_json::json;
use switchboard_protocol::CloseCode;
use switchboard_server::{AppState, SendStatus, ServerError};
use switchboard_tests::{Event, TestRedis, TestServer, cluster_config, connect, test_config};

#[tokio::test]
async fn service_code_sends_publishes_broadcasts_and_disconnects_without_http() {
    let state = AppState::new(test_config()).unwrap();
    let server = TestServer::start_state(state.clone()).await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    alice.join("general").await.unwrap();

    let sent = state.send("alice", "invoice", json!({"id": 42})).await.unwrap();
    assert_eq!((sent.delivered, sent.status), (1, SendStatus::Live));
    let message = alice_events.next_message().await;
    assert_eq!((message.from.as_str(), message.event.as_str()), ("server", "invoice"));
    assert_eq!((message.to.as_deref(), message.offset), (Some("alice"), Some(sent.offset)));

    let published = state.publish("general", "notice", json!("at 5")).await.unwrap();
    let message = alice_events.next_message().await;
    assert_eq!(
        (message.room.as_deref(), message.offset),
        (Some("general"), Some(published.offset))
    );
    assert_eq!(state.broadcast("all", json!(1)).await.unwrap(), 1);
    assert_eq!(alice_events.next_message().await.event, "all");

    let queued = state.send("bob", "later", json!(null)).await.unwrap();
    assert_eq!((queued.delivered, queued.status), (0, SendStatus::Queued));
    assert_eq!(state.online_users().await.unwrap(), ["alice"]);
    let members = state.room_members("general", None, 10).await.unwrap().unwrap();
    assert_eq!((members.users, members.count), (vec!["alice".to_owned()], 1));
    assert_eq!(state.room_members("empty", None, 10).await.unwrap(), None);

    assert!(matches!(
        state.send("", "e", json!(1)).await,
        Err(ServerError::InvalidName { field: "to", .. })
    ));
    assert!(matches!(
        state.disconnect("alice", CloseCode(1011), "no").await,
        Err(ServerError::InvalidCloseCode(1011))
    ));
    assert_eq!(state.disconnect("alice", CloseCode::KICKED, "bye").await.unwrap(), 1);
    let gone = alice_events.wait_for("the kick", |e| matches!(e, Event::Disconnected(_))).await;
    assert!(matches!(gone, Event::Disconnected(d) if d.code == Some(CloseCode::KICKED)));
}

#[tokio::test]
async fn the_in_process_api_of_one_node_reaches_the_whole_cluster() {
    let redis = TestRedis::start().await;
    let state = AppState::new(cluster_config(&redis)).unwrap();
    // Served too, so that its subscription delivers the cluster's messages.
    let _embedded = TestServer::start_state(state.clone()).await;
    let other = TestServer::start_with(cluster_config(&redis)).await;
    let (carol, mut carol_events) = connect(&other, "carol").await;
    carol.join("news").await.unwrap();

    let sent = state.send("carol", "dm", json!("hi")).await.unwrap();
    assert_eq!((sent.delivered, sent.status), (1, SendStatus::Live), "counted across nodes");
    assert_eq!(carol_events.next_message().await.data, json!("hi"));
    state.publish("news", "n", json!(1)).await.unwrap();
    assert_eq!(carol_events.next_message().await.data, json!(1));
    assert_eq!(state.online_users().await.unwrap(), ["carol"]);
    assert_eq!(state.disconnect("carol", CloseCode::KICKED, "bye").await.unwrap(), 1);
    carol_events.wait_for("the kick", |e| matches!(e, Event::Disconnected(_))).await;
}
