//! Several hubs on one real Redis behave as one hub: fan-out, streams and
//! recovery, inboxes, request ids and presence across nodes, gaps in the
//! pub/sub repaired, a Redis outage ridden out. Each test starts its own
//! `redis-server` ([`TestRedis`]) and in-process hubs sharing it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_protocol::ServerFrame;
use switchboard_sdk::{Client, ReconnectPolicy};
use switchboard_tests::{
    Event, Events, HubProcess, RawSocket, TIMEOUT, TestRedis, TestServer, cluster_config, connect,
    eventually, fast_reconnect, get_json, http, post_json, raw_connect, raw_next, raw_send, record,
};

/// `n` hubs on `redis`.
async fn nodes(redis: &TestRedis, n: usize) -> Vec<TestServer> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(TestServer::start_with(cluster_config(redis)).await);
    }
    nodes
}

/// The next frame on a raw socket that is not a presence event (a member
/// hears its own join after the ack, through the cluster's channel).
async fn answer(socket: &mut RawSocket) -> ServerFrame {
    loop {
        match raw_next(socket).await {
            ServerFrame::Presence(_) => continue,
            frame => return frame,
        }
    }
}

/// The `data` of the next `n` messages.
async fn data_of(events: &mut Events, n: usize) -> Vec<Value> {
    let mut data = Vec::new();
    for _ in 0..n {
        data.push(events.next_message().await.data);
    }
    data
}

#[tokio::test]
async fn a_room_spans_every_node_in_one_order() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 3).await;
    let mut members = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let (client, events) = connect(node, &format!("user-{n}")).await;
        client.join("lobby").await.unwrap();
        members.push((client, events));
    }
    // Each node's member publishes in turn, awaiting its ack.
    for round in 0..5 {
        for (n, (client, _)) in members.iter().enumerate() {
            client.publish("lobby", "chat", json!(format!("{round}-{n}"))).await.unwrap();
        }
    }
    let mut seen = Vec::new();
    for (_, events) in &mut members {
        let mut messages = Vec::new();
        for _ in 0..15 {
            messages.push(events.next_message().await);
        }
        let offsets: Vec<u64> = messages.iter().map(|m| m.offset.unwrap()).collect();
        assert_eq!(offsets, (1..=15).collect::<Vec<_>>(), "one offset sequence, whoever published");
        seen.push(messages.into_iter().map(|m| m.data).collect::<Vec<_>>());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "every node delivers the same order");
    assert_eq!(seen[0][0], json!("0-0"));
    // History is the cluster's too, read from any node.
    let history = get_json(&nodes[2], "/api/rooms/lobby/history?since=10").await;
    let offsets: Vec<u64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!((history["offset"].clone(), offsets), (json!(15), vec![11, 12, 13, 14, 15]));
    let (client, _) = &members[1];
    let page = client.history("lobby", Some(13), None).await.unwrap();
    assert_eq!(page.messages.iter().map(|m| m.data.clone()).collect::<Vec<_>>(), seen[0][13..]);
}

#[tokio::test]
async fn private_messages_and_the_http_api_reach_every_node() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 3).await;
    // Bob holds a connection on two nodes; alice is on the third.
    let (_bob1, mut bob1) = connect(&nodes[0], "bob").await;
    let (_bob2, mut bob2) = connect(&nodes[1], "bob").await;
    let (alice, mut alice_events) = connect(&nodes[2], "alice").await;
    alice.join("news").await.unwrap();
    let delivered = alice.send("bob", "dm", json!("hi bob")).await.unwrap();
    assert_eq!(delivered, 2, "both of bob's connections, across nodes");
    for events in [&mut bob1, &mut bob2] {
        let message = events.next_message().await;
        assert_eq!((message.from.as_str(), message.data), ("alice", json!("hi bob")));
    }
    // The API of node 0 sends to alice (on node 2) and broadcasts to everyone.
    let sent =
        post_json(&nodes[0], "/api/send", json!({"to": "alice", "event": "note", "data": 1})).await;
    assert_eq!(sent["status"], "live");
    assert_eq!(alice_events.next_message().await.data, json!(1));
    let answer =
        post_json(&nodes[1], "/api/broadcast", json!({"event": "all", "data": "everyone"})).await;
    assert_eq!(answer["delivered"], 3, "every connection of the cluster");
    for events in [&mut bob1, &mut bob2, &mut alice_events] {
        assert_eq!(events.next_message().await.data, json!("everyone"));
    }
    post_json(
        &nodes[1],
        "/api/broadcast",
        json!({"event": "room", "data": "to news", "room": "news"}),
    )
    .await;
    assert_eq!(alice_events.next_message().await.data, json!("to news"));

    // Disconnecting bob on node 2 closes his connections on nodes 0 and 1.
    let answer =
        post_json(&nodes[2], "/api/disconnect", json!({"user": "bob", "reason": "bye"})).await;
    assert_eq!(answer["disconnected"], 2);
    for events in [&mut bob1, &mut bob2] {
        let Event::Disconnected(gone) =
            events.wait_for("the kick", |e| matches!(e, Event::Disconnected(_))).await
        else {
            unreachable!()
        };
        assert_eq!(gone.code, Some(switchboard_protocol::CloseCode::KICKED), "{gone:?}");
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 3).await;
    let (publisher, _p) = connect(&nodes[2], "publisher").await;
    publisher.join("feed").await.unwrap();
    let client = Client::builder(nodes[0].ws_url())
        .fallbacks([nodes[1].ws_url()])
        .user("reader")
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    client.connect().await.unwrap();
    client.join("feed").await.unwrap();
    for n in 0..5 {
        publisher.publish("feed", "tick", json!(n)).await.unwrap();
    }
    assert_eq!(data_of(&mut events, 5).await, (0..5).map(|n| json!(n)).collect::<Vec<_>>());

    // Its node goes away; messages keep coming while it moves to node 1.
    let mut nodes = nodes;
    nodes.remove(0).stop().await;
    for n in 5..20 {
        publisher.publish("feed", "tick", json!(n)).await.unwrap();
    }
    // The replay arrives before the rejoin's ack: keep what comes meanwhile.
    let mut data = Vec::new();
    let joined = loop {
        match events.next().await {
            Event::Message(message) => data.push(message.data),
            Event::Joined(joined) => break joined,
            _ => {}
        }
    };
    assert!(joined.rejoin, "{joined:?}");
    assert_eq!(joined.recovered, Some(true), "the stream is in Redis, not in the node that left");
    for n in 20..25 {
        publisher.publish("feed", "tick", json!(n)).await.unwrap();
    }
    let rest = 20 - data.len();
    data.extend(data_of(&mut events, rest).await);
    assert_eq!(data, (5..25).map(|n| json!(n)).collect::<Vec<_>>());
    assert!(events.drain().iter().all(|e| !matches!(e, Event::Message(_))), "nothing twice");
}

#[tokio::test]
async fn an_offline_users_inbox_waits_for_them_on_any_node() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (alice, _a) = connect(&nodes[0], "alice").await;
    for n in 0..3 {
        assert_eq!(alice.send("carol", "dm", json!(n)).await.unwrap(), 0, "carol is offline");
    }
    let (_carol, mut carol) = connect(&nodes[1], "carol").await;
    assert_eq!(data_of(&mut carol, 3).await, [json!(0), json!(1), json!(2)]);
    // Delivered once: a second connection, anywhere, gets nothing old.
    let (_again, mut again) = connect(&nodes[0], "carol").await;
    alice.send("carol", "dm", json!("new")).await.unwrap();
    assert_eq!(again.next_message().await.data, json!("new"));
    assert_eq!(carol.next_message().await.data, json!("new"));
}

#[tokio::test]
async fn a_request_id_repeated_on_another_node_is_answered_not_repeated() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (_watcher, mut watcher) = connect(&nodes[1], "watcher").await;
    _watcher.join("room").await.unwrap();
    let publish = r#"{"type":"publish","id":"p-1","room":"room","event":"e","data":"once"}"#;
    let join = r#"{"type":"join","id":"j","room":"room"}"#;
    let (mut first, _) = raw_connect(&nodes[0], "dave").await;
    raw_send(&mut first, join).await;
    answer(&mut first).await;
    raw_send(&mut first, publish).await;
    let ack1 = answer(&mut first).await;
    let (mut second, _) = raw_connect(&nodes[1], "dave").await;
    raw_send(&mut second, join).await;
    answer(&mut second).await;
    raw_send(&mut second, publish).await;
    let ack2 = answer(&mut second).await;
    let (json1, json2) =
        (serde_json::to_value(&ack1).unwrap(), serde_json::to_value(&ack2).unwrap());
    assert_eq!(json1["type"], "ack");
    assert_eq!(json1, json2, "the same answer, offset included");
    assert_eq!(watcher.next_message().await.data, json!("once"));
    _watcher.publish("room", "e", json!("after")).await.unwrap();
    assert_eq!(watcher.next_message().await.data, json!("after"), "the repeat was not published");
}

#[tokio::test]
async fn presence_and_the_admin_figures_cover_the_cluster() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 3).await;
    let (alice, mut alice_events) = connect(&nodes[0], "alice").await;
    alice.join("hall").await.unwrap();
    let (bob, _b) = connect(&nodes[1], "bob").await;
    let members = bob.join("hall").await.unwrap();
    assert_eq!(members, ["alice", "bob"], "the join ack lists members of every node");
    let joined = alice_events
        .wait_for("bob's join", |e| matches!(e, Event::Presence(p) if p.user == "bob"))
        .await;
    assert!(matches!(joined, Event::Presence(p) if p.room == "hall"));
    // A second connection of bob elsewhere announces nothing.
    let (bob_again, _b2) = connect(&nodes[2], "bob").await;
    bob_again.join("hall").await.unwrap();

    let online = get_json(&nodes[2], "/api/online").await;
    assert_eq!(online["users"], json!(["alice", "bob"]));
    let rooms = get_json(&nodes[2], "/api/rooms").await;
    assert_eq!(rooms["rooms"][0]["id"], "hall");
    assert_eq!(
        (rooms["rooms"][0]["members"].clone(), rooms["rooms"][0]["connections"].clone()),
        (json!(2), json!(3))
    );
    let page = get_json(&nodes[2], "/api/rooms/hall/members?limit=1").await;
    assert_eq!(
        (page["members"].clone(), page["cursor"].clone()),
        (json!(["alice"]), json!("alice"))
    );
    assert_eq!(alice.members("hall").await.unwrap(), ["alice", "bob"]);

    // Bob leaves on one node: still there through the other.
    bob.leave("hall").await.unwrap();
    bob_again.publish("hall", "still", json!("here")).await.unwrap();
    let next = alice_events
        .wait_for("bob's message or presence", |e| {
            matches!(e, Event::Message(_) | Event::Presence(_))
        })
        .await;
    assert!(matches!(next, Event::Message(_)), "no leave while bob is still in: {next:?}");
    bob_again.close().await;
    let left = alice_events.next_presence().await;
    assert_eq!((left.user.as_str(), format!("{:?}", left.action)), ("bob", "Leave".to_owned()));
    let page = get_json(&nodes[0], "/api/rooms/hall/members").await;
    assert_eq!(page["members"], json!(["alice"]));
    assert_eq!(get_json(&nodes[0], "/api/online").await["users"], json!(["alice", "bob"]));
    bob.close().await;
    eventually("bob offline everywhere", || async {
        let online = get_json(&nodes[0], "/api/online").await;
        (online["users"] == json!(["alice"])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_lost_subscription_is_repaired_so_nothing_goes_missing() {
    let redis = TestRedis::start().await;
    let mut config = cluster_config(&redis);
    config.limits.messages_per_sec = 100_000; // the writer publishes as fast as acks come
    let nodes =
        [TestServer::start_with(config.clone()).await, TestServer::start_with(config).await];
    let (reader, mut events) = connect(&nodes[0], "reader").await;
    reader.join("stream").await.unwrap();
    let (writer, _w) = connect(&nodes[1], "writer").await;
    writer.join("stream").await.unwrap();
    let total = 300;
    for n in 0..total {
        if n == 100 || n == 200 {
            // Every node's pub/sub connection is cut: what is published
            // until they are back never reaches them through pub/sub.
            let killed = redis.cut_subscriptions();
            assert!(killed >= 1, "killed {killed}");
        }
        writer.publish("stream", "n", json!(n)).await.unwrap();
    }
    let mut data = Vec::new();
    while data.len() < total {
        match events.next().await {
            Event::Message(message) => data.push(message.data),
            Event::Error(error) => panic!("unexpected {error:?}"),
            _ => {}
        }
    }
    assert_eq!(
        data,
        (0..total).map(|n| json!(n)).collect::<Vec<_>>(),
        "every message once, in order"
    );

    // The last message before a lost subscription, with nothing after it
    // to reveal the gap: the node reads it when it subscribes again.
    append_unpublished(&redis, "stream", "last");
    redis.cut_subscriptions();
    assert_eq!(events.next_message().await.data, json!("last"));
    let metrics = http().get(nodes[0].http("/metrics")).send().await.unwrap().text().await.unwrap();
    let figure = |name: &str| -> u64 {
        let line =
            metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(figure("switchboard_redis_resubscribes_total") >= 3, "{metrics}");
    // On a Redis Cluster the hubs' subscriptions ride on their command
    // connections, which come back at once: a cut mid-stream may lose
    // nothing. The last message, which nothing else reveals, is always a
    // gap.
    let gaps = if redis.is_cluster() { 1 } else { 3 };
    assert!(figure("switchboard_stream_gaps_total{outcome=\"repaired\"}") >= gaps, "{metrics}");
    assert_eq!(figure("switchboard_redis_up"), 1);
}

#[tokio::test]
async fn a_redis_outage_fails_requests_fast_and_heals_by_itself() {
    let mut redis = TestRedis::start().await;
    let mut config = cluster_config(&redis);
    config.redis.timeout_ms = 300;
    let node = TestServer::start_with(config).await;
    let (mut socket, _) = raw_connect(&node, "ann").await;
    raw_send(&mut socket, r#"{"type":"join","id":"j","room":"r"}"#).await;
    answer(&mut socket).await;
    let health = get_json(&node, "/health").await;
    assert_eq!(
        (health["status"].clone(), health["redis"]["status"].clone()),
        (json!("ok"), json!("up"))
    );

    redis.kill();
    let started = Instant::now();
    raw_send(&mut socket, r#"{"type":"publish","id":"x1","room":"r","event":"e","data":1}"#).await;
    let answer = serde_json::to_value(answer(&mut socket).await).unwrap();
    assert_eq!(
        (answer["type"].clone(), answer["code"].clone()),
        (json!("error"), json!(301)),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "failed fast: {:?}", started.elapsed());
    let health = get_json(&node, "/health").await;
    assert_eq!(
        (health["status"].clone(), health["redis"]["status"].clone()),
        (json!("degraded"), json!("down"))
    );
    let metrics = http().get(node.http("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_redis_up 0"), "{metrics}");
    assert!(
        metrics.contains("switchboard_redis_errors_total{operation=\"publish\"} 1"),
        "{metrics}"
    );
    let api = http()
        .post(node.http("/api/send"))
        .json(&json!({"to": "ann", "event": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 503);

    redis.restart().await;
    eventually("the hub sees redis again", || async {
        let health = get_json(&node, "/health").await;
        (health["redis"]["status"] == "up").then_some(())
    })
    .await;
    let (client, mut events) = connect(&node, "bea").await;
    client.join("r").await.unwrap();
    // The subscription comes back on its own schedule (backoff): publish
    // until one round trip through Redis reaches the member.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        client.publish("r", "e", json!("back")).await.unwrap();
        if let Ok(Event::Message(message)) =
            tokio::time::timeout(Duration::from_millis(300), events.next()).await
        {
            assert_eq!(message.data, json!("back"));
            break;
        }
        assert!(Instant::now() < deadline, "publishes reach members again");
    }
    // Redis came back empty: the node wrote its presence again, ann's
    // connection (open all along) included.
    eventually("ann online again", || async {
        let online = get_json(&node, "/api/online").await;
        (online["users"] == json!(["ann", "bea"])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_nodes_clients_resume_on_the_survivors_and_lose_nothing() {
    let redis = TestRedis::start().await;
    let vars = [
        ("SWITCHBOARD_REDIS__NODE_TTL_MS", "1500"),
        ("SWITCHBOARD_LIMITS__MESSAGES_PER_SEC", "100000"),
    ];
    let mut hubs = Vec::new();
    for _ in 0..3 {
        hubs.push(HubProcess::start_on_redis(&redis, &vars).await);
    }
    let urls: Vec<String> = hubs.iter().map(HubProcess::ws_url).collect();
    // A reader per node, each told of the other nodes.
    let mut readers = Vec::new();
    for n in 0..3 {
        let others: Vec<String> = (1..3).map(|k| urls[(n + k) % 3].clone()).collect();
        let client = Client::builder(urls[n].clone())
            .fallbacks(others)
            .user(format!("reader-{n}"))
            .reconnect(fast_reconnect())
            .build()
            .unwrap();
        let events = record(&client);
        client.connect().await.unwrap();
        client.join("ticker").await.unwrap();
        readers.push((client, events));
    }
    // A user present only through node 0, who will not come back.
    let lonely = Client::builder(urls[0].clone())
        .user("lonely")
        .reconnect(ReconnectPolicy { enabled: false, ..fast_reconnect() })
        .build()
        .unwrap();
    lonely.connect().await.unwrap();
    lonely.join("ticker").await.unwrap();
    let (publisher, _p) = {
        let client = Client::builder(urls[1].clone()).user("publisher").build().unwrap();
        let events = record(&client);
        client.connect().await.unwrap();
        client.join("ticker").await.unwrap();
        (client, events)
    };

    let total = 300;
    for n in 0..total {
        if n == 100 {
            hubs[0].kill(); // SIGKILL: no close frames, no goodbye to Redis
        }
        publisher.publish("ticker", "tick", json!(n)).await.unwrap();
    }
    let expected: Vec<Value> = (0..total).map(|n| json!(n)).collect();
    let mut leaves = Vec::new();
    for (n, (_, events)) in readers.iter_mut().enumerate() {
        let mut data = Vec::new();
        while data.len() < total {
            match events.next().await {
                Event::Message(message) => data.push(message.data),
                Event::Presence(p) if format!("{:?}", p.action) == "Leave" => leaves.push(p.user),
                _ => {}
            }
        }
        assert_eq!(data, expected, "reader-{n}: every message once, in order");
    }
    // The dead node's presence goes by itself: its lonely user leaves,
    // readers that moved to a survivor do not.
    let started = Instant::now();
    let http_client = http();
    eventually("the dead node's user leaves /api/online", || async {
        let online: Value =
            http_client.get(hubs[1].http("/api/online")).send().await.ok()?.json().await.ok()?;
        let users = online["users"].as_array()?.clone();
        (!users.contains(&json!("lonely"))).then_some(users)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5), "within the node TTL and a heartbeat");
    let (_, watcher) = &mut readers[2];
    if !leaves.contains(&"lonely".to_owned()) {
        let leave = watcher
            .wait_for("lonely's leave", |e| matches!(e, Event::Presence(p) if p.user == "lonely"))
            .await;
        assert!(matches!(leave, Event::Presence(p) if format!("{:?}", p.action) == "Leave"));
    }
    assert!(
        !leaves.iter().any(|user| user.starts_with("reader-")),
        "no reader left: they moved, they did not go: {leaves:?}"
    );
    let stats: Value =
        http_client.get(hubs[2].http("/api/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["cluster"]["nodes"], 2, "{stats}");
    drop(lonely);
}

/// Appends a message to a room's stream in Redis the way the publish
/// script does, but without publishing it: as if its pub/sub message had
/// been lost on the way to every node. Returns its offset.
fn append_unpublished(redis: &TestRedis, room: &str, data: &str) -> u64 {
    let meta = format!("switchboard:{{r:{room}}}:m");
    let offset: u64 = redis.cli(&["HINCRBY", &meta, "last", "1"]).trim().parse().unwrap();
    let frame = json!({
        "type": "message", "room": room, "from": "ghost", "event": "e",
        "data": data, "ts": 1, "offset": offset,
    })
    .to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let ts = now.as_millis().to_string();
    let id = format!("{offset}-0");
    redis.cli(&["XADD", &format!("switchboard:{{r:{room}}}:x"), &id, "ts", &ts, "f", &frame]);
    offset
}

#[tokio::test]
async fn an_offset_that_jumps_is_preceded_by_the_missing_messages() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (reader, mut events) = connect(&nodes[0], "reader").await;
    reader.join("jump").await.unwrap();
    let (writer, _w) = connect(&nodes[1], "writer").await;
    writer.join("jump").await.unwrap();
    writer.publish("jump", "e", json!("first")).await.unwrap();
    assert_eq!(append_unpublished(&redis, "jump", "lost"), 2);
    assert_eq!(append_unpublished(&redis, "jump", "lost too"), 3);
    writer.publish("jump", "e", json!("fourth")).await.unwrap();
    let messages: Vec<(Value, u64)> = {
        let mut messages = Vec::new();
        for _ in 0..4 {
            let message = events.next_message().await;
            messages.push((message.data, message.offset.unwrap()));
        }
        messages
    };
    assert_eq!(
        messages,
        [(json!("first"), 1), (json!("lost"), 2), (json!("lost too"), 3), (json!("fourth"), 4)]
    );
}

#[tokio::test]
async fn a_gap_the_history_no_longer_holds_makes_its_followers_resume() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (reader, mut events) = connect(&nodes[0], "reader").await;
    reader.join("holes").await.unwrap();
    let (writer, _w) = connect(&nodes[1], "writer").await;
    writer.join("holes").await.unwrap();
    writer.publish("holes", "e", json!("first")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("first"));
    // Lost on the way, and gone from the history too.
    let lost = append_unpublished(&redis, "holes", "lost");
    redis.cli(&["XDEL", "switchboard:{r:holes}:x", &format!("{lost}-0")]);
    writer.publish("holes", "e", json!("third")).await.unwrap();
    let Event::Disconnected(gone) =
        events.wait_for("the resume order", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert_eq!(gone.code, Some(switchboard_protocol::CloseCode::RESUME), "{gone:?}");
    assert!(gone.will_reconnect);
    let joined = loop {
        match events.next().await {
            Event::Joined(joined) => break joined,
            Event::Message(message) => assert_ne!(message.data, json!("lost")),
            _ => {}
        }
    };
    assert_eq!(joined.recovered, Some(false), "told, not silently short of a message");
    writer.publish("holes", "e", json!("after")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("after"));
}

#[tokio::test]
async fn sse_feeds_hear_the_whole_cluster() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let mut feed =
        switchboard_tests::SseReader::open(&nodes[0], "user_id=reader&rooms=news", None).await;
    let (speaker, _s) = connect(&nodes[1], "speaker").await;
    speaker.join("news").await.unwrap();
    speaker.publish("news", "n", json!(1)).await.unwrap();
    speaker.send("reader", "dm", json!("private")).await.unwrap();
    assert_eq!(feed.next_message().await.0, json!(1));
    assert_eq!(feed.next_message().await.0, json!("private"));
    let online = get_json(&nodes[1], "/api/online").await;
    assert_eq!(online["users"], json!(["reader", "speaker"]), "the feed counts as online");
}

#[tokio::test]
async fn a_large_rooms_count_is_the_clusters() {
    let redis = TestRedis::start().await;
    let mut config = cluster_config(&redis);
    config.rooms.large_room = 2;
    config.rooms.occupancy_interval_ms = 50;
    let nodes =
        [TestServer::start_with(config.clone()).await, TestServer::start_with(config).await];
    let (alice, mut alice_events) = connect(&nodes[0], "alice").await;
    alice.join("arena").await.unwrap();
    let mut others = Vec::new();
    for n in 0..3 {
        // All on the other node: alice's node alone never sees a large room.
        let (client, events) = connect(&nodes[1], &format!("fan-{n}")).await;
        client.join("arena").await.unwrap();
        others.push((client, events));
    }
    let count = alice_events
        .wait_for("a count of 4", |e| matches!(e, Event::Occupancy(o) if o.count == 4))
        .await;
    assert!(matches!(count, Event::Occupancy(o) if o.room == "arena"));
    let (first, _) = others.remove(0);
    first.close().await;
    alice_events
        .wait_for("a count of 3", |e| matches!(e, Event::Occupancy(o) if o.count == 3))
        .await;
}

#[tokio::test]
async fn deployments_with_their_own_prefix_share_a_redis_without_meeting() {
    let redis = TestRedis::start().await;
    let mut one = cluster_config(&redis);
    one.redis.prefix = "one".to_owned();
    let mut two = one.clone();
    two.redis.prefix = "two".to_owned();
    let (a, b) = (TestServer::start_with(one).await, TestServer::start_with(two).await);
    let (ann, mut ann_events) = connect(&a, "ann").await;
    ann.join("lobby").await.unwrap();
    let (bob, mut bob_events) = connect(&b, "bob").await;
    bob.join("lobby").await.unwrap();
    ann.publish("lobby", "e", json!("for one")).await.unwrap();
    bob.publish("lobby", "e", json!("for two")).await.unwrap();
    assert_eq!(ann_events.next_message().await.data, json!("for one"));
    assert_eq!(bob_events.next_message().await.data, json!("for two"));
    assert_eq!(get_json(&a, "/api/online").await["users"], json!(["ann"]));
    assert_eq!(get_json(&b, "/api/online").await["users"], json!(["bob"]));
    let keys = redis.cli_all(&["KEYS", "*"]);
    assert!(
        keys.lines()
            .filter(|key| !key.is_empty())
            .all(|key| key.starts_with("one:") || key.starts_with("two:")),
        "every key under a prefix: {keys}"
    );
}

#[tokio::test]
async fn a_retry_after_an_answer_lost_on_the_way_is_not_appended_twice() {
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (watcher, mut watched) = connect(&nodes[1], "watcher").await;
    watcher.join("room").await.unwrap();
    let (mut first, _) = raw_connect(&nodes[0], "dave").await;
    raw_send(&mut first, r#"{"type":"join","id":"j","room":"room"}"#).await;
    answer(&mut first).await;
    let publish = r#"{"type":"publish","id":"p-7","room":"room","event":"e","data":"once"}"#;
    raw_send(&mut first, publish).await;
    let acked = serde_json::to_value(answer(&mut first).await).unwrap();
    assert_eq!(acked["offset"], 1);
    assert_eq!(watched.next_message().await.data, json!("once"));
    // As if the answer had never reached the node (a timeout after Redis
    // did the work): the client retries on another node. Redis holds the
    // script's record of the id, as it does after the first publish.
    let (mut retry, _) = raw_connect(&nodes[1], "dave").await;
    raw_send(&mut retry, r#"{"type":"join","id":"j","room":"room"}"#).await;
    answer(&mut retry).await;
    raw_send(&mut retry, publish).await;
    let again = serde_json::to_value(answer(&mut retry).await).unwrap();
    assert_eq!((again["type"].clone(), again["offset"].clone()), (json!("ack"), json!(1)));
    watcher.publish("room", "e", json!("next")).await.unwrap();
    let next = watched.next_message().await;
    assert_eq!((next.data, next.offset), (json!("next"), Some(2)), "nothing appended twice");
}

#[tokio::test]
async fn a_burst_sent_without_waiting_keeps_its_order_on_every_node() {
    // The publishing node commits what arrives together in one pipeline
    // and the nodes hand what arrives from Redis over in batches (with a
    // coalescing window): neither may reorder or drop anything, not even
    // when Redis has just lost its scripts.
    let redis = TestRedis::start().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = cluster_config(&redis);
        config.redis.coalesce_us = 2_000;
        config.limits.messages_per_sec = 10_000;
        nodes.push(TestServer::start_with(config).await);
    }
    let mut members = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let (client, events) = connect(node, &format!("member-{n}")).await;
        client.join("burst").await.unwrap();
        members.push((client, events));
    }
    let (mut publisher, _) = raw_connect(&nodes[0], "publisher").await;
    raw_send(&mut publisher, r#"{"type":"join","id":"j","room":"burst"}"#).await;
    assert!(matches!(answer(&mut publisher).await, ServerFrame::Ack(_)));
    // Redis forgets its scripts (as after a restart): a burst must not
    // find the publish script missing for some calls and not others.
    redis.cli_all(&["SCRIPT", "FLUSH"]);
    const BURST: u64 = 300;
    for n in 0..BURST {
        let frame = format!(
            r#"{{"type":"publish","id":"{n}","room":"burst","event":"e","data":{n},"exclude_self":true}}"#
        );
        raw_send(&mut publisher, &frame).await;
    }
    let mut acked = Vec::new();
    while acked.len() < BURST as usize {
        match answer(&mut publisher).await {
            ServerFrame::Ack(ack) => acked.push((ack.id, ack.offset.unwrap())),
            ServerFrame::Error(error) => panic!("refused: {error:?}"),
            _ => {}
        }
    }
    let expected: Vec<(String, u64)> = (0..BURST).map(|n| (n.to_string(), n + 1)).collect();
    assert_eq!(acked, expected, "answered in order, offsets in the order sent");
    for (_, events) in &mut members {
        let data = data_of(events, BURST as usize).await;
        assert_eq!(data, (0..BURST).map(|n| json!(n)).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn bytes_cross_nodes_raw_to_binary_clients_and_come_back_from_the_clusters_history() {
    use switchboard_protocol::binary::split_envelope;
    let redis = TestRedis::start().await;
    let nodes = nodes(&redis, 2).await;
    let (writer, _) = connect(&nodes[0], "writer").await;
    writer.join("files").await.unwrap();
    // A raw client on the other node that speaks binary.
    let url = format!("{}?user_id=reader&binary=1", nodes[1].ws_url());
    let (mut reader, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(matches!(raw_next(&mut reader).await, ServerFrame::Welcome(_)));
    raw_send(&mut reader, r#"{"type":"join","id":"j","room":"files"}"#).await;
    let epoch = loop {
        if let ServerFrame::Ack(ack) = answer(&mut reader).await {
            break ack.epoch.unwrap();
        }
    };
    let bytes: Vec<u8> = (0..=255).collect();
    writer.publish_bytes("files", "blob", bytes.clone()).await.unwrap();
    let binary = loop {
        match switchboard_tests::raw_next_message(&mut reader).await {
            tokio_tungstenite::tungstenite::Message::Binary(binary) => break binary,
            _ => continue,
        }
    };
    let (header, payload) = split_envelope(&binary).unwrap();
    assert_eq!(payload, &bytes[..]);
    assert!(header.contains(r#""offset":1"#), "{header}");
    // A client of the second node reads the bytes the first one stored
    // from the cluster's history.
    let (late, mut events) = connect(&nodes[1], "late").await;
    late.join("files").await.unwrap();
    let page = late.history("files", Some(0), None).await.unwrap();
    assert_eq!(page.epoch.as_deref(), Some(epoch.as_str()));
    assert_eq!(page.messages[0].binary.as_deref(), Some(&bytes[..]));
    writer.publish_bytes("files", "blob", vec![7u8]).await.unwrap();
    assert_eq!(events.next_message().await.binary, Some(vec![7]));
}
