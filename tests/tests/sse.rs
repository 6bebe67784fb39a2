//! `GET /sse` with a real HTTP client: events carry ids, and reconnecting
//! with `Last-Event-ID` replays exactly what was missed, then goes live.

use serde_json::{Value, json};
use switchboard_tests::{SseReader, TestServer, connect, http};

#[tokio::test]
async fn last_event_id_replays_exactly_what_was_missed_then_goes_live() {
    let server = TestServer::start().await;
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("news").await.unwrap();

    let mut feed = SseReader::open(&server, "user_id=reader&rooms=news,other", None).await;
    speaker.publish("news", "n", 1).await.unwrap();
    speaker.send("reader", "dm", "one").await.unwrap();
    let (first, _) = feed.next_message().await;
    let (second, last_id) = feed.next_message().await;
    assert_eq!((first, second), (json!(1), json!("one")));
    drop(feed);

    // While the reader is away: two room messages and a private one.
    speaker.publish("news", "n", 2).await.unwrap();
    speaker.send("reader", "dm", "two").await.unwrap();
    speaker.publish("news", "n", 3).await.unwrap();

    let mut feed =
        SseReader::open(&server, "user_id=reader&rooms=news,other", Some(&last_id)).await;
    let resumed = feed.next().await;
    assert_eq!(resumed.event.as_deref(), Some("resumed"));
    let report: Value = serde_json::from_str(&resumed.data).unwrap();
    assert_eq!(report, json!({"inbox": true, "rooms": {"news": true, "other": true}}));
    // Exactly the three missed, inbox first, then the rooms in query order.
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(feed.next_message().await.0);
    }
    assert_eq!(missed, vec![json!("two"), json!(2), json!(3)]);

    // Then live, with nothing repeated before it.
    speaker.publish("news", "n", 4).await.unwrap();
    assert_eq!(feed.next_message().await.0, json!(4));
}

#[tokio::test]
async fn sse_refuses_bad_requests_with_json_errors() {
    let server = TestServer::start().await;
    let response = http().get(server.http("/sse?rooms=news")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_identity");
    let long = "x".repeat(200);
    let response =
        http().get(server.http(&format!("/sse?user_id=a&rooms={long}"))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 422);
}

#[tokio::test]
async fn a_large_room_reaches_sse_clients_as_occupancy_events() {
    let mut config = switchboard_tests::test_config();
    config.rooms.large_room = 2;
    config.rooms.occupancy_interval_ms = 50;
    let server = TestServer::start_with(config).await;
    let mut sse = SseReader::open(&server, "user_id=watcher&rooms=stadium", None).await;
    let mut fans = Vec::new();
    for fan in ["fan-1", "fan-2"] {
        let (client, _) = connect(&server, fan).await;
        client.join("stadium").await.unwrap();
        fans.push(client);
    }
    // watcher and fan-1 are named; fan-2 makes three users: a count.
    let mut named = Vec::new();
    loop {
        let event = sse.next().await;
        let frame: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
        match event.event.as_deref() {
            Some("presence") => named.push(frame["user"].as_str().unwrap().to_owned()),
            Some("occupancy") => {
                assert_eq!(frame, json!({"type": "occupancy", "room": "stadium", "count": 3}));
                break;
            }
            _ => {}
        }
    }
    assert!(!named.contains(&"fan-2".to_owned()), "past the threshold nobody is named: {named:?}");
}

#[tokio::test]
async fn a_connect_webhook_that_cannot_answer_turns_a_feed_away_with_503_not_a_refusal() {
    // A backend that is down is not the application saying no: 503
    // `hook_failed`, which an EventSource retries, rather than 403 `refused`.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks/connect", listener.local_addr().unwrap())
    };
    let mut config = switchboard_tests::test_config();
    config.hooks.connect = Some(switchboard_server::config::WebhookConfig {
        url: dead,
        timeout_ms: 300,
        ..Default::default()
    });
    let server = TestServer::start_with(config).await;
    let response = http().get(server.http("/sse?user_id=ann&rooms=news")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "hook_failed", "{body}");
}

#[tokio::test]
async fn a_feed_of_a_hundred_long_named_rooms_resumes_with_an_id_that_fits_any_proxy() {
    let server = TestServer::start().await;
    let (speaker, _) = connect(&server, "speaker").await;
    let rooms: Vec<String> = (0..100).map(|n| format!("{n:02}-{}", "r".repeat(60))).collect();
    let (first, last) = (&rooms[0], &rooms[99]);
    speaker.join(first).await.unwrap();
    speaker.join(last).await.unwrap();
    let query = format!("user_id=reader&rooms={}", rooms.join(","));
    let mut feed = SseReader::open(&server, &query, None).await;
    speaker.publish(first, "n", 1).await.unwrap();
    speaker.publish(last, "n", 2).await.unwrap();
    feed.next_message().await;
    let (_, id) = feed.next_message().await;
    // nginx's default buffer for a request header line is 8 KB; positions
    // by room name took over 10 KB here.
    assert!(id.len() < 1_024, "a {}-byte Last-Event-ID: {id}", id.len());
    drop(feed);

    speaker.publish(last, "n", 3).await.unwrap();
    speaker.publish(first, "n", 4).await.unwrap();
    let mut feed = SseReader::open(&server, &query, Some(&id)).await;
    let resumed = feed.next().await;
    assert_eq!(resumed.event.as_deref(), Some("resumed"));
    let report: Value = serde_json::from_str(&resumed.data).unwrap();
    assert_eq!(report["inbox"], json!(true));
    let rooms_report = report["rooms"].as_object().unwrap();
    assert_eq!(rooms_report.len(), 100);
    assert!(rooms_report.values().all(|recovered| *recovered == json!(true)), "{report}");
    // Exactly the two missed (rooms in query order), then live.
    assert_eq!(feed.next_message().await.0, json!(4));
    assert_eq!(feed.next_message().await.0, json!(3));
    speaker.publish(first, "n", 5).await.unwrap();
    assert_eq!(feed.next_message().await.0, json!(5));
}

#[tokio::test]
async fn a_feed_follows_at_most_a_thousand_rooms_whatever_the_configuration() {
    let mut config = switchboard_tests::test_config();
    config.limits.max_rooms_per_connection = 5_000;
    let server = TestServer::start_with(config).await;
    let rooms = |count: usize| (0..count).map(|n| format!("r{n}")).collect::<Vec<_>>().join(",");
    let response = http()
        .get(server.http(&format!("/sse?user_id=a&rooms={}", rooms(1_001))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("1000"), "{body}");
    let mut feed =
        SseReader::open(&server, &format!("user_id=a&rooms={}", rooms(1_000)), None).await;
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("r999").await.unwrap();
    speaker.publish("r999", "n", 1).await.unwrap();
    let (data, id) = feed.next_message().await;
    assert_eq!(data, json!(1));
    assert!(id.len() < 8 * 1_024, "a {}-byte id for 1,000 rooms", id.len());
}
