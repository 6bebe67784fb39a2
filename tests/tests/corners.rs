//! The corners of the delivery promise, on one node and on several on a
//! real Redis: a room that goes quiet, a stream that starts over, a join
//! sent again in the middle of a burst, request ids of users whose names
//! hold the separator, a request cut short in its hook, a join whose read
//! fails, presence rewritten while joins and leaves go on, a large room
//! across nodes, and what a node keeps of the streams it follows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_protocol::{CloseCode, ServerFrame};
use switchboard_server::AppState;
use switchboard_server::config::{Config, HistoryRule};
use switchboard_server::hooks::{HookFuture, Hooks, MessageDecision};
use switchboard_tests::{
    Event, RawSocket, TIMEOUT, TestRedis, TestServer, cluster_config, connect, eventually,
    get_json, http, raw_connect, raw_next, raw_send, test_config,
};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The next frame on a raw socket that is not presence (a member hears its
/// own join after the ack).
async fn answer(socket: &mut RawSocket) -> ServerFrame {
    loop {
        match raw_next(socket).await {
            ServerFrame::Presence(_) | ServerFrame::Occupancy(_) => continue,
            frame => return frame,
        }
    }
}

/// Joins `room` on a raw socket and returns the ack's epoch and offset
/// (messages of rooms joined before are skipped).
async fn join(socket: &mut RawSocket, room: &str) -> (String, u64) {
    raw_send(socket, &json!({"type":"join","id":"j","room":room}).to_string()).await;
    loop {
        match answer(socket).await {
            ServerFrame::Ack(ack) => {
                return (ack.epoch.expect("an epoch"), ack.offset.expect("an offset"));
            }
            ServerFrame::Message(_) => continue,
            other => panic!("expected the join's ack, got {other:?}"),
        }
    }
}

/// Publishes as the server through `state`'s in-process API; the
/// message's offset.
async fn publish(state: &AppState, room: &str, data: Value) -> u64 {
    state.publish(room, "e", data).await.expect("published").offset
}

/// The next message on a raw socket (skipping presence).
async fn message(socket: &mut RawSocket) -> switchboard_protocol::Message {
    match answer(socket).await {
        ServerFrame::Message(message) => message,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// A hub of the cluster on `redis`, with its state kept for the test.
async fn node(redis: &TestRedis, change: impl FnOnce(&mut Config)) -> (TestServer, AppState) {
    let mut config = cluster_config(redis);
    change(&mut config);
    let state = AppState::new(config).expect("state");
    (TestServer::start_state(state.clone()).await, state)
}

#[tokio::test]
async fn a_quiet_room_keeps_its_epoch_and_offsets_while_members_wait() {
    let redis = TestRedis::start().await;
    let (a, state) = node(&redis, |_| {}).await;
    let (b, _) = node(&redis, |_| {}).await;
    let (mut alice, _) = raw_connect(&a, "alice").await;
    let (mut bob, _) = raw_connect(&b, "bob").await;
    let (epoch, _) = join(&mut alice, "quiet").await;
    join(&mut bob, "quiet").await;
    for n in 1..=50 {
        assert_eq!(publish(&state, "quiet", json!(n)).await, n);
    }
    for n in 1..=50 {
        assert_eq!(message(&mut bob).await.offset, Some(n));
    }
    // While anyone follows the room, its metadata (epoch, offsets) keeps no
    // expiry: however long the room stays quiet, nothing restarts it.
    let meta = "switchboard:{r:quiet}:m";
    eventually("the room's metadata to keep no expiry", || async {
        (redis.cli(&["TTL", meta]).trim() == "-1").then_some(())
    })
    .await;
    // The history expires on its own (its TTL passed): offsets go on.
    redis.cli(&["DEL", "switchboard:{r:quiet}:x"]);
    assert_eq!(publish(&state, "quiet", json!(51)).await, 51);
    let next = message(&mut bob).await;
    assert_eq!((next.offset, next.data), (Some(51), json!(51)));
    raw_send(&mut bob, &json!({"type":"join","id":"again","room":"quiet"}).to_string()).await;
    match answer(&mut bob).await {
        ServerFrame::Ack(ack) => assert_eq!(ack.epoch.as_deref(), Some(epoch.as_str())),
        other => panic!("expected an ack, got {other:?}"),
    }
    // Once nobody follows it, it expires like any unused stream.
    for socket in [&mut alice, &mut bob] {
        raw_send(socket, &json!({"type":"leave","room":"quiet"}).to_string()).await;
    }
    eventually("the metadata to expire again once nobody follows", || async {
        let ttl: i64 = redis.cli(&["TTL", meta]).trim().parse().unwrap_or(-2);
        (ttl > 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stream_that_starts_over_moves_its_followers_to_the_new_epoch() {
    let redis = TestRedis::start().await;
    let (hub, state) = node(&redis, |_| {}).await;
    let (mut raw, _) = raw_connect(&hub, "raw").await;
    let (old_epoch, _) = join(&mut raw, "r").await;
    let (bob, mut events) = connect(&hub, "bob").await;
    bob.join("r").await.expect("bob joins");
    for n in 1..=3 {
        publish(&state, "r", json!(n)).await;
    }
    for n in 1..=3 {
        assert_eq!(message(&mut raw).await.offset, Some(n));
        assert_eq!(events.next_message().await.offset, Some(n));
    }
    // Redis loses the stream while both follow it (a restart without
    // persistence, say): the next publish starts a new epoch at 1.
    redis.cli(&["DEL", "switchboard:{r:r}:m", "switchboard:{r:r}:x"]);
    assert_eq!(publish(&state, "r", json!("after")).await, 1);
    // A raw client is told first, then gets the message of the new epoch.
    let reset = match answer(&mut raw).await {
        ServerFrame::Reset(reset) => reset,
        other => panic!("expected a reset, got {other:?}"),
    };
    assert_eq!((reset.room.as_deref(), reset.offset), (Some("r"), 0));
    assert_ne!(reset.epoch, old_epoch);
    let after = message(&mut raw).await;
    assert_eq!((after.offset, after.data), (Some(1), json!("after")));
    // The SDK moves to the new epoch, tells the app, and takes offset 1
    // instead of dropping it as already seen.
    let event = events.wait_for("the reset", |e| matches!(e, Event::Reset(_))).await;
    let Event::Reset(reset) = event else { unreachable!() };
    assert_eq!(reset.room.as_deref(), Some("r"));
    let after = events.next_message().await;
    assert_eq!((after.offset, after.data), (Some(1), json!("after")));
    // And a reconnect resumes from the new epoch: nothing is lost or repeated.
    publish(&state, "r", json!("later")).await;
    assert_eq!(events.next_message().await.offset, Some(2));
}

/// Publishes `count` messages to `room` on a raw socket as fast as the hub
/// takes them.
async fn burst(server: &TestServer, user: &str, room: &str, count: u64) {
    let (mut publisher, _) = raw_connect(server, user).await;
    join(&mut publisher, room).await;
    for n in 1..=count {
        let frame = json!({"type":"publish","room":room,"event":"e","data":n});
        raw_send(&mut publisher, &frame.to_string()).await;
    }
    // A ping at the end: its pong says every publish before it was taken.
    let last = json!({"type":"ping","id":"done"});
    raw_send(&mut publisher, &last.to_string()).await;
    loop {
        let frame = raw_next(&mut publisher).await;
        match frame {
            ServerFrame::Pong { .. } => break,
            ServerFrame::Error(error) => panic!("a publish was refused: {error:?}"),
            _ => {}
        }
    }
}

/// A member on the last server that sends `join` again every hundred
/// messages while a burst published on the first one arrives: every offset
/// must arrive once.
async fn rejoin_mid_burst(servers: &[TestServer]) {
    const COUNT: u64 = 3_000;
    let last = servers.last().expect("a server");
    let (mut member, _) = raw_connect(last, "member").await;
    join(&mut member, "burst").await;
    let receive = async {
        let mut seen = BTreeSet::new();
        let mut repeated = Vec::new();
        let mut received = 0u64;
        while seen.len() < COUNT as usize {
            let next = tokio::time::timeout(TIMEOUT, member.next()).await;
            let Ok(Some(Ok(WsMessage::Text(text)))) = next else {
                let missing: Vec<u64> =
                    (1..=COUNT).filter(|n| !seen.contains(n)).take(20).collect();
                panic!(
                    "{} of {COUNT} messages arrived ({next:?}); missing {missing:?}…",
                    seen.len()
                );
            };
            let frame: ServerFrame = serde_json::from_str(&text).expect("a frame");
            if let ServerFrame::Message(message) = frame {
                let offset = message.offset.expect("an offset");
                if !seen.insert(offset) {
                    repeated.push(offset);
                }
                received += 1;
                // The join sent again while messages are on their way.
                if received % 100 == 0 {
                    let again = json!({"type":"join","room":"burst"});
                    raw_send(&mut member, &again.to_string()).await;
                }
            }
        }
        (seen, repeated)
    };
    let ((), (seen, repeated)) =
        tokio::join!(burst(&servers[0], "publisher", "burst", COUNT), receive);
    assert!(repeated.is_empty(), "repeated: {repeated:?}");
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
}

fn unlimited(config: &mut Config) {
    config.limits.messages_per_sec = 1_000_000;
    config.limits.outbound_queue_messages = 10_000;
    config.history.rules.push(HistoryRule {
        pattern: "burst".into(),
        limits: switchboard_server::config::HistoryLimits {
            size: 10_000,
            ttl_secs: 3_600,
            max_bytes: 64 << 20,
        },
    });
}

#[tokio::test]
async fn a_join_sent_again_mid_burst_loses_nothing_on_one_node() {
    let mut config = test_config();
    unlimited(&mut config);
    let server = TestServer::start_with(config).await;
    rejoin_mid_burst(&[server]).await;
}

#[tokio::test]
async fn a_join_sent_again_mid_burst_loses_nothing_across_nodes() {
    let redis = TestRedis::start().await;
    let (a, _) = node(&redis, unlimited).await;
    let (b, _) = node(&redis, unlimited).await;
    rejoin_mid_burst(&[a, b]).await;
}

#[tokio::test]
async fn an_sdk_client_joining_again_mid_burst_misses_nothing() {
    const COUNT: u64 = 2_000;
    let redis = TestRedis::start().await;
    let (server, _) = node(&redis, unlimited).await;
    let (other, _) = node(&redis, unlimited).await;
    let (client, mut events) = connect(&other, "member").await;
    client.join("burst").await.expect("joins");
    let receive = async {
        let mut seen = BTreeSet::new();
        while seen.len() < COUNT as usize {
            let message = events.next_message().await;
            let offset = message.offset.expect("an offset");
            assert!(seen.insert(offset), "offset {offset} twice");
            // The app joins again while messages are still on their way:
            // the ack names the head, and what is queued below it arrives.
            if seen.len() % 100 == 0 {
                let client = client.clone();
                tokio::spawn(async move { client.join("burst").await });
            }
        }
        seen
    };
    let ((), seen) = tokio::join!(burst(&server, "publisher", "burst", COUNT), receive);
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), (1..=COUNT).collect::<Vec<_>>());
}

#[tokio::test]
async fn request_ids_of_users_whose_names_hold_the_separator_stay_apart() {
    let redis = TestRedis::start().await;
    let (a, _) = node(&redis, |_| {}).await;
    let (b, _) = node(&redis, |_| {}).await;
    let (mut watcher, _) = raw_connect(&a, "watcher").await;
    join(&mut watcher, "ids").await;
    let (mut kay, _) = raw_connect(&a, "kay").await;
    let (mut kay_x, _) = raw_connect(&b, "kay:x").await;
    join(&mut kay, "ids").await;
    join(&mut kay_x, "ids").await;
    let frame = |id: &str| json!({"type":"publish","id":id,"room":"ids","event":"e","data":id});
    raw_send(&mut kay, &frame("x:1").to_string()).await;
    let first = match answer(&mut kay).await {
        ServerFrame::Ack(ack) => ack.offset,
        other => panic!("expected an ack, got {other:?}"),
    };
    raw_send(&mut kay_x, &frame("1").to_string()).await;
    let second = loop {
        match answer(&mut kay_x).await {
            ServerFrame::Ack(ack) => break ack.offset,
            ServerFrame::Message(_) => continue, // kay's, in the same room
            other => panic!("expected an ack, got {other:?}"),
        }
    };
    assert_eq!((first, second), (Some(1), Some(2)), "two users, two requests, two messages");
    assert_eq!(message(&mut watcher).await.data, json!("x:1"));
    assert_eq!(message(&mut watcher).await.data, json!("1"));
}

/// Hooks whose first publish waits until the test lets it go.
struct Slow {
    calls: AtomicUsize,
    entered: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

impl Hooks for Slow {
    fn publish<'a>(
        &'a self,
        _who: &'a switchboard_server::Identity,
        _room: &'a str,
        _event: &'a str,
        _data: &'a Value,
        _encoding: Option<switchboard_server::Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = self.entered.send(());
                self.release.notified().await;
            }
            MessageDecision::Allow
        })
    }
}

#[tokio::test]
async fn a_publish_cut_short_in_its_hook_is_carried_out_on_retry() {
    let mut config = test_config();
    config.hooks.timeout_ms = 10_000;
    let state = AppState::new(config).expect("state");
    let (entered, mut hook_entered) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let hooks = Slow { calls: AtomicUsize::new(0), entered, release: release.clone() };
    assert!(state.set_hooks(hooks));
    let server = TestServer::start_state(state.clone()).await;
    let (mut member, _) = raw_connect(&server, "member").await;
    join(&mut member, "room").await;
    let (mut alice, _) = raw_connect(&server, "alice").await;
    join(&mut alice, "room").await;
    let frame = json!({"type":"publish","id":"c1","room":"room","event":"e","data":"once"});
    raw_send(&mut alice, &frame.to_string()).await;
    tokio::time::timeout(TIMEOUT, hook_entered.recv()).await.expect("the hook runs");
    // The hub closes alice while her publish waits in its hook.
    state.disconnect("alice", CloseCode(4000), "cut short").await.expect("disconnect");
    release.notify_waiters();
    // The SDK's retry on a new connection, same id: carried out, once.
    let (mut again, _) = raw_connect(&server, "alice").await;
    join(&mut again, "room").await;
    raw_send(&mut again, &frame.to_string()).await;
    match answer(&mut again).await {
        ServerFrame::Ack(ack) => assert_eq!(ack.offset, Some(1), "an ack with its offset"),
        other => panic!("expected an ack, got {other:?}"),
    }
    let delivered = message(&mut member).await;
    assert_eq!((delivered.offset, delivered.data), (Some(1), json!("once")));
    // And only once: the next message is the next offset.
    publish(&state, "room", json!("next")).await;
    assert_eq!(message(&mut member).await.offset, Some(2));
}

#[tokio::test]
async fn a_join_whose_read_fails_is_undone_and_leaves_nothing_to_count_down() {
    let mut redis = TestRedis::start().await;
    let (a, state) = node(&redis, |_| {}).await;
    let (b, state_b) = node(&redis, |_| {}).await;
    let (mut alice, _) = raw_connect(&a, "alice").await;
    redis.kill();
    raw_send(&mut alice, &json!({"type":"join","id":"j","room":"room"}).to_string()).await;
    match answer(&mut alice).await {
        ServerFrame::Error(error) => assert_eq!(error.code.0, 301, "unavailable"),
        other => panic!("expected an error, got {other:?}"),
    }
    let (mine, _) = state.hub().connections(Some("alice"), None, 10);
    assert_eq!(mine.len(), 1);
    assert!(mine[0].rooms.is_empty(), "the failed join left no membership: {:?}", mine[0].rooms);
    redis.restart().await;
    eventually("node B to reach redis again", || async {
        let answer = http().get(b.http("/api/online")).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    // Carol is in the room; alice's disconnect must not count her out.
    let (mut carol, _) = raw_connect(&b, "carol").await;
    join(&mut carol, "room").await;
    drop(alice);
    let members = || async {
        let page = get_json(&b, "/api/rooms/room/members").await;
        page["members"].as_array().cloned()
    };
    eventually("alice to be gone", || async {
        let online = get_json(&b, "/api/online").await;
        (!online["users"].as_array()?.iter().any(|u| u == "alice")).then_some(())
    })
    .await;
    assert_eq!(members().await, Some(vec![json!("carol")]));
    // Nobody announced a leave: carol's next frame is a message.
    publish(&state_b, "room", json!("still here")).await;
    assert_eq!(message(&mut carol).await.data, json!("still here"));
}

/// A raw connection whose frames are read (and dropped) by a task of its
/// own, so that it never holds up the hub, and written to by the test.
struct Member {
    sink: futures::stream::SplitSink<RawSocket, WsMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl Member {
    async fn connect(server: &TestServer, user: &str) -> Member {
        let (mut socket, _) = raw_connect(server, user).await;
        join(&mut socket, "lobby").await;
        let (sink, mut stream) = socket.split();
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        Member { sink, reader }
    }

    async fn send(&mut self, frame: Value) {
        self.sink.send(WsMessage::Text(frame.to_string().into())).await.expect("send");
    }

    async fn close(mut self) {
        let _ = self.sink.close().await;
        let _ = tokio::time::timeout(TIMEOUT, self.reader).await;
    }
}

#[tokio::test]
async fn presence_rewritten_while_joins_and_leaves_go_on_ends_exact() {
    let redis = TestRedis::start().await;
    // Nobody in the lobby sees its presence: the churn below costs the
    // members nothing to read, while every join and leave is still counted.
    let quiet = |config: &mut Config| {
        config.redis.node_ttl_ms = 600;
        use switchboard_server::config::{Access, RoomRule};
        config.permissions.rooms.push(RoomRule {
            pattern: "lobby".into(),
            join: Access::Anyone,
            publish: Access::Anyone,
            history: Access::Anyone,
            presence: Access::Server,
        });
        config.limits.messages_per_sec = 100_000;
    };
    let (a, state) = node(&redis, quiet).await;
    let (b, _) = node(&redis, quiet).await;
    let node_a = state.node_id().expect("a node id").to_owned();
    let mut members = Vec::new();
    for n in 0..30 {
        members.push(Member::connect(&a, &format!("u{n:02}")).await);
    }
    // Redis forgets node A over and over (as after a restart, or when the
    // others took it for dead) while its users keep leaving and coming back:
    // each time, A rewrites its whole presence.
    let churn_end = tokio::time::Instant::now() + std::time::Duration::from_millis(3_000);
    while tokio::time::Instant::now() < churn_end {
        redis.cli(&["ZREM", "switchboard:{home}:nodes", &node_a]);
        for member in members.iter_mut() {
            member.send(json!({"type":"leave","room":"lobby"})).await;
            member.send(json!({"type":"join","room":"lobby"})).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The end state: the first ten left the room, the last ten left the hub.
    for member in members.iter_mut().take(10) {
        member.send(json!({"type":"leave","room":"lobby"})).await;
    }
    for member in members.drain(20..) {
        member.close().await;
    }
    let in_lobby: Vec<Value> = (10..20).map(|n| json!(format!("u{n:02}"))).collect();
    eventually("the lobby's members seen from node B to be exact", || async {
        let page = get_json(&b, "/api/rooms/lobby/members").await;
        (page["members"].as_array()? == &in_lobby).then_some(())
    })
    .await;
    let online: Vec<Value> = (0..20).map(|n| json!(format!("u{n:02}"))).collect();
    eventually("who is online to be exact", || async {
        let answer = get_json(&b, "/api/online").await;
        let connections = answer["connections"].as_object()?;
        let exact = answer["users"].as_array()? == &online && connections.values().all(|c| c == 1);
        exact.then_some(())
    })
    .await;
    // Everyone goes: nobody is left behind, counted twice or never out.
    for member in members {
        member.close().await;
    }
    eventually("nobody to be left", || async {
        let online = get_json(&b, "/api/online").await;
        let rooms = get_json(&b, "/api/rooms").await;
        let empty = online["users"].as_array()?.is_empty() && rooms["rooms"].as_array()?.is_empty();
        empty.then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_large_room_stays_large_across_nodes_until_it_empties() {
    let redis = TestRedis::start().await;
    let large = |config: &mut Config| config.rooms.large_room = 2;
    let (a, state) = node(&redis, large).await;
    let (b, _) = node(&redis, large).await;
    async fn joined(socket: &mut RawSocket, room: &str) -> bool {
        raw_send(socket, &json!({"type":"join","id":"j","room":room}).to_string()).await;
        match answer(socket).await {
            ServerFrame::Ack(ack) => ack.large == Some(true),
            other => panic!("expected an ack, got {other:?}"),
        }
    }
    let (mut u1, _) = raw_connect(&a, "u1").await;
    let (mut u2, _) = raw_connect(&b, "u2").await;
    let (mut u3, _) = raw_connect(&a, "u3").await;
    assert!(!joined(&mut u1, "hall").await);
    assert!(!joined(&mut u2, "hall").await);
    assert!(joined(&mut u3, "hall").await, "three users: past the threshold of two");
    for socket in [&mut u3, &mut u2] {
        raw_send(socket, &json!({"type":"leave","room":"hall"}).to_string()).await;
    }
    eventually("two users to have left", || async {
        let page = get_json(&a, "/api/rooms/hall/members").await;
        (page["members"].as_array()?.len() == 1).then_some(())
    })
    .await;
    // Below the threshold again, the room is still large, on either node.
    let (mut u4, _) = raw_connect(&b, "u4").await;
    assert!(joined(&mut u4, "hall").await, "still large: it has not emptied");
    let detail = get_json(&a, "/api/rooms/hall").await;
    assert_eq!(detail["large"], json!(true), "{detail}");
    // u1 hears no name for u4's arrival: everything before a message
    // published after u4's ack, presence included, is read.
    publish(&state, "hall", json!("marker")).await;
    loop {
        match raw_next(&mut u1).await {
            ServerFrame::Presence(presence) => {
                assert_ne!(presence.user, "u4", "a large room names nobody");
            }
            ServerFrame::Message(message) if message.data == json!("marker") => break,
            _ => {}
        }
    }
    // Once it empties, it starts small.
    for socket in [&mut u1, &mut u4] {
        raw_send(socket, &json!({"type":"leave","room":"hall"}).to_string()).await;
    }
    eventually("the hall to empty", || async {
        let page = get_json(&a, "/api/rooms/hall/members").await;
        page["members"].as_array().is_none_or(Vec::is_empty).then_some(())
    })
    .await;
    let (mut u5, _) = raw_connect(&b, "u5").await;
    assert!(!joined(&mut u5, "hall").await, "small again after it emptied");
}

#[tokio::test]
async fn a_node_keeps_only_the_streams_it_follows() {
    let redis = TestRedis::start().await;
    let (a, state) = node(&redis, |_| {}).await;
    let metric = |text: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with("switchboard_followed_streams "))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let followed = || async {
        let text = http().get(a.http("/metrics")).send().await.ok()?.text().await.ok()?;
        metric(&text)
    };
    let (mut alice, _) = raw_connect(&a, "alice").await;
    for n in 0..10 {
        let room = format!("room-{n}");
        join(&mut alice, &room).await;
        publish(&state, &room, json!(n)).await;
    }
    assert_eq!(followed().await, Some(11), "ten rooms and the inbox");
    for n in 0..10 {
        let leave = json!({"type":"leave","id":"l","room":format!("room-{n}")});
        raw_send(&mut alice, &leave.to_string()).await;
        answer(&mut alice).await;
    }
    assert_eq!(followed().await, Some(1), "the inbox");
    drop(alice);
    eventually("nothing to be followed", || async { (followed().await? == 0).then_some(()) }).await;
}

#[tokio::test]
async fn a_node_that_shuts_down_announces_its_users_leaves() {
    let redis = TestRedis::start().await;
    let (a, _) = node(&redis, |_| {}).await;
    let (b, _) = node(&redis, |_| {}).await;
    let (mut alice, _) = raw_connect(&a, "alice").await;
    join(&mut alice, "room").await;
    let (mut bob, _) = raw_connect(&b, "bob").await;
    join(&mut bob, "room").await;
    // Node A stops gracefully (a rolling deploy): alice's session closes,
    // and the others hear that she left, at once, not a node TTL later.
    a.stop().await;
    let started = std::time::Instant::now();
    loop {
        match raw_next(&mut bob).await {
            // Her join, heard from node A after bob's own join on B
            // (presence between nodes lags by up to `redis.coalesce_us`),
            // may come first.
            ServerFrame::Presence(presence)
                if presence.user == "alice"
                    && presence.action == switchboard_protocol::PresenceAction::Leave =>
            {
                break;
            }
            _ => {}
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "announced at shutdown");
    let online = get_json(&b, "/api/online").await;
    assert_eq!(online["users"], json!(["bob"]));
}

#[tokio::test]
async fn a_redis_that_restarts_empty_resets_followers_instead_of_closing_them() {
    let mut redis = TestRedis::start().await;
    let (hub, state) = node(&redis, |_| {}).await;
    let (mut member, _) = raw_connect(&hub, "member").await;
    let (epoch, _) = join(&mut member, "room").await;
    for n in 1..=3 {
        publish(&state, "room", json!(n)).await;
        assert_eq!(message(&mut member).await.offset, Some(n));
    }
    redis.restart().await;
    // Once the node is back on Redis, the room's next message is offset 1
    // of a new epoch: the member is reset first, and stays connected.
    let first = eventually("the node to publish again", || async {
        state.publish("room", "e", json!("after")).await.ok()
    })
    .await;
    assert_eq!(first.offset, 1);
    loop {
        match raw_next(&mut member).await {
            ServerFrame::Reset(reset) => {
                assert_eq!(reset.room.as_deref(), Some("room"));
                assert_ne!(reset.epoch, epoch);
                break;
            }
            ServerFrame::Message(message) => panic!("a message before the reset: {message:?}"),
            _ => {}
        }
    }
    let after = message(&mut member).await;
    assert_eq!((after.offset, after.data), (Some(1), json!("after")));
}

/// A raw connection as `user` to a hub at `ws_url`, past its `welcome`.
async fn raw_at(ws_url: &str, user: &str) -> RawSocket {
    let url = format!("{ws_url}?user_id={user}");
    let (mut socket, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade within the timeout")
        .expect("upgrade accepted");
    assert!(matches!(raw_next(&mut socket).await, ServerFrame::Welcome(_)));
    socket
}

#[tokio::test]
async fn a_dead_nodes_users_leave_a_large_room_as_a_count() {
    let redis = TestRedis::start().await;
    let vars = [("SWITCHBOARD_REDIS__NODE_TTL_MS", "1500"), ("SWITCHBOARD_ROOMS__LARGE_ROOM", "2")];
    let mut doomed = switchboard_tests::HubProcess::start_on_redis(&redis, &vars).await;
    let (survivor, _) = node(&redis, |config| {
        config.redis.node_ttl_ms = 1_500;
        config.rooms.large_room = 2;
    })
    .await;
    let mut theirs = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let mut socket = raw_at(&doomed.ws_url(), user).await;
        join(&mut socket, "hall").await;
        theirs.push(socket);
    }
    let (mut watcher, _) = raw_connect(&survivor, "watcher").await;
    raw_send(&mut watcher, &json!({"type":"join","id":"j","room":"hall"}).to_string()).await;
    match answer(&mut watcher).await {
        ServerFrame::Ack(ack) => assert_eq!(ack.large, Some(true), "four users: large"),
        other => panic!("expected the ack, got {other:?}"),
    }
    // The node dies without a word: the survivor buries it after its TTL
    // and tells the room. A large room counts; it names nobody.
    doomed.kill();
    loop {
        match raw_next(&mut watcher).await {
            ServerFrame::Presence(presence) => {
                panic!("a large room names nobody: {presence:?}")
            }
            ServerFrame::Occupancy(occupancy) if occupancy.count == 1 => break,
            _ => {}
        }
    }
    drop(theirs);
}
