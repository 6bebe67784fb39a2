//! Connection-level control: the connections listing (session, transport,
//! address, user agent, rooms; paginated), writing to and closing one
//! session, broadcasting to several rooms or leaving one session out, and a
//! client publish that leaves out its sender; on one node and across two.

use serde_json::{Value, json};
use switchboard_protocol::CloseCode;
use switchboard_server::{AppState, SessionReach};
use switchboard_tests::{
    Event, TestRedis, TestServer, cluster_config, connect, get_json, http, test_config,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = http().post(server.http(path)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// The one session of `user`, from the listing.
async fn session_of(server: &TestServer, user: &str) -> String {
    let listed = get_json(server, &format!("/api/connections?user={user}")).await;
    let connections = listed["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 1, "{listed}");
    connections[0]["session"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn operators_list_reach_and_close_single_connections() {
    let server = TestServer::start().await;
    let (phone, mut phone_events) = connect(&server, "alice").await;
    phone.join("team").await.unwrap();
    // The laptop says who it is in its User-Agent.
    let mut request = format!("{}?user_id=alice", server.ws_url()).into_client_request().unwrap();
    request.headers_mut().insert("user-agent", "switchboard-test-laptop/1.0".parse().unwrap());
    let (mut laptop, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    switchboard_tests::raw_next(&mut laptop).await; // welcome
    let (_bob, mut bob_events) = connect(&server, "bob").await;

    let listed = get_json(&server, "/api/connections?user=alice").await;
    let connections = listed["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 2, "{listed}");
    for connection in &connections {
        assert_eq!(
            (connection["user"].clone(), connection["transport"].clone()),
            (json!("alice"), json!("websocket"))
        );
        assert_eq!(connection["address"], "127.0.0.1");
        assert!(connection["connected_at"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(connection["session"].as_str().unwrap().len(), 32);
    }
    let laptop_entry =
        connections.iter().find(|c| c["user_agent"] == "switchboard-test-laptop/1.0");
    let phone_entry = connections.iter().find(|c| c["rooms"] == json!(["team"])).unwrap();
    let laptop_session =
        laptop_entry.expect("the laptop's agent is listed")["session"].as_str().unwrap().to_owned();
    let phone_session = phone_entry["session"].as_str().unwrap().to_owned();
    assert_ne!(laptop_session, phone_session);

    // Pages of one, in session order, until the cursor runs out.
    let first = get_json(&server, "/api/connections?limit=1").await;
    let mut seen = vec![first["connections"][0]["session"].as_str().unwrap().to_owned()];
    let mut cursor = first["cursor"].as_str().map(str::to_owned);
    while let Some(after) = cursor {
        let page = get_json(&server, &format!("/api/connections?limit=1&cursor={after}")).await;
        seen.push(page["connections"][0]["session"].as_str().unwrap().to_owned());
        cursor = page["cursor"].as_str().map(str::to_owned);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!((seen.len(), &seen), (3, &sorted));

    // A message to the phone's session only.
    let (status, reached) = post(
        &server,
        &format!("/api/connections/{phone_session}/send"),
        json!({"event": "ping", "data": 1}),
    )
    .await;
    assert_eq!((status, reached), (200, json!({"status": "reached"})));
    let message = phone_events.next_message().await;
    assert_eq!(
        (message.event.as_str(), message.from.as_str(), message.offset),
        ("ping", "server", None)
    );

    // Closing the phone's session leaves the laptop connected.
    let (status, _) = post(
        &server,
        &format!("/api/connections/{phone_session}/disconnect"),
        json!({"reason": "lost device"}),
    )
    .await;
    assert_eq!(status, 200);
    let gone = phone_events.wait_for("closed", |e| matches!(e, Event::Disconnected(_))).await;
    assert!(matches!(gone, Event::Disconnected(d) if d.code == Some(CloseCode::KICKED)));
    switchboard_tests::eventually("the phone gone from the listing", || async {
        let listed = get_json(&server, "/api/connections?user=alice").await;
        (listed["connections"].as_array()?.len() == 1).then_some(())
    })
    .await;
    assert_eq!(session_of(&server, "alice").await, laptop_session);

    let (status, body) =
        post(&server, &format!("/api/connections/{phone_session}/send"), json!({"event": "e"}))
            .await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("not_found")));
    let (status, _) = post(&server, "/api/connections/not-a-session/disconnect", json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = post(
        &server,
        &format!("/api/connections/{laptop_session}/disconnect"),
        json!({"code": 1011}),
    )
    .await;
    assert_eq!(status, 400, "close codes are checked");
    assert!(
        bob_events.drain().iter().all(|e| !matches!(e, Event::Message(_))),
        "nothing reached bob"
    );
}

#[tokio::test]
async fn broadcasts_reach_several_rooms_or_leave_one_session_out_and_clients_can_skip_themselves() {
    let server = TestServer::start_with(test_config()).await;
    let (ann, mut ann_events) = connect(&server, "ann").await;
    let (ann2, mut ann2_events) = connect(&server, "ann").await;
    let (bob, mut bob_events) = connect(&server, "bob").await;
    ann.join("a").await.unwrap();
    ann2.join("a").await.unwrap();
    bob.join("b").await.unwrap();

    let (status, body) =
        post(&server, "/api/broadcast", json!({"event": "n", "data": 1, "rooms": ["a", "b"]}))
            .await;
    assert_eq!((status, body), (200, json!({"delivered": 3})));
    for events in [&mut ann_events, &mut ann2_events, &mut bob_events] {
        assert_eq!(events.next_message().await.data, json!(1));
    }
    let (status, _) =
        post(&server, "/api/broadcast", json!({"event": "n", "room": "a", "rooms": ["b"]})).await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, "/api/broadcast", json!({"event": "n", "except": "x"})).await;
    assert_eq!(status, 400, "except needs a room");

    // Leave one of ann's two sessions out.
    let listed = get_json(&server, "/api/connections?user=ann").await;
    let sessions: Vec<String> = listed["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["session"].as_str().unwrap().to_owned())
        .collect();
    let (status, _) = post(
        &server,
        "/api/broadcast",
        json!({"event": "n", "data": 2, "room": "a", "except": sessions[0]}),
    )
    .await;
    assert_eq!(status, 200);
    // Exactly one of ann's connections gets it; the next message proves
    // the other one skipped it rather than being slow.
    ann.publish("a", "n", 3).await.unwrap();
    let mut got = Vec::new();
    for events in [&mut ann_events, &mut ann2_events] {
        let first = events.next_message().await.data;
        if first == json!(2) {
            got.push(2);
            assert_eq!(events.next_message().await.data, json!(3));
        } else {
            assert_eq!(first, json!(3));
        }
    }
    assert_eq!(got, [2], "one of the two sessions was left out");

    // A client publish that leaves its sender out: the user's other
    // connection still gets it.
    ann.publish_to_others("a", "n", 4).await.unwrap();
    assert_eq!(ann2_events.next_message().await.data, json!(4));
    ann.publish("a", "n", 5).await.unwrap();
    assert_eq!(ann_events.next_message().await.data, json!(5), "4 never reached the sender");
    drop((ann2, bob));
}

#[tokio::test]
async fn sessions_on_another_node_are_reached_through_redis() {
    let redis = TestRedis::start().await;
    let state = AppState::new(cluster_config(&redis)).unwrap();
    let _embedded = TestServer::start_state(state.clone()).await;
    let other_state = AppState::new(cluster_config(&redis)).unwrap();
    let other = TestServer::start_state(other_state.clone()).await;
    let (carol, mut carol_events) = connect(&other, "carol").await;
    let (dave, mut dave_events) = connect(&other, "dave").await;
    carol.join("ops").await.unwrap();
    dave.join("ops").await.unwrap();
    let listed = get_json(&other, "/api/connections?user=carol").await;
    assert_eq!(listed["connections"][0]["node"].as_str(), other_state.node_id(), "{listed}");
    let session = listed["connections"][0]["session"].as_str().unwrap().to_owned();

    let reach = state.send_to_session(&session, "hello", json!("from afar")).await.unwrap();
    assert_eq!(reach, SessionReach::Forwarded);
    assert_eq!(carol_events.next_message().await.data, json!("from afar"));

    // A room message that leaves carol out, published on the other node.
    state.publish_except("ops", "n", json!(1), Some(&session)).await.unwrap();
    carol.publish_to_others("ops", "n", json!(2)).await.unwrap();
    assert_eq!(dave_events.next_message().await.data, json!(1));
    assert_eq!(dave_events.next_message().await.data, json!(2));
    state.publish("ops", "n", json!(3)).await.unwrap();
    assert_eq!(carol_events.next_message().await.data, json!(3), "1 and 2 left carol out");

    let reach = state.disconnect_session(&session, CloseCode::KICKED, "bye").await.unwrap();
    assert_eq!(reach, SessionReach::Forwarded);
    carol_events.wait_for("closed", |e| matches!(e, Event::Disconnected(_))).await;
    assert!(dave.is_connected());
}

#[tokio::test]
async fn the_listing_covers_every_node_page_by_page_and_names_a_silent_one() {
    let redis = TestRedis::start().await;
    let (one_state, two_state) = (
        AppState::new(cluster_config(&redis)).unwrap(),
        AppState::new(cluster_config(&redis)).unwrap(),
    );
    let one = TestServer::start_state(one_state.clone()).await;
    let two = TestServer::start_state(two_state.clone()).await;
    let mut clients = Vec::new();
    for (index, user) in ["ann", "bob", "cat", "dan", "eve"].into_iter().enumerate() {
        let node = if index % 2 == 0 { &one } else { &two };
        clients.push(connect(node, user).await);
    }
    let (ann_again, _) = connect(&two, "ann").await;

    // Everyone, from either node, one page of two at a time.
    for asked in [&one, &two] {
        let mut seen: Vec<(String, String, String)> = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let path = match &cursor {
                Some(cursor) => format!("/api/connections?limit=2&cursor={cursor}"),
                None => "/api/connections?limit=2".to_owned(),
            };
            let page = get_json(asked, &path).await;
            assert!(page.get("missing_nodes").is_none(), "{page}");
            for c in page["connections"].as_array().unwrap() {
                let field = |name: &str| c[name].as_str().unwrap().to_owned();
                seen.push((field("session"), field("user"), field("node")));
            }
            cursor = page["cursor"].as_str().map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 6, "{seen:?}");
        let sessions: Vec<&String> = seen.iter().map(|(session, _, _)| session).collect();
        assert!(sessions.windows(2).all(|w| w[0] < w[1]), "in session order, once each: {seen:?}");
        let on = |node: &AppState| {
            let id = node.node_id().unwrap().to_owned();
            let mut users: Vec<&str> =
                seen.iter().filter(|(_, _, n)| *n == id).map(|(_, u, _)| u.as_str()).collect();
            users.sort_unstable();
            users
        };
        assert_eq!(on(&one_state), ["ann", "cat", "eve"]);
        assert_eq!(on(&two_state), ["ann", "bob", "dan"]);
    }

    // One user's connections on both nodes.
    let ann = get_json(&one, "/api/connections?user=ann").await;
    let nodes: Vec<&str> = ann["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 2, "{ann}");
    assert!(nodes.contains(&one_state.node_id().unwrap()));
    assert!(nodes.contains(&two_state.node_id().unwrap()));

    // A node the registry calls alive but that never answers: the listing
    // comes back after redis.timeout_ms with what the others said, and
    // names it.
    redis.cli(&["ZADD", "switchboard:{home}:nodes", "99999999999999", "silent-node"]);
    let started = std::time::Instant::now();
    let page = get_json(&one, "/api/connections").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(page["missing_nodes"], json!(["silent-node"]), "{page}");
    assert_eq!(page["connections"].as_array().unwrap().len(), 6, "{page}");
    drop((clients, ann_again));
}

/// A client that closes gets the hub's close frame back (RFC 6455 §5.5.1),
/// so its close handshake completes instead of ending in a reset.
#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;

    let server = TestServer::start_with(test_config()).await;
    let (mut socket, _) = switchboard_tests::raw_connect(&server, "leaver").await;
    let frame = CloseFrame { code: WsCloseCode::Normal, reason: "bye".into() };
    socket.send(Message::Close(Some(frame))).await.unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("an answer within 5 s");
    let answer = answer.expect("a close frame, not a dropped connection");
    assert_eq!(answer.map(|frame| u16::from(frame.code)), Some(1000));
}
