//! The SDK across lost connections: backoff, rejoin, the offline queue,
//! giving up, and manual disconnect/connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use switchboard_sdk::{ConnectionState, Error, ReconnectPolicy};
use switchboard_tests::{Event, TIMEOUT, TestServer, client, connect, fast_reconnect, test_config};

#[tokio::test]
async fn after_a_restart_on_the_same_port_the_sdk_reconnects_with_backoff_and_rejoins() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let (listener, mut events) = connect(&server, "listener").await;
    listener.join("lobby").await.unwrap();
    listener.join("news").await.unwrap();

    server.stop().await;
    let Event::Disconnected(lost) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert!(lost.will_reconnect);
    // Wait until at least two reconnect attempts have failed against the
    // dead port, which shows the client keeps retrying with backoff.
    events.wait_for("a third attempt", |e| matches!(e, Event::Connecting(n) if *n >= 2)).await;
    assert_eq!(listener.state(), ConnectionState::Connecting);

    let server = TestServer::start_on(addr, test_config()).await;
    events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    // Each room is rejoined automatically and reported with its members.
    let mut rejoined = Vec::new();
    while rejoined.len() < 2 {
        if let Event::Joined(joined) =
            events.wait_for("a rejoin", |e| matches!(e, Event::Joined(_))).await
        {
            assert!(joined.rejoin, "{joined:?}");
            assert_eq!(joined.members, vec!["listener".to_owned()]);
            rejoined.push(joined.room);
        }
    }
    rejoined.sort();
    assert_eq!(rejoined, ["lobby", "news"]);
    let (speaker, _) = connect(&server, "speaker").await;
    // The rejoin happened: the rooms exist again with the listener in them.
    switchboard_tests::eventually("rooms rejoined", || async {
        let rooms: serde_json::Value = switchboard_tests::get_json(&server, "/api/rooms").await;
        let ids: Vec<&str> =
            rooms["rooms"].as_array()?.iter().filter_map(|r| r["id"].as_str()).collect();
        (ids == ["lobby", "news"]).then_some(())
    })
    .await;
    speaker.join("lobby").await.unwrap();
    speaker.publish("lobby", "chat", json!("welcome back")).await.unwrap();
    let message = events.next_message().await;
    assert_eq!((message.from.as_str(), message.data), ("speaker", json!("welcome back")));
}

#[tokio::test]
async fn an_opened_socket_without_a_welcome_does_not_reset_the_attempt_counter() {
    // A fake hub that completes every WebSocket upgrade and then says nothing.
    let fake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = fake.local_addr().unwrap();
    let upgrades = Arc::new(AtomicUsize::new(0));
    let counted = upgrades.clone();
    let _fake = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = fake.accept().await {
            if let Ok(socket) = tokio_tungstenite::accept_async(tcp).await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        }
    });
    let client = switchboard_sdk::Client::builder(format!("ws://{addr}/ws"))
        .user("hopeful")
        .reconnect(fast_reconnect())
        .welcome_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let mut events = switchboard_tests::record(&client);
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    events.wait_for("attempt 3", |e| matches!(e, Event::Connecting(3))).await;
    assert!(upgrades.load(Ordering::SeqCst) >= 3, "each attempt opened a socket");
    client.close().await;
    assert_eq!(connecting.await.unwrap(), Err(Error::Closed));
}

#[tokio::test]
async fn after_a_welcome_the_attempt_counter_starts_over() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let (_client, mut events) = connect(&server, "c").await;
    server.stop().await;
    events.wait_for("attempt 3", |e| matches!(e, Event::Connecting(3))).await;
    let server = TestServer::start_on(addr, test_config()).await;
    events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    let before = events.attempts();
    assert!(before.windows(2).all(|w| w[1] == w[0] + 1), "counted up while failing: {before:?}");
    server.stop().await;
    events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await;
    let next = events.wait_for("connecting", |e| matches!(e, Event::Connecting(_))).await;
    assert!(matches!(next, Event::Connecting(0)), "reset by the welcome: {next:?}");
}

#[tokio::test]
async fn requests_made_while_offline_are_delivered_once_after_reconnecting() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let (writer, mut writer_events) = connect(&server, "writer").await;
    writer.join("log").await.unwrap();
    server.stop().await;
    writer_events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await;

    // Queued while the hub is down; each future resolves once delivered.
    let queued: Vec<_> = (0..5)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.publish("log", "line", n).await })
        })
        .collect();
    let dm = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.send("writer", "note", "to self").await })
    };

    let _server = TestServer::start_on(addr, test_config()).await;
    for task in queued {
        task.await.unwrap().expect("queued publish acked after reconnect");
    }
    assert_eq!(dm.await.unwrap().unwrap(), 1);
    let mut lines = Vec::new();
    let mut notes = 0;
    while lines.len() < 5 || notes < 1 {
        let message = writer_events.next_message().await;
        match message.event.as_str() {
            "line" => lines.push(message.data.as_i64().unwrap()),
            "note" => notes += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // Exactly once: the queue's five lines, then a marker, nothing repeated.
    writer.publish("log", "marker", 0).await.unwrap();
    assert_eq!(writer_events.next_message().await.event, "marker");
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_full_offline_queue_fails_the_call_instead_of_dropping_silently() {
    let server = TestServer::start().await;
    let client = switchboard_sdk::Client::builder(server.ws_url())
        .user("q")
        .offline_queue(2)
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    // Never connected: everything waits in the queue. A request enters the
    // driver's inbox on its first poll, so polling once fixes the order.
    let mut first = Box::pin(client.publish("r", "e", 1));
    let mut second = Box::pin(client.publish("r", "e", 2));
    assert!(futures::poll!(&mut first).is_pending());
    assert!(futures::poll!(&mut second).is_pending());
    assert_eq!(
        client.publish("r", "e", 3).await,
        Err(Error::QueueFull { capacity: 2 }),
        "the third is refused at once, not dropped"
    );
    client.close().await;
    assert_eq!(first.await, Err(Error::Closed));
    assert_eq!(second.await, Err(Error::Closed));
}

#[tokio::test]
async fn the_client_gives_up_after_max_attempts() {
    // A port with nothing listening: bind, note the address, drop the listener.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let client = switchboard_sdk::Client::builder(format!("ws://{addr}/ws"))
        .user("nobody")
        .reconnect(ReconnectPolicy { max_attempts: 3, ..fast_reconnect() })
        .build()
        .unwrap();
    let mut events = switchboard_tests::record(&client);
    let result = tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap();
    assert!(matches!(result, Err(Error::GaveUp(_))), "{result:?}");
    assert_eq!(events.attempts(), vec![0, 1, 2], "three attempts, then no more");
    assert_eq!(client.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn without_reconnect_a_lost_connection_stays_lost() {
    let server = TestServer::start().await;
    let (client, mut events) = client(&server, "once", ReconnectPolicy::disabled());
    client.connect().await.unwrap();
    server.stop().await;
    let Event::Disconnected(lost) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert!(!lost.will_reconnect);
    assert_eq!(client.state(), ConnectionState::Disconnected);
}

#[tokio::test]
async fn disconnect_then_connect_resumes_the_rooms() {
    let server = TestServer::start().await;
    let (client, mut events) = connect(&server, "pat").await;
    client.join("den").await.unwrap();
    client.disconnect().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    switchboard_tests::eventually("pat offline", || async {
        let online: serde_json::Value = switchboard_tests::get_json(&server, "/api/online").await;
        (online["count"] == 0).then_some(())
    })
    .await;
    client.connect().await.unwrap();
    let (other, _) = connect(&server, "sam").await;
    other.join("den").await.unwrap();
    other.publish("den", "hello", 1).await.unwrap();
    assert_eq!(events.next_message().await.event, "hello");
}

#[tokio::test]
async fn a_request_times_out_when_the_server_never_answers() {
    // A TCP listener that accepts and never speaks: the upgrade never completes.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let client = switchboard_sdk::Client::builder(format!("ws://{addr}/ws"))
        .user("patient")
        .request_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    assert_eq!(client.publish("r", "e", 1).await, Err(Error::Timeout));
    client.close().await;
    assert_eq!(connecting.await.unwrap(), Err(Error::Closed));
}
