//! What each Redis layout adds beyond one Redis: with `redis.shards`,
//! rooms and users spread over independent servers, each one's keys on
//! one server; on a Redis Cluster, a node subscribes only to the slots of
//! the streams it follows. (The multi-node tests of `cluster.rs` run on
//! each layout too: `./scripts/test.sh`.)

use std::collections::HashSet;

use futures::SinkExt;
use serde_json::{Value, json};
use switchboard_protocol::ServerFrame;
use switchboard_tests::{
    TestRedis, TestServer, cluster_config, connect, eventually, get_json, http, raw_connect,
    raw_next, raw_send,
};

/// Which of `redis`'s servers hold a key of `tag`.
fn holders(redis: &TestRedis, urls: usize, tag: &str) -> Vec<usize> {
    (0..urls)
        .filter(|&shard| {
            let keys = redis.cli_on(shard, &["KEYS", &format!("switchboard:{{{tag}}}:*")]);
            keys.lines().any(|key| !key.trim().is_empty())
        })
        .collect()
}

#[tokio::test]
async fn shards_spread_rooms_and_users_and_keep_each_ones_keys_together() {
    let redis = TestRedis::start_shards(2).await;
    let (a, b) = (
        TestServer::start_with(cluster_config(&redis)).await,
        TestServer::start_with(cluster_config(&redis)).await,
    );
    let (ann, _ann_events) = connect(&a, "ann").await;
    let (bob, mut bob_events) = connect(&b, "bob").await;
    let rooms: Vec<String> = (0..16).map(|n| format!("room-{n}")).collect();
    for room in &rooms {
        ann.join(room).await.unwrap();
        bob.join(room).await.unwrap();
    }
    for room in &rooms {
        ann.publish(room, "e", json!(room)).await.unwrap();
    }
    // Every room's messages cross the nodes, whichever shard holds it.
    let mut heard = HashSet::new();
    while heard.len() < rooms.len() {
        let message = bob_events.next_message().await;
        heard.insert(message.data.as_str().unwrap().to_owned());
    }
    let mut used = HashSet::new();
    for room in &rooms {
        // A room's stream, presence and history live on one server.
        let holders = holders(&redis, 2, &format!("r:{room}"));
        assert_eq!(holders.len(), 1, "{room} on {holders:?}");
        used.insert(holders[0]);
    }
    assert_eq!(used.len(), 2, "16 rooms over two shards use both");
    for user in ["ann", "bob"] {
        assert_eq!(holders(&redis, 2, &format!("u:{user}")).len(), 1, "{user}");
    }
    // The registry is on the first shard.
    assert_eq!(holders(&redis, 2, "home"), vec![0]);
    let stats = get_json(&a, "/api/stats").await;
    assert_eq!(
        (stats["cluster"]["users"].clone(), stats["cluster"]["rooms"].clone()),
        (json!(2), json!(16)),
        "{stats}"
    );
}

/// A node's `switchboard_redis_cluster_slots_listened`.
async fn slots_listened(node: &TestServer) -> u64 {
    let metrics = http().get(node.http("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = metrics
        .lines()
        .find(|line| line.starts_with("switchboard_redis_cluster_slots_listened "))
        .unwrap_or_else(|| panic!("no slots gauge: {metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn on_a_redis_cluster_a_node_listens_only_to_the_slots_it_follows() {
    let redis = TestRedis::start_cluster().await;
    let slot = |tag: &str| -> u64 {
        redis.cli(&["CLUSTER", "KEYSLOT", &format!("{{{tag}}}")]).trim().parse().unwrap()
    };
    let (a, b) = (
        TestServer::start_with(cluster_config(&redis)).await,
        TestServer::start_with(cluster_config(&redis)).await,
    );
    let (ann, _ann_events) = connect(&a, "ann").await;
    let (bob, mut bob_events) = connect(&b, "bob").await;
    ann.join("north").await.unwrap();
    bob.join("south").await.unwrap();
    let expected = |tags: &[&str]| tags.iter().map(|tag| slot(tag)).collect::<HashSet<_>>();
    let (on_a, on_b) =
        (expected(&["home", "u:ann", "r:north"]), expected(&["home", "u:bob", "r:south"]));
    assert!(!on_b.contains(&slot("r:north")), "the test's names share a slot: pick others");
    eventually("each node listening to its own slots", || async {
        let listened = (slots_listened(&a).await, slots_listened(&b).await);
        (listened == (on_a.len() as u64, on_b.len() as u64)).then_some(())
    })
    .await;
    // A message to a room of the other node still crosses: bob joins it
    // there, and his node subscribes to its slot first.
    bob.join("north").await.unwrap();
    assert_eq!(slots_listened(&b).await, on_b.len() as u64 + 1);
    ann.publish("north", "e", json!("crossed")).await.unwrap();
    assert_eq!(bob_events.next_message().await.data, json!("crossed"));
}

#[tokio::test]
async fn a_shard_that_restarts_empty_gets_the_nodes_presence_back() {
    let mut redis = TestRedis::start_shards(2).await;
    let node = TestServer::start_with(cluster_config(&redis)).await;
    // A user and a room that live on the second shard, not the registry's.
    let user = (0..).map(|n| format!("user-{n}")).find(|user| {
        switchboard_server::redis_shard_of(&format!("switchboard:{{u:{user}}}:n"), 2) == 1
    });
    let user = user.unwrap();
    let (client, _events) = connect(&node, &user).await;
    let room = (0..).map(|n| format!("room-{n}")).find(|room| {
        switchboard_server::redis_shard_of(&format!("switchboard:{{r:{room}}}:z"), 2) == 1
    });
    let room = room.unwrap();
    client.join(&room).await.unwrap();
    redis.restart_one(1).await;
    assert_eq!(redis.cli(&["ZCARD", &format!("switchboard:{{r:{room}}}:z")]).trim(), "0");
    // The node hears its subscription to that shard drop and writes its
    // presence again at its next heartbeat.
    eventually("the room's member back in the restarted shard", || async {
        let members = redis.cli(&["ZRANGE", &format!("switchboard:{{r:{room}}}:z"), "0", "-1"]);
        (members.trim() == user).then_some(())
    })
    .await;
    let connections = redis.cli(&["GET", &format!("switchboard:{{u:{user}}}:n")]);
    assert_eq!(connections.trim(), "1");
}

/// A room whose keys live on shard `shard` of two.
fn room_on(shard: usize) -> String {
    (0..)
        .map(|n| format!("room-{n}"))
        .find(|room| {
            switchboard_server::redis_shard_of(&format!("switchboard:{{r:{room}}}:m"), 2) == shard
        })
        .unwrap()
}

#[tokio::test]
async fn with_one_shard_down_publishes_to_the_others_rooms_go_on() {
    let mut redis = TestRedis::start_shards(2).await;
    let mut config = cluster_config(&redis);
    config.redis.timeout_ms = 300;
    let node = TestServer::start_with(config).await;
    let (up, down) = (room_on(0), room_on(1));
    let (mut socket, _) = raw_connect(&node, "ann").await;
    for room in [&up, &down] {
        raw_send(&mut socket, &json!({"type": "join", "id": room, "room": room}).to_string()).await;
        loop {
            if let ServerFrame::Ack(_) = raw_next(&mut socket).await {
                break;
            }
        }
    }
    redis.kill_one(1);
    // Two publishes in one write: the hub commits them together, one on
    // each shard.
    for (id, room) in [("p-up", &up), ("p-down", &down)] {
        let publish = json!({"type": "publish", "id": id, "room": room, "event": "e", "data": 1});
        socket.feed(publish.to_string().into()).await.unwrap();
    }
    socket.flush().await.unwrap();
    let mut answers = std::collections::BTreeMap::new();
    while answers.len() < 2 {
        let frame = serde_json::to_value(raw_next(&mut socket).await).unwrap();
        if let Some(id) = frame["id"].as_str().filter(|id| id.starts_with("p-")) {
            answers.insert(id.to_owned(), frame.clone());
        }
    }
    let up_answer: &Value = &answers["p-up"];
    assert_eq!((up_answer["type"].clone(), up_answer["offset"].clone()), (json!("ack"), json!(1)));
    let down_answer: &Value = &answers["p-down"];
    assert_eq!(
        (down_answer["type"].clone(), down_answer["code"].clone()),
        (json!("error"), json!(301))
    );
}
