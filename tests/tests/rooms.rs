//! Managed rooms: created ahead of time with metadata through the HTTP API
//! (and `rooms.default_rooms`), listed whether or not anyone is in them,
//! their info in every join's ack, changed and deleted, limited by
//! `rooms.max_rooms`; one catalog for a whole cluster.

use serde_json::{Value, json};
use switchboard_sdk::RoomInfo;
use switchboard_server::Config;
use switchboard_tests::{
    Event, TestRedis, TestServer, cluster_config, connect, get_json, http, test_config,
};

/// A request's status and JSON answer.
async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = http().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("HTTP request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn managed(config: &mut Config) {
    config.rooms.default_rooms = vec!["general".to_owned()];
    config.rooms.max_rooms = 3;
}

#[tokio::test]
async fn rooms_are_created_ahead_listed_joined_with_their_info_changed_and_deleted() {
    let mut config = test_config();
    managed(&mut config);
    let server = TestServer::start_with(config).await;
    use reqwest::Method;

    // The default room exists from the start, with nobody in it.
    let listed = get_json(&server, "/api/rooms").await;
    assert_eq!(listed["rooms"][0]["id"], "general");
    assert_eq!(
        (listed["rooms"][0]["default"].clone(), listed["rooms"][0]["members"].clone()),
        (json!(true), json!(0))
    );

    let launch =
        json!({"id": "launch", "name": "Launch", "description": "T-minus", "data": {"pad": 39}});
    let (status, created) =
        call(Method::POST, server.http("/api/rooms"), Some(launch.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["id"].clone(), created["name"].clone(), created["data"].clone()),
        (json!("launch"), json!("Launch"), json!({"pad": 39}))
    );
    assert!(created["created_at"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
    let (status, again) = call(Method::POST, server.http("/api/rooms"), Some(launch)).await;
    assert_eq!((status, again["error"]["code"].clone()), (409, json!("room_exists")));
    let (status, bad) =
        call(Method::POST, server.http("/api/rooms"), Some(json!({"id": ""}))).await;
    assert_eq!((status, bad["error"]["code"].clone()), (422, json!("invalid_name")));
    let (status, _) =
        call(Method::POST, server.http("/api/rooms"), Some(json!({"id": "x", "title": "?"}))).await;
    assert_eq!(status, 422, "unknown fields are refused");

    // A join's ack carries the room's info.
    let (alice, mut alice_events) = connect(&server, "alice").await;
    alice.join("launch").await.unwrap();
    let Event::Joined(joined) =
        alice_events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    let expected = RoomInfo {
        name: Some("Launch".into()),
        description: Some("T-minus".into()),
        data: Some(json!({"pad": 39})),
    };
    assert_eq!(joined.info, Some(expected));
    let quiet = get_json(&server, "/api/rooms/launch").await;
    assert!(quiet.get("last_activity").is_none(), "nothing published yet: {quiet}");
    alice.publish("launch", "go", json!(1)).await.unwrap();
    let detail = get_json(&server, "/api/rooms/launch").await;
    assert!(
        detail["last_activity"]
            .as_u64()
            .is_some_and(|t| t >= detail["created_at"].as_u64().unwrap()),
        "{detail}"
    );
    assert_eq!(
        (detail["members"].clone(), detail["name"].clone()),
        (json!(["alice"]), json!("Launch"))
    );

    // A change: a null clears, a left-out field stays; later joins see it.
    let (status, changed) = call(
        Method::PATCH,
        server.http("/api/rooms/launch"),
        Some(json!({"description": null, "data": {"pad": 40}})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(
        (changed["name"].clone(), changed.get("description"), changed["data"].clone()),
        (json!("Launch"), None, json!({"pad": 40}))
    );
    assert_eq!(changed["members"], json!(["alice"]));
    let (bob, mut bob_events) = connect(&server, "bob").await;
    bob.join("launch").await.unwrap();
    let Event::Joined(joined) =
        bob_events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    assert_eq!(joined.info.and_then(|info| info.data), Some(json!({"pad": 40})));
    let (status, _) =
        call(Method::PATCH, server.http("/api/rooms/nowhere"), Some(json!({"name": "x"}))).await;
    assert_eq!(status, 404);
    let (status, _) =
        call(Method::PATCH, server.http("/api/rooms/launch"), Some(json!({"name": 7}))).await;
    assert_eq!(status, 422);

    // An ad hoc room has no info; the limit counts managed rooms.
    alice.join("adhoc").await.unwrap();
    let (status, _) =
        call(Method::POST, server.http("/api/rooms"), Some(json!({"id": "third"}))).await;
    assert_eq!(status, 201);
    let (status, full) =
        call(Method::POST, server.http("/api/rooms"), Some(json!({"id": "fourth"}))).await;
    assert_eq!((status, full["error"]["code"].clone()), (409, json!("room_limit")));
    let listed = get_json(&server, "/api/rooms").await;
    let ids: Vec<(&str, bool)> = listed["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r.get("created_at").is_some()))
        .collect();
    assert_eq!(ids, [("adhoc", false), ("general", true), ("launch", true), ("third", true)]);

    // Deleting takes everyone out; default rooms stay.
    let (status, deleted) = call(Method::DELETE, server.http("/api/rooms/launch"), None).await;
    assert_eq!((status, deleted), (200, json!({"members": 2})));
    for events in [&mut alice_events, &mut bob_events] {
        events.wait_for("left", |e| matches!(e, Event::Left(l) if l.room == "launch")).await;
    }
    let (status, _) = call(Method::GET, server.http("/api/rooms/launch"), None).await;
    assert_eq!(status, 404);
    let (status, kept) = call(Method::DELETE, server.http("/api/rooms/general"), None).await;
    assert_eq!((status, kept["error"]["code"].clone()), (409, json!("default_room")));
    let (status, _) = call(Method::GET, server.http("/api/rooms/general"), None).await;
    assert_eq!(status, 200, "an empty managed room still answers");
    drop((alice, bob));
}

#[tokio::test]
async fn a_room_created_through_one_node_is_managed_on_every_node() {
    let redis = TestRedis::start().await;
    let mut config = cluster_config(&redis);
    managed(&mut config);
    let a = TestServer::start_with(config.clone()).await;
    let b = TestServer::start_with(config).await;
    let (status, _) = call(
        reqwest::Method::POST,
        a.http("/api/rooms"),
        Some(json!({"id": "ops", "name": "Operations"})),
    )
    .await;
    assert_eq!(status, 201);
    let listed = get_json(&b, "/api/rooms").await;
    let names: Vec<&str> =
        listed["rooms"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["Operations"]);
    let (carol, mut events) = connect(&b, "carol").await;
    carol.join("ops").await.unwrap();
    let Event::Joined(joined) = events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    assert_eq!(joined.info.and_then(|info| info.name).as_deref(), Some("Operations"));
    let (status, deleted) = call(reqwest::Method::DELETE, a.http("/api/rooms/ops"), None).await;
    assert_eq!((status, deleted), (200, json!({"members": 1})));
    events.wait_for("left", |e| matches!(e, Event::Left(_))).await;
}
