//! Delivery guarantees: nothing lost, nothing duplicated, across dropped
//! connections (the hub's disconnects and abrupt resets), lost acks,
//! offline users and restarts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchboard_server::config::{HistoryLimits, HistoryRule, StoreKind};
use switchboard_tests::{
    Event, Events, Proxy, TestServer, client_at, connect, eventually, fast_reconnect, get_json,
    http, test_config,
};

const TOTAL: u64 = 10_000;
const DROPS: u64 = 24;

fn keep_everything(pattern: &str) -> HistoryRule {
    HistoryRule {
        pattern: pattern.into(),
        limits: HistoryLimits { size: 20_000, ttl_secs: 3_600, max_bytes: 64 << 20 },
    }
}

/// What a client has received, gathered in the background.
#[derive(Default)]
struct Received {
    numbers: Vec<u64>,
    rejoins: Vec<Option<bool>>,
    reconnects: Vec<Option<bool>>,
}

/// Collects message numbers of `event`, rejoin flags and inbox recovery flags.
fn collect(events: Events, event: &'static str) -> Arc<Mutex<Received>> {
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = received.clone();
    let mut events = events;
    tokio::spawn(async move {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(120), events.next_raw()).await;
            let Ok(Some(next)) = next else { return };
            let mut sink = sink.lock().unwrap();
            match next {
                Event::Message(m) if m.event == event => {
                    sink.numbers.push(m.data.as_u64().unwrap())
                }
                Event::Joined(j) if j.rejoin => sink.rejoins.push(j.recovered),
                Event::Reconnected(recovered) => sink.reconnects.push(recovered),
                _ => {}
            }
        }
    });
    received
}

async fn kick(server: &TestServer, user: &str) {
    let response = http()
        .post(server.http("/api/disconnect"))
        .json(&json!({"user": user, "code": 4000, "reason": "chaos"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

fn assert_exactly_once_in_order(numbers: &[u64], who: &str) {
    let expected: Vec<u64> = (0..TOTAL).collect();
    if numbers != expected {
        let first_bad = numbers.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{who}: got {} messages, first difference at {first_bad:?} (around {:?})",
            numbers.len(),
            first_bad.map(|i| &numbers[i.saturating_sub(2)..(i + 3).min(numbers.len())])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_subscriber_dropped_again_and_again_gets_every_message_once_in_order() {
    let mut config = test_config();
    config.history.rules.push(keep_everything("chaos*"));
    // The publisher runs flat out; the per-connection rate limit is not under test here.
    config.limits.messages_per_sec = 1_000_000;
    let server = TestServer::start_with(config).await;
    let proxy = Proxy::start(server.addr).await;
    let (subscriber, events) = client_at(&proxy.ws_url(), "subscriber", fast_reconnect());
    let received = collect(events, "n");
    subscriber.connect().await.unwrap();
    subscriber.join("chaos").await.unwrap();
    let (publisher, _) = connect(&server, "publisher").await;
    publisher.join("chaos").await.unwrap();

    let mut drops = 0;
    for n in 0..TOTAL {
        publisher.publish("chaos", "n", n).await.unwrap();
        if n % (TOTAL / DROPS) == TOTAL / DROPS / 2 {
            // Each drop only once the previous one has been recovered from.
            eventually("the subscriber to rejoin", || async {
                (received.lock().unwrap().rejoins.len() >= drops).then_some(())
            })
            .await;
            if drops % 2 == 0 {
                proxy.cut_all();
            } else {
                kick(&server, "subscriber").await;
            }
            drops += 1;
        }
    }
    eventually("every message", || async {
        (received.lock().unwrap().numbers.len() as u64 >= TOTAL).then_some(())
    })
    .await;
    let received = received.lock().unwrap();
    assert!(drops >= 20, "{drops} drops");
    assert_exactly_once_in_order(&received.numbers, "subscriber");
    assert!(received.rejoins.len() >= 20, "{} rejoins", received.rejoins.len());
    assert!(
        received.rejoins.iter().all(|r| *r == Some(true)),
        "every rejoin recovered: {:?}",
        received.rejoins
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_connections_of_a_user_get_every_private_message_once_in_order_through_drops() {
    let mut config = test_config();
    config.history.inbox = HistoryLimits { size: 20_000, ttl_secs: 3_600, max_bytes: 64 << 20 };
    config.limits.messages_per_sec = 1_000_000;
    let server = TestServer::start_with(config).await;
    let proxies = [Proxy::start(server.addr).await, Proxy::start(server.addr).await];
    let mut tabs = Vec::new();
    for proxy in &proxies {
        let (tab, events) = client_at(&proxy.ws_url(), "twin", fast_reconnect());
        let received = collect(events, "dm");
        tab.connect().await.unwrap();
        tabs.push((tab, received));
    }
    let (sender, _) = connect(&server, "sender").await;

    let mut drops = 0usize;
    for n in 0..TOTAL {
        let reached = sender.send("twin", "dm", n).await.unwrap();
        assert!(reached <= 2);
        if n % (TOTAL / DROPS) == TOTAL / DROPS / 2 {
            eventually("both tabs back", || async {
                tabs.iter().all(|(tab, _)| tab.is_connected()).then_some(())
            })
            .await;
            // One tab, the other, then both at once (the hub kicks the user).
            match drops % 3 {
                0 => proxies[0].cut_all(),
                1 => proxies[1].cut_all(),
                _ => kick(&server, "twin").await,
            }
            drops += 1;
        }
    }
    for (index, (_, received)) in tabs.iter().enumerate() {
        eventually("every private message", || async {
            (received.lock().unwrap().numbers.len() as u64 >= TOTAL).then_some(())
        })
        .await;
        let received = received.lock().unwrap();
        assert_exactly_once_in_order(&received.numbers, &format!("tab {index}"));
        assert!(
            received.reconnects.iter().all(|r| *r == Some(true)),
            "tab {index}: every inbox resume recovered: {:?}",
            received.reconnects
        );
    }
    let reconnects: usize = tabs.iter().map(|(_, r)| r.lock().unwrap().reconnects.len()).sum();
    assert!(reconnects >= 20, "{reconnects} reconnects");
}

#[tokio::test]
async fn a_lost_ack_does_not_publish_twice() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let (writer, _) = client_at(&proxy.ws_url(), "writer", fast_reconnect());
    writer.connect().await.unwrap();
    writer.join("ledger").await.unwrap();
    let (reader, mut reader_events) = connect(&server, "reader").await;
    reader.join("ledger").await.unwrap();

    // The hub carries the publish out, but its ack never reaches the writer.
    proxy.swallow_replies(true);
    let pending = tokio::spawn({
        let writer = writer.clone();
        async move { writer.publish("ledger", "entry", 1).await }
    });
    let first = reader_events.next_message().await;
    assert_eq!((first.event.as_str(), first.data.clone()), ("entry", json!(1)));
    proxy.swallow_replies(false);
    proxy.cut_all();

    // After the reconnect the same request is sent again with the same id;
    // the hub answers from its id window instead of publishing again.
    pending.await.unwrap().expect("the retried publish is acked");
    writer.publish("ledger", "entry", 2).await.unwrap();
    let next = reader_events.next_message().await;
    assert_eq!(next.data, json!(2), "entry 1 was not published twice");
    assert!(proxy.accepted() >= 2, "the writer did reconnect");
}

#[tokio::test]
async fn messages_to_an_offline_user_wait_in_their_inbox_and_arrive_once() {
    let server = TestServer::start().await;
    let (sender, _) = connect(&server, "sender").await;
    let response: serde_json::Value = http()
        .post(server.http("/api/send"))
        .json(&json!({"to": "sleeper", "event": "note", "data": "from the server"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["status"], "queued");
    assert_eq!(response["delivered"], 0);
    let sent = sender.send("sleeper", "note", "from sender").await.unwrap();
    assert_eq!(sent, 0);

    let (sleeper, mut events) = connect(&server, "sleeper").await;
    let first = events.next_message().await;
    let second = events.next_message().await;
    assert_eq!((first.data, second.data), (json!("from the server"), json!("from sender")));
    assert_eq!(second.to.as_deref(), Some("sleeper"));

    // A second, brand-new connection finds nothing waiting: it was delivered.
    let (_other_tab, mut other_events) = connect(&server, "sleeper").await;
    sender.send("sleeper", "note", "marker").await.unwrap();
    assert_eq!(other_events.next_message().await.data, json!("marker"));
    assert_eq!(events.next_message().await.data, json!("marker"));
    sleeper.close().await;
}

#[tokio::test]
async fn history_is_trimmed_to_its_size_and_read_by_offset() {
    let mut config = test_config();
    config.history.rules.push(HistoryRule {
        pattern: "short:*".into(),
        limits: HistoryLimits { size: 5, ttl_secs: 3_600, max_bytes: 1 << 20 },
    });
    config.history.rules.push(HistoryRule {
        pattern: "live:*".into(),
        limits: HistoryLimits { size: 0, ttl_secs: 0, max_bytes: 0 },
    });
    let server = TestServer::start_with(config).await;
    let (client, mut events) = connect(&server, "historian").await;
    client.join("short:log").await.unwrap();
    for n in 1..=10 {
        client.publish("short:log", "line", n).await.unwrap();
    }
    let page = get_json(&server, "/api/rooms/short:log/history").await;
    assert_eq!(page["offset"], 10);
    let offsets: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![6, 7, 8, 9, 10], "only the last five are kept");
    let page = get_json(&server, "/api/rooms/short:log/history?since=7&limit=2").await;
    let data: Vec<u64> =
        page["messages"].as_array().unwrap().iter().map(|m| m["data"].as_u64().unwrap()).collect();
    assert_eq!(data, vec![8, 9]);

    let sdk_page = client.history("short:log", Some(8), None).await.unwrap();
    assert_eq!(sdk_page.offset, 10);
    assert_eq!(
        sdk_page.messages.iter().map(|m| m.offset.unwrap()).collect::<Vec<_>>(),
        vec![9, 10]
    );

    // A live-only room still delivers, and keeps nothing.
    client.join("live:ticks").await.unwrap();
    client.publish("live:ticks", "tick", 1).await.unwrap();
    let tick =
        events.wait_for("the tick", |e| matches!(e, Event::Message(m) if m.event == "tick")).await;
    assert!(matches!(tick, Event::Message(m) if m.offset == Some(1)));
    let page = get_json(&server, "/api/rooms/live:ticks/history").await;
    assert_eq!((page["offset"].clone(), page["messages"].clone()), (json!(1), json!([])));
}

#[tokio::test]
async fn after_a_restart_of_the_memory_store_recovery_says_it_failed() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let (listener, mut events) = connect(&server, "listener").await;
    listener.join("news").await.unwrap();
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("news").await.unwrap();
    speaker.publish("news", "headline", 1).await.unwrap();
    events.next_message().await;
    drop(speaker);
    server.stop().await;
    let _server = TestServer::start_on(addr, test_config()).await;
    let Event::Joined(rejoined) =
        events.wait_for("the rejoin", |e| matches!(e, Event::Joined(j) if j.rejoin)).await
    else {
        unreachable!()
    };
    assert_eq!(rejoined.recovered, Some(false), "history died with the process");
}

#[tokio::test]
async fn after_a_restart_on_the_disk_store_clients_recover_everything() {
    let dir = std::env::temp_dir().join(format!("switchboard-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let disk = || {
        let mut config = test_config();
        config.history.store = StoreKind::Disk;
        config.history.path = dir.join("history.redb");
        config
    };
    let server = TestServer::start_with(disk()).await;
    let addr = server.addr;
    let proxy = Proxy::start(addr).await;
    let (listener, events) = client_at(&proxy.ws_url(), "listener", fast_reconnect());
    let news = collect(events, "n");
    listener.connect().await.unwrap();
    listener.join("news").await.unwrap();
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("news").await.unwrap();
    speaker.publish("news", "n", 0).await.unwrap();
    eventually("the first message", || async {
        (news.lock().unwrap().numbers == [0]).then_some(())
    })
    .await;

    // The listener drops off and cannot come back; meanwhile messages go out,
    // then the hub restarts on the same database.
    proxy.refuse(true);
    proxy.cut_all();
    speaker.publish("news", "n", 1).await.unwrap();
    speaker.publish("news", "n", 2).await.unwrap();
    assert_eq!(speaker.send("listener", "n", 100).await.unwrap(), 0, "queued in the inbox");
    speaker.close().await;
    server.stop().await;
    let server = TestServer::start_on(addr, disk()).await;
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("news").await.unwrap();
    speaker.publish("news", "n", 3).await.unwrap();

    proxy.refuse(false);
    eventually("everything missed", || async {
        (news.lock().unwrap().numbers.len() >= 5).then_some(())
    })
    .await;
    {
        let received = news.lock().unwrap();
        assert_eq!(received.numbers, vec![0, 100, 1, 2, 3], "inbox first, then the room's replay");
        assert_eq!(received.rejoins, vec![Some(true)], "the room recovered across the restart");
        assert_eq!(received.reconnects, vec![Some(true)], "the inbox recovered across the restart");
    }
    listener.close().await;
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

/// A client that asks for batches (`?batch=1`, as the SDKs do) gets every
/// message of a burst once and in order, several to a WebSocket message
/// (newline-separated); a client that does not gets one per message. An
/// unknown `batch` value is refused before the upgrade.
#[tokio::test]
async fn batched_and_unbatched_readers_get_a_burst_whole_and_in_order() {
    use futures::SinkExt;
    use switchboard_protocol::ServerFrame;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    const BURST: u64 = 2_000;
    let mut config = test_config();
    config.limits.messages_per_sec = 100_000;
    let server = TestServer::start_with(config).await;
    let (mut batched, _) = switchboard_tests::raw_connect(&server, "b&room=burst&batch=1").await;
    let (mut single, _) = switchboard_tests::raw_connect(&server, "s&room=burst&batch=0").await;
    let (mut publisher, _) = switchboard_tests::raw_connect(&server, "p&room=burst").await;
    for n in 0..BURST {
        let frame = json!({"type": "publish", "room": "burst", "event": "n", "data": n});
        publisher.feed(WsMessage::text(frame.to_string())).await.unwrap();
    }
    publisher.flush().await.unwrap();

    /// Reads until `BURST` messages have come; returns their data in order
    /// and how many WebSocket messages carried them.
    async fn read(socket: &mut switchboard_tests::RawSocket) -> (Vec<u64>, usize) {
        let (mut data, mut carriers) = (Vec::new(), 0);
        while (data.len() as u64) < BURST {
            let WsMessage::Text(text) = switchboard_tests::raw_next_message(socket).await else {
                continue;
            };
            carriers += 1;
            for line in text.split('\n') {
                match serde_json::from_str(line).expect("each line is one frame") {
                    ServerFrame::Message(message) => data.push(message.data.as_u64().unwrap()),
                    ServerFrame::Presence(_) | ServerFrame::Occupancy(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        (data, carriers)
    }
    let everything: Vec<u64> = (0..BURST).collect();
    let (data, carriers) = read(&mut single).await;
    assert_eq!(data, everything);
    assert!(carriers as u64 >= BURST, "one frame per message without batch");
    let (data, carriers) = read(&mut batched).await;
    assert_eq!(data, everything);
    // How many share a message depends on timing; that they arrive whole,
    // once and in order does not.
    assert!(carriers as u64 <= BURST + 10);

    let response = switchboard_tests::http()
        .get(format!("{}?user_id=x&batch=yes", server.http("/ws")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("`batch` must be 1 or 0"));
}
