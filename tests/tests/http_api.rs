//! The HTTP admin API against a real hub, with SDK clients on the other end.

use serde_json::{Value, json};
use switchboard_sdk::{CloseCode, ConnectionState};
use switchboard_tests::{Event, TestServer, connect, http};

async fn get(server: &TestServer, path: &str) -> (u16, Value) {
    let response = http().get(server.http(path)).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    let response = http().post(server.http(path)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn health_answers() {
    let server = TestServer::start().await;
    let (status, body) = get(&server, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["protocol"], 1);
}

#[tokio::test]
async fn send_reaches_every_connection_of_the_user_from_the_server() {
    let server = TestServer::start().await;
    let (_tab1, mut tab1) = connect(&server, "bob").await;
    let (_tab2, mut tab2) = connect(&server, "bob").await;
    let (status, body) =
        post(&server, "/api/send", json!({"to": "bob", "event": "notice", "data": {"n": 1}})).await;
    assert_eq!((status, body), (200, json!({"delivered": 2, "status": "live", "offset": 1})));
    for events in [&mut tab1, &mut tab2] {
        let message = events.next_message().await;
        assert_eq!(message.from, "server");
        assert_eq!(message.to.as_deref(), Some("bob"));
        assert_eq!((message.event.as_str(), message.data), ("notice", json!({"n": 1})));
    }
    // An offline user's message waits in their inbox.
    let (status, body) = post(&server, "/api/send", json!({"to": "ghost", "event": "x"})).await;
    assert_eq!((status, body), (200, json!({"delivered": 0, "status": "queued", "offset": 1})));
}

#[tokio::test]
async fn server_name_is_configurable() {
    let mut config = switchboard_tests::test_config();
    config.server_name = "ops".into();
    let server = TestServer::start_with(config).await;
    let (_bob, mut events) = connect(&server, "bob").await;
    post(&server, "/api/send", json!({"to": "bob", "event": "notice"})).await;
    assert_eq!(events.next_message().await.from, "ops");
}

#[tokio::test]
async fn broadcast_reaches_everyone_or_one_room() {
    let server = TestServer::start().await;
    let (alice, mut alice_events) = connect(&server, "alice").await;
    let (_bob, mut bob_events) = connect(&server, "bob").await;
    alice.join("news").await.unwrap();

    let (status, body) =
        post(&server, "/api/broadcast", json!({"event": "maintenance", "data": "soon"})).await;
    assert_eq!((status, body), (200, json!({"delivered": 2})));
    for events in [&mut alice_events, &mut bob_events] {
        let message = events.next_message().await;
        assert_eq!((message.event.as_str(), message.from.as_str()), ("maintenance", "server"));
        assert_eq!((message.room, message.to), (None, None));
    }

    let (status, body) =
        post(&server, "/api/broadcast", json!({"event": "headline", "room": "news", "data": 1}))
            .await;
    assert_eq!((status, body), (200, json!({"delivered": 1})));
    let message = alice_events.next_message().await;
    assert_eq!((message.event.as_str(), message.room.as_deref()), ("headline", Some("news")));
    // Bob is in no room: a later private message arrives first.
    post(&server, "/api/send", json!({"to": "bob", "event": "marker"})).await;
    assert_eq!(bob_events.next_message().await.event, "marker");
}

#[tokio::test]
async fn stats_online_and_rooms_describe_the_hub() {
    let server = TestServer::start().await;
    let (alice, _a) = connect(&server, "alice").await;
    let (alice2, _a2) = connect(&server, "alice").await;
    let (bob, _b) = connect(&server, "bob").await;
    alice.join("general").await.unwrap();
    alice2.join("general").await.unwrap();
    bob.join("general").await.unwrap();
    bob.join("random").await.unwrap();
    alice.publish("general", "chat", 1).await.unwrap();
    bob.publish("general", "chat", 2).await.unwrap();
    bob.send("alice", "dm", 3).await.unwrap();

    let (_, stats) = get(&server, "/api/stats").await;
    assert_eq!(stats["connections"], 3);
    assert_eq!(stats["users"], 2);
    assert_eq!(stats["rooms"], 2);
    assert_eq!(stats["messages_total"], 3);
    assert_eq!(stats["connections_total"], 3);

    let (_, online) = get(&server, "/api/online").await;
    assert_eq!(
        online,
        json!({"count": 2, "users": ["alice", "bob"], "connections": {"alice": 2, "bob": 1}})
    );

    let (_, mut rooms) = get(&server, "/api/rooms").await;
    // When the newest kept message was published: general had two.
    let general = rooms["rooms"][0].as_object_mut().unwrap();
    assert!(general.remove("last_activity").is_some_and(|t| t.as_u64().unwrap() > 0));
    assert_eq!(
        rooms,
        json!({"rooms": [
            {"id": "general", "members": 2, "connections": 3, "messages": 2},
            {"id": "random", "members": 1, "connections": 1, "messages": 0},
        ]})
    );
    let (status, mut room) = get(&server, "/api/rooms/general").await;
    assert_eq!(status, 200);
    assert!(room.as_object_mut().unwrap().remove("last_activity").is_some());
    assert_eq!(
        room,
        json!({"id": "general", "members": ["alice", "bob"], "member_count": 2, "large": false,
               "connections": 3, "messages": 2})
    );

    bob.close().await;
    switchboard_tests::eventually("bob to go offline", || async {
        let (_, online) = get(&server, "/api/online").await;
        (online["users"] == json!(["alice"])).then_some(())
    })
    .await;
    let (status, body) = get(&server, "/api/rooms/random").await;
    assert_eq!(status, 404, "an empty room disappears");
    assert_eq!(body["error"]["code"], "not_found");
    let (_, stats) = get(&server, "/api/stats").await;
    assert_eq!(
        (stats["connections"].clone(), stats["connections_total"].clone()),
        (json!(2), json!(3))
    );
}

#[tokio::test]
async fn errors_are_json_with_a_code_and_a_fitting_status() {
    let server = TestServer::start().await;
    let (status, body) = post(&server, "/api/send", json!({"to": "bob"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_body")));
    let (status, body) = post(&server, "/api/send", json!({"to": "", "event": "x"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_name")));
    let response = http()
        .post(server.http("/api/broadcast"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_body");
    let (status, body) = get(&server, "/api/nothing-here").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let response = http().delete(server.http("/api/stats")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let (status, body) = get(&server, "/ws").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_identity")));
    let (status, body) = get(&server, "/ws?user_id=alice").await;
    assert_eq!((status, body["error"]["code"].as_str()), (426, Some("not_websocket")));
    let big = "x".repeat(600 * 1024);
    let (status, _) = post(&server, "/api/broadcast", json!({"event": "big", "data": big})).await;
    assert_eq!(status, 413, "bodies over max_message_bytes are refused");
}

#[tokio::test]
async fn disconnect_kicks_a_user_and_the_sdk_does_not_come_back() {
    let server = TestServer::start().await;
    let (mallory, mut events) = connect(&server, "mallory").await;
    let (status, body) = post(&server, "/api/disconnect", json!({"user": "mallory"})).await;
    assert_eq!((status, body), (200, json!({"disconnected": 1})));
    let event = events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await;
    let Event::Disconnected(disconnected) = event else { unreachable!() };
    assert_eq!(disconnected.code, Some(CloseCode::KICKED));
    assert!(!disconnected.will_reconnect, "4501 means do not reconnect");
    assert_eq!(mallory.state(), ConnectionState::Disconnected, "idle, not retrying");
    let (status, body) = post(&server, "/api/disconnect", json!({"user": "x", "code": 1001})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")));
}

#[tokio::test]
async fn stats_report_rates_over_the_last_minute() {
    let server = TestServer::start().await;
    let (_, stats) = get(&server, "/api/stats").await;
    assert_eq!(stats["rates"]["messages_per_sec"], 0.0, "nothing happened yet: {stats}");
    let (alice, _a) = connect(&server, "alice").await;
    alice.join("general").await.unwrap();
    for n in 0..30 {
        alice.publish("general", "chat", n).await.unwrap();
    }
    // The counters are sampled once a second: the next sample sees them.
    let rates = switchboard_tests::eventually("a rate of messages", || async {
        let (_, stats) = get(&server, "/api/stats").await;
        (stats["rates"]["messages_per_sec"].as_f64()? > 0.0).then_some(stats["rates"].clone())
    })
    .await;
    let window = rates["window_secs"].as_f64().unwrap();
    assert!(window > 0.0 && window <= 60.0, "{rates}");
    // Every message of the run falls inside the window: 30 over its length.
    let per_sec = rates["messages_per_sec"].as_f64().unwrap();
    assert!((per_sec * window - 30.0).abs() < 0.01, "{rates}");
    assert!(rates["connections_per_sec"].as_f64().unwrap() > 0.0, "{rates}");
    assert!(rates["deliveries_per_sec"].as_f64().unwrap() > 0.0, "{rates}");
}

/// One sample's value in an OpenMetrics exposition, by its full name and labels.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(server: &TestServer, key: Option<&str>) -> (u16, String, String) {
    let mut request = http().get(server.http("/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map_or(String::new(), |v| v.to_str().unwrap_or_default().to_owned());
    (status, kind, response.text().await.unwrap())
}

#[tokio::test]
async fn metrics_expose_the_hub_and_their_counters_move() {
    let mut config = switchboard_tests::test_config();
    config.api.key = Some("metrics-key".into());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_bind = free.local_addr().unwrap();
    drop(free);
    config.api.metrics_bind = Some(metrics_bind);
    let server = TestServer::start_with(config).await;
    let (status, _, _) = scrape(&server, None).await;
    assert_eq!(status, 401, "behind the admin key");
    // The separate metrics address answers without the key, and only that.
    let open = http().get(format!("http://{metrics_bind}/metrics")).send().await.unwrap();
    assert_eq!(open.status().as_u16(), 200);
    assert!(open.text().await.unwrap().contains("switchboard_connections"));
    let other = http().get(format!("http://{metrics_bind}/api/stats")).send().await.unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let (status, kind, before) = scrape(&server, Some("metrics-key")).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(before.trim_end().ends_with("# EOF"), "{before}");
    assert_eq!(sample(&before, "switchboard_messages_total"), Some(0.0), "{before}");
    assert!(before.contains("# TYPE switchboard_messages counter"), "{before}");

    let (alice, _a) = connect(&server, "alice").await;
    let (bob, _b) = connect(&server, "bob").await;
    alice.join("general").await.unwrap();
    bob.join("general").await.unwrap();
    alice.publish("general", "chat", 1).await.unwrap();
    alice.send("bob", "dm", 2).await.unwrap();
    // A refused upgrade, counted by its code.
    let refused = http().get(server.http("/ws?user_id=carol")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 426);
    bob.close().await;

    let after = switchboard_tests::eventually("bob's disconnect counted", || async {
        let (_, _, text) = scrape(&server, Some("metrics-key")).await;
        sample(&text, r#"switchboard_disconnects_total{how="close_1000"}"#)
            .or(sample(&text, r#"switchboard_disconnects_total{how="client_closed"}"#))
            .map(|_| text)
    })
    .await;
    assert_eq!(sample(&after, "switchboard_messages_total"), Some(2.0), "{after}");
    assert_eq!(sample(&after, "switchboard_connections_accepted_total"), Some(2.0));
    assert_eq!(sample(&after, "switchboard_connections"), Some(1.0));
    assert_eq!(sample(&after, "switchboard_rooms"), Some(1.0));
    assert!(sample(&after, "switchboard_deliveries_total").unwrap() >= 3.0, "{after}");
    assert_eq!(
        sample(&after, r#"switchboard_connections_refused_total{code="not_websocket"}"#),
        Some(1.0),
        "{after}"
    );
    assert!(sample(&after, "switchboard_uptime_seconds").is_some());
    // Frames by type in, by kind out with their bytes, request durations.
    assert_eq!(sample(&after, r#"switchboard_frames_in_total{type="publish"}"#), Some(1.0));
    assert_eq!(sample(&after, r#"switchboard_frames_in_total{type="join"}"#), Some(2.0));
    let out = sample(&after, r#"switchboard_frames_out_total{kind="message"}"#).unwrap();
    let bytes = sample(&after, r#"switchboard_sent_bytes_total{kind="message"}"#).unwrap();
    assert!(out >= 3.0 && bytes > out * 50.0, "{after}");
    assert!(sample(&after, r#"switchboard_frames_out_total{kind="presence"}"#).unwrap() >= 1.0);
    assert_eq!(
        sample(&after, r#"switchboard_request_duration_seconds_count{type="publish"}"#),
        Some(1.0),
        "{after}"
    );
    // The publish and the send were appended; the joins read their streams.
    assert_eq!(
        sample(&after, r#"switchboard_store_duration_seconds_count{op="append"}"#),
        Some(2.0),
        "{after}"
    );
    assert!(
        sample(&after, r#"switchboard_store_duration_seconds_count{op="read"}"#).unwrap() >= 2.0
    );
    assert_eq!(
        sample(&after, r#"switchboard_request_duration_seconds_bucket{le="+Inf",type="publish"}"#)
            .or(sample(
                &after,
                r#"switchboard_request_duration_seconds_bucket{type="publish",le="+Inf"}"#
            )),
        Some(1.0),
        "{after}"
    );
}

#[tokio::test]
async fn frames_refused_by_the_rate_limit_are_counted_in_metrics() {
    use switchboard_protocol::{ErrorCode, ServerFrame};
    use switchboard_tests::{raw_connect, raw_next, raw_send};

    let mut config = switchboard_tests::test_config();
    config.limits.messages_per_sec = 1;
    let server = TestServer::start_with(config).await;
    let (mut socket, _) = raw_connect(&server, "flooder").await;
    // A burst of twice the rate passes; the third frame is refused.
    for n in 0..3 {
        raw_send(&mut socket, &format!(r#"{{"type":"ping","id":"p{n}"}}"#)).await;
    }
    let refused = loop {
        match raw_next(&mut socket).await {
            ServerFrame::Error(error) => break error,
            _ => continue,
        }
    };
    assert_eq!(refused.code, ErrorCode::RATE_LIMITED);
    let (_, _, text) = scrape(&server, None).await;
    assert_eq!(sample(&text, "switchboard_rate_limited_frames_total"), Some(1.0), "{text}");
}

#[tokio::test]
async fn the_admin_page_is_served_from_the_binary_without_a_key_and_locked_down() {
    let mut config = switchboard_tests::test_config();
    config.api.key = Some("k".to_owned());
    let server = TestServer::start_with(config).await;
    let page = http().get(server.http("/admin")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="admin/admin.js">"#), "relative paths: {html}");
    for (path, kind) in [("/admin/admin.js", "text/javascript"), ("/admin/admin.css", "text/css")] {
        let asset = http().get(server.http(path)).send().await.unwrap();
        assert_eq!(asset.status(), 200, "{path}");
        assert!(asset.headers()["content-type"].to_str().unwrap().starts_with(kind));
    }
    let no_redirects =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let slash = no_redirects.get(server.http("/admin/")).send().await.unwrap();
    assert_eq!(
        (slash.status().as_u16(), slash.headers()["location"].to_str().unwrap()),
        (308, "../admin")
    );
    // The data behind it still needs the key.
    let (status, _) = get(&server, "/api/stats").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_openapi_document_describes_every_api_route_and_needs_no_key() {
    let mut config = switchboard_tests::test_config();
    config.api.key = Some("k".to_owned());
    let server = TestServer::start_with(config).await;
    let (status, document) = get(&server, "/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    let mut paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().unwrap().keys().map(move |method| format!("{method} {path}"))
        })
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "delete /api/rooms/{room}",
            "get /api/connections",
            "get /api/online",
            "get /api/rooms",
            "get /api/rooms/{room}",
            "get /api/rooms/{room}/history",
            "get /api/rooms/{room}/members",
            "get /api/stats",
            "get /health",
            "get /metrics",
            "patch /api/rooms/{room}",
            "post /api/broadcast",
            "post /api/connections/{session}/disconnect",
            "post /api/connections/{session}/send",
            "post /api/disconnect",
            "post /api/rooms",
            "post /api/rooms/{room}/join",
            "post /api/rooms/{room}/leave",
            "post /api/send",
        ]
    );
    // Every error answer is described, with the error body.
    let send = &document["paths"]["/api/send"]["post"]["responses"];
    for code in ["200", "400", "401", "422", "503"] {
        assert!(send.get(code).is_some(), "{code} of POST /api/send: {send}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["api_key"]["scheme"], "bearer",
        "{}",
        document["components"]
    );
    // Bodies are strict, as the handlers are.
    assert_eq!(document["components"]["schemas"]["SendRequest"]["additionalProperties"], false);
}
