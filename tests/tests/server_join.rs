//! Server-side join and leave (`POST /api/rooms/{room}/join|leave`,
//! `AppState::join`/`leave`): a backend puts a user's connections in a
//! room or takes them out; the SDK treats such a room as its own, rejoining
//! it with recovery after a reconnect, until the server takes it out again.

use serde_json::json;
use switchboard_protocol::PresenceAction;
use switchboard_server::AppState;
use switchboard_tests::{
    Event, Proxy, TestRedis, TestServer, client_at, cluster_config, connect, fast_reconnect, http,
    post_json,
};

#[tokio::test]
async fn the_backend_puts_every_connection_of_a_user_in_a_room_and_takes_them_out() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (bob, mut bob_events) = connect(&server, "bob").await;
    bob.join("team").await.unwrap();
    // Alice's phone goes through a proxy that can cut it; her laptop does not.
    let (phone, mut phone_events) = client_at(&proxy.ws_url(), "alice", fast_reconnect());
    phone.connect().await.unwrap();
    let (_laptop, mut laptop_events) = connect(&server, "alice").await;

    let joined = post_json(&server, "/api/rooms/team/join", json!({"user": "alice"})).await;
    assert_eq!(joined, json!({"connections": 2}));
    for events in [&mut phone_events, &mut laptop_events] {
        let Event::Joined(joined) =
            events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
        else {
            unreachable!()
        };
        assert!(joined.by_server && !joined.rejoin, "{joined:?}");
        assert_eq!((joined.room.as_str(), joined.member_count), ("team", 2));
    }
    // Announced once: presence is per user, not per connection.
    let presence = bob_events
        .wait_for("alice joins", |e| matches!(e, Event::Presence(p) if p.user == "alice"))
        .await;
    assert!(matches!(presence, Event::Presence(p) if p.action == PresenceAction::Join));
    bob.publish("team", "chat", json!("hi both")).await.unwrap();
    assert_eq!(phone_events.next_message().await.data, json!("hi both"));
    assert_eq!(laptop_events.next_message().await.data, json!("hi both"));

    // The phone drops; what is published meanwhile comes back with the rejoin.
    proxy.refuse(true);
    proxy.cut_all();
    phone_events.wait_for("the drop", |e| matches!(e, Event::Disconnected(_))).await;
    bob.publish("team", "chat", json!("while away")).await.unwrap();
    proxy.refuse(false);
    // The replay comes first, then the rejoin's report.
    phone_events
        .wait_for(
            "the missed message",
            |e| matches!(e, Event::Message(m) if m.data == json!("while away")),
        )
        .await;
    let Event::Joined(rejoined) = phone_events.next().await else { panic!("the rejoin") };
    assert!(rejoined.rejoin && rejoined.recovered == Some(true), "{rejoined:?}");

    let left = post_json(&server, "/api/rooms/team/leave", json!({"user": "alice"})).await;
    assert_eq!(left, json!({"connections": 2}));
    for events in [&mut phone_events, &mut laptop_events] {
        let left = events.wait_for("left", |e| matches!(e, Event::Left(_))).await;
        assert!(matches!(left, Event::Left(l) if l.room == "team"));
    }
    bob_events
        .wait_for("alice leaves", |e| {
            matches!(e, Event::Presence(p) if p.user == "alice" && p.action == PresenceAction::Leave)
        })
        .await;
    // No longer a member: a reconnect does not bring the room back.
    proxy.cut_all();
    phone_events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    bob.publish("team", "chat", json!("alice is gone")).await.unwrap();
    assert_eq!(bob_events.next_message().await.data, json!("alice is gone"));
    let room = switchboard_tests::get_json(&server, "/api/rooms/team").await;
    assert_eq!(room["members"], json!(["bob"]));
    assert!(
        phone_events.drain().iter().all(|e| !matches!(e, Event::Message(_) | Event::Joined(_))),
        "nothing from the room after the leave"
    );
}

#[tokio::test]
async fn a_server_side_join_checks_its_input_and_counts_who_it_reached() {
    let server = TestServer::start().await;
    let answer = post_json(&server, "/api/rooms/team/join", json!({"user": "nobody"})).await;
    assert_eq!(answer, json!({"connections": 0}));
    let bad = http()
        .post(server.http("/api/rooms/team/join"))
        .json(&json!({"user": "alice", "room": "other"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422, "unknown fields are refused");
    let bad = http()
        .post(server.http("/api/rooms/team/leave"))
        .json(&json!({"user": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_name", "{body}");
}

#[tokio::test]
async fn one_node_joins_a_user_connected_to_another() {
    let redis = TestRedis::start().await;
    let state = AppState::new(cluster_config(&redis)).unwrap();
    let _embedded = TestServer::start_state(state.clone()).await;
    let other = TestServer::start_with(cluster_config(&redis)).await;
    let (carol, mut carol_events) = connect(&other, "carol").await;
    assert_eq!(state.join("carol", "ops").await.unwrap(), 1, "counted across nodes");
    carol_events.wait_for("joined", |e| matches!(e, Event::Joined(j) if j.by_server)).await;
    state.publish("ops", "page", json!("disk full")).await.unwrap();
    assert_eq!(carol_events.next_message().await.data, json!("disk full"));
    assert_eq!(state.leave("carol", "ops").await.unwrap(), 1);
    carol_events.wait_for("left", |e| matches!(e, Event::Left(_))).await;
    drop(carol);
}
