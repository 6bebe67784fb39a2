//! The native SDK where production differs from a demo (issue 28): TLS,
//! failures that end, deadlines on every wait, order kept across repeated
//! drops, offline requests that time out, pacing to the hub's rate, and
//! the events `disconnect()` and `close()` owe the app. Against the real
//! hub where it can show the behaviour, against a [`ScriptedHub`] where
//! only a hub misbehaving on cue can.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use serde_json::json;
use switchboard_protocol::{ClientFrame, CloseCode, ErrorCode, ServerFrame};
use switchboard_sdk::{Client, Error, Heartbeat, MAX_TIMER};
use switchboard_tests::scripted::welcome;
use switchboard_tests::{
    Event, ScriptedHub, TIMEOUT, TestServer, TlsFront, connect, fast_reconnect, raw_connect,
    raw_next, raw_send, record, test_config,
};
use tokio::time::timeout;

// ---- TLS ----

#[tokio::test]
async fn wss_reaches_a_hub_behind_tls_whose_root_the_app_adds() {
    let server = TestServer::start().await;
    let front = TlsFront::start(server.addr).await;
    let client = Client::builder(front.wss_url())
        .user("alice")
        .add_root_certificates(front.ca_pem.clone())
        .build()
        .unwrap();
    let mut events = record(&client);
    timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    client.join("tls").await.unwrap();
    client.publish("tls", "hello", json!({"over": "tls"})).await.unwrap();
    let message = events.next_message().await;
    assert_eq!((message.event.as_str(), &message.data), ("hello", &json!({"over": "tls"})));
    client.close().await;
}

#[tokio::test]
async fn an_untrusted_certificate_fails_connect_at_once_with_a_tls_error() {
    let server = TestServer::start().await;
    let front = TlsFront::start(server.addr).await;
    // Reconnecting without limit: only a terminal failure ends `connect()`.
    let client =
        Client::builder(front.wss_url()).user("alice").reconnect(fast_reconnect()).build().unwrap();
    let mut events = record(&client);
    let result = timeout(TIMEOUT, client.connect()).await.expect("connect() ends");
    assert!(matches!(result, Err(Error::Tls(_))), "{result:?}");
    let seen = events.drain();
    let attempts = seen.iter().filter(|e| matches!(e, Event::Connecting(_))).count();
    assert_eq!(attempts, 1, "not retried: {seen:?}");
    let errors: Vec<_> = seen.iter().filter(|e| matches!(e, Event::Error(_))).collect();
    assert!(matches!(errors[..], [Event::Error(Error::Tls(_))]), "one error, its kind: {seen:?}");
    client.close().await;
}

#[tokio::test]
async fn a_pem_without_a_certificate_is_refused_by_the_builder() {
    let built = Client::builder("wss://127.0.0.1:1/ws")
        .user("a")
        .add_root_certificates("not a certificate")
        .build();
    assert!(matches!(built, Err(Error::InvalidOptions(_))), "{built:?}");
}

// ---- failures that end ----

#[tokio::test]
async fn a_refused_upgrade_ends_connect_with_refused() {
    let server = TestServer::start().await;
    let url = format!("ws://{}/no-such-path", server.addr);
    let client = Client::builder(url).user("alice").reconnect(fast_reconnect()).build().unwrap();
    let result = timeout(TIMEOUT, client.connect()).await.expect("connect() ends");
    assert!(matches!(&result, Err(Error::Refused(reason)) if reason.contains("404")), "{result:?}");
    client.close().await;
}

#[tokio::test]
async fn options_the_platform_cannot_honour_are_refused_by_the_builder() {
    let too_long = MAX_TIMER + Duration::from_millis(1);
    let builder = || Client::builder("ws://127.0.0.1:1/ws").user("a");
    let refused = [
        builder().request_timeout(too_long).build(),
        builder().connect_timeout(too_long).build(),
        builder().request_timeout(Duration::ZERO).build(),
        builder()
            .reconnect(switchboard_sdk::ReconnectPolicy {
                max_delay: Duration::from_secs(u64::MAX / 4),
                ..Default::default()
            })
            .build(),
        builder()
            .reconnect(switchboard_sdk::ReconnectPolicy {
                min_delay: Duration::from_secs(10),
                max_delay: Duration::from_secs(1),
                ..Default::default()
            })
            .build(),
        builder()
            .heartbeat(Some(Heartbeat { interval: Duration::from_secs(1), timeout: too_long }))
            .build(),
        builder().header("bad name", "v").build(),
        builder().header("x-ok", "line\r\nbreak").build(),
    ];
    for (n, built) in refused.into_iter().enumerate() {
        assert!(matches!(built, Err(Error::InvalidOptions(_))), "case {n}: {built:?}");
    }
    let client = builder().request_timeout(MAX_TIMER).build().expect("the largest timer is fine");
    client.close().await;
}

// ---- deadlines ----

#[tokio::test]
async fn an_endpoint_that_stalls_the_upgrade_is_abandoned_for_the_next() {
    // Accepts TCP and never answers the upgrade.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stalled_url = format!("ws://{}/ws", stalled.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = stalled.accept().await {
            held.push(tcp);
        }
    });
    let server = TestServer::start().await;
    let client = Client::builder(stalled_url)
        .fallbacks([server.ws_url()])
        .user("alice")
        .connect_timeout(Duration::from_millis(300))
        .welcome_timeout(Duration::from_secs(10))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    timeout(TIMEOUT, client.connect()).await.expect("connected through the fallback").unwrap();
    let seen = events.drain();
    assert!(
        seen.iter().any(
            |e| matches!(e, Event::Error(Error::Transport(why)) if why.contains("connect timeout"))
        ),
        "the stalled attempt was abandoned for its timeout: {seen:?}"
    );
    client.close().await;
    held.abort();
}

/// Publishes `count` messages of `bytes` each without waiting for them.
fn flood(client: &Client, count: usize, bytes: usize) -> tokio::task::JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        let payload = "x".repeat(bytes);
        let _ = join_all((0..count).map(|_| client.publish("r", "big", &payload))).await;
    })
}

#[tokio::test]
async fn close_returns_promptly_while_the_hub_does_not_read() {
    let mut hub = ScriptedHub::start().await;
    let client = Client::builder(hub.ws_url())
        .user("alice")
        .heartbeat(None)
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut connection = hub.welcomed(&client).await;
    // 64 MiB the hub never reads: far more than both sockets' buffers.
    let publishing = flood(&client, 64, 1 << 20);
    // The first frame arrives: the client is writing.
    assert!(matches!(connection.frame().await, Some(ClientFrame::Publish { .. })));
    timeout(Duration::from_secs(5), client.close())
        .await
        .expect("close() is not stuck behind writes");
    publishing.abort();
    drop(connection);
}

#[tokio::test]
async fn the_heartbeat_fires_while_writes_are_stuck() {
    let mut hub = ScriptedHub::start().await;
    let client = Client::builder(hub.ws_url())
        .user("alice")
        .heartbeat(Some(Heartbeat {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
        }))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    let mut connection = hub.welcomed(&client).await;
    let publishing = flood(&client, 64, 1 << 20);
    assert!(matches!(connection.frame().await, Some(ClientFrame::Publish { .. })));
    let lost = events
        .wait_for(
            "disconnected",
            |e| matches!(e, Event::Disconnected(d) if d.reason.contains("heartbeat")),
        )
        .await;
    let Event::Disconnected(lost) = lost else { unreachable!() };
    assert!(lost.will_reconnect);
    publishing.abort();
    client.close().await;
}

#[tokio::test]
async fn close_abandons_a_token_provider_that_never_answers() {
    let hub = ScriptedHub::start().await;
    let client = Client::builder(hub.ws_url())
        .token_provider(|| async { std::future::pending::<Result<String, String>>().await })
        .build()
        .unwrap();
    let mut events = record(&client);
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    events.wait_for("connecting", |e| matches!(e, Event::Connecting(0))).await;
    timeout(Duration::from_secs(3), client.close()).await.expect("close() answers at once");
    let result = connecting.await.unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
}

#[tokio::test]
async fn a_token_provider_is_bounded_by_the_request_timeout() {
    let hub = ScriptedHub::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = Client::builder(hub.ws_url())
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { std::future::pending::<Result<String, String>>().await }
        })
        .request_timeout(Duration::from_millis(200))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    let error = events.wait_for("the provider's timeout", |e| matches!(e, Event::Error(_))).await;
    assert!(
        matches!(&error, Event::Error(Error::Transport(why)) if why.contains("did not answer within 200 ms")),
        "{error:?}"
    );
    events.wait_for("the next attempt", |e| matches!(e, Event::Connecting(1))).await;
    assert!(calls.load(Ordering::SeqCst) >= 2, "asked again");
    client.close().await;
    assert!(matches!(connecting.await.unwrap(), Err(Error::Closed)));
}

#[tokio::test]
async fn a_token_fetched_for_a_lost_connection_is_not_sent_on_the_next() {
    let mut hub = ScriptedHub::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, released) = tokio::sync::watch::channel(false);
    let (asked, mut asked_rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = calls.clone();
    let client = Client::builder(hub.ws_url())
        .token_provider(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let _ = asked.send(n);
            let mut released = released.clone();
            async move {
                if n == 1 {
                    // The refresh: answers only once its connection is gone.
                    let _ = released.wait_for(|go| *go).await;
                }
                Ok(format!("token-{n}"))
            }
        })
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    let mut first = hub.next().await;
    assert!(
        matches!(first.frame().await, Some(ClientFrame::Auth { token, .. }) if token == "token-0")
    );
    first.send(&welcome(None)).await;
    connecting.await.unwrap().unwrap();
    first.send(r#"{"type":"refresh","expires_in_ms":1000}"#).await;
    assert_eq!(asked_rx.recv().await, Some(0));
    assert_eq!(timeout(TIMEOUT, asked_rx.recv()).await.unwrap(), Some(1), "refresh asked");
    drop(first);
    let mut second = hub.next().await;
    assert!(
        matches!(second.frame().await, Some(ClientFrame::Auth { id: None, token, .. }) if token == "token-2")
    );
    second.send(&welcome(None)).await;
    release.send(true).unwrap();
    // Two round trips after the stale token was handed back.
    for room in ["probe-1", "probe-2"] {
        let joining = tokio::spawn({
            let client = client.clone();
            async move { client.join(room).await }
        });
        let id = match second.request().await {
            ClientFrame::Join { id, .. } => id.unwrap(),
            ClientFrame::Auth { token, .. } => panic!("{token} sent on a later connection"),
            other => panic!("unexpected {other:?}"),
        };
        second
            .send(&format!(r#"{{"type":"ack","id":"{id}","epoch":"e","offset":0,"members":[]}}"#))
            .await;
        joining.await.unwrap().unwrap();
    }
    client.close().await;
}

// ---- order and offline rules ----

/// The next `count` publishes' ids and data.
async fn read_publishes(
    connection: &mut switchboard_tests::scripted::Connection,
    count: usize,
) -> Vec<(String, serde_json::Value)> {
    let mut read = Vec::new();
    for _ in 0..count {
        match connection.request().await {
            ClientFrame::Publish { id, data, .. } => read.push((id.unwrap(), data)),
            other => panic!("unexpected {other:?}"),
        }
    }
    read
}

#[tokio::test]
async fn re_sent_publishes_keep_their_order_across_two_drops_in_a_row() {
    let mut hub = ScriptedHub::start().await;
    let client =
        Client::builder(hub.ws_url()).user("alice").reconnect(fast_reconnect()).build().unwrap();
    let mut connection = hub.welcomed(&client).await;
    let publishing = tokio::spawn({
        let client = client.clone();
        async move { join_all((0..20).map(|n| client.publish("r", "n", n))).await }
    });
    let order = read_publishes(&mut connection, 20).await;
    let data: Vec<_> = order.iter().map(|(_, data)| data.clone()).collect();
    assert_eq!(data, (0..20).map(|n| json!(n)).collect::<Vec<_>>(), "sent in call order");
    for drop_number in 1..=2 {
        drop(connection); // lost before any ack: everything is re-sent
        connection = hub.next().await;
        connection.send(&welcome(None)).await;
        let again = read_publishes(&mut connection, 20).await;
        assert_eq!(again, order, "after drop {drop_number} in a row: same ids, same order");
    }
    for (id, _) in &order {
        connection.ack(id).await;
    }
    let results = timeout(TIMEOUT, publishing).await.unwrap().unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    client.close().await;
}

#[tokio::test]
async fn an_offline_join_that_timed_out_is_never_sent() {
    let server = TestServer::start().await;
    let client = Client::builder(server.ws_url())
        .user("alice")
        .request_timeout(Duration::from_secs(1))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    let result = client.join("ghost").await;
    assert!(matches!(result, Err(Error::Timeout)), "{result:?}");
    timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    // Frames are handled in order: a rejoin of `ghost` would be answered
    // before this join is.
    client.join("probe").await.unwrap();
    let joined: Vec<String> = events
        .drain()
        .into_iter()
        .filter_map(|e| match e {
            Event::Joined(joined) => Some(joined.room),
            _ => None,
        })
        .collect();
    assert_eq!(joined, ["probe"]);
    client.close().await;
}

#[tokio::test]
async fn an_offline_leave_forgets_the_position_so_a_later_join_does_not_replay() {
    let server = TestServer::start().await;
    let (bob, _bob_events) = connect(&server, "bob").await;
    bob.join("r").await.unwrap();
    let (alice, mut events) = connect(&server, "alice").await;
    alice.join("r").await.unwrap();
    bob.publish("r", "m", "before").await.unwrap();
    assert_eq!(events.next_message().await.data, json!("before"));
    alice.disconnect().await;
    alice.leave("r").await.unwrap();
    bob.publish("r", "m", "while-away").await.unwrap();
    let joining = tokio::spawn({
        let alice = alice.clone();
        async move { alice.join("r").await }
    });
    timeout(TIMEOUT, alice.connect()).await.unwrap().unwrap();
    joining.await.unwrap().unwrap();
    bob.publish("r", "m", "after").await.unwrap();
    assert_eq!(
        events.next_message().await.data,
        json!("after"),
        "a fresh join starts from now; what was published while not a member is not replayed"
    );
    alice.close().await;
    bob.close().await;
}

// ---- pacing ----

#[tokio::test]
async fn the_flush_after_a_reconnect_is_paced_to_the_hub_s_rate() {
    let mut config = test_config();
    config.limits.messages_per_sec = 10; // bursts of 20
    config.limits.rate_abuse_threshold = 5;
    let server = TestServer::start_with(config).await;
    let client = Client::builder(server.ws_url())
        .user("alice")
        .request_timeout(Duration::from_secs(20))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    // 45 made offline, behind the join: more than two bursts' worth.
    let joining = tokio::spawn({
        let client = client.clone();
        async move { client.join("r").await }
    });
    tokio::task::yield_now().await;
    let publishing = tokio::spawn({
        let client = client.clone();
        async move { join_all((0..45).map(|n| client.publish("r", "n", n))).await }
    });
    tokio::task::yield_now().await;
    timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    joining.await.unwrap().unwrap();
    let results = timeout(Duration::from_secs(20), publishing).await.unwrap().unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let seen = events.drain();
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Error(_) | Event::Disconnected(_))),
        "no refusal, no 4002: {seen:?}"
    );
    client.close().await;
}

#[tokio::test]
async fn a_rate_refusal_names_the_request_it_refused() {
    let mut config = test_config();
    config.limits.messages_per_sec = 1; // bursts of 2
    let server = TestServer::start_with(config).await;
    let (mut socket, welcome) = raw_connect(&server, "mallory").await;
    assert_eq!(welcome.rate, Some(1), "the welcome says the rate");
    for id in ["a", "b", "c"] {
        raw_send(&mut socket, &format!(r#"{{"type":"ping","id":"{id}"}}"#)).await;
    }
    let mut refused = None;
    for _ in 0..3 {
        if let ServerFrame::Error(error) = raw_next(&mut socket).await {
            assert_eq!(error.code, ErrorCode::RATE_LIMITED);
            refused = error.id;
        }
    }
    assert_eq!(refused.as_deref(), Some("c"));
}

#[tokio::test]
async fn a_4002_close_grows_the_backoff_instead_of_resetting_it() {
    let mut hub = ScriptedHub::start().await;
    let client =
        Client::builder(hub.ws_url()).user("alice").reconnect(fast_reconnect()).build().unwrap();
    let mut events = record(&client);
    let mut first = hub.welcomed(&client).await;
    events.wait_for("connected", |e| matches!(e, Event::Connected)).await;
    let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: CloseCode::RATE_LIMITED.0.into(),
        reason: "sending too fast for too long".into(),
    };
    first.socket.close(Some(frame)).await.unwrap();
    let next = events.wait_for("the next attempt", |e| matches!(e, Event::Connecting(_))).await;
    assert!(matches!(next, Event::Connecting(1)), "after a 4002 it counts as a retry: {next:?}");
    let mut second = hub.next().await;
    second.send(&welcome(None)).await;
    events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    client.close().await;
}

// ---- what close() and disconnect() owe ----

#[tokio::test]
async fn close_fails_an_rpc_in_flight_with_closed() {
    let mut hub = ScriptedHub::start().await;
    let client = Client::builder(hub.ws_url()).user("alice").build().unwrap();
    let mut connection = hub.welcomed(&client).await;
    let calling = tokio::spawn({
        let client = client.clone();
        async move { client.rpc("slow", json!({})).await }
    });
    assert!(matches!(connection.request().await, ClientFrame::Rpc { .. }));
    client.close().await;
    let result = calling.await.unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
}

#[tokio::test]
async fn disconnect_and_close_tell_the_app_it_is_disconnected() {
    let server = TestServer::start().await;
    let (client, mut events) = connect(&server, "alice").await;
    client.disconnect().await;
    let Event::Disconnected(gone) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert!(!gone.will_reconnect);
    timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    client.close().await;
    let Event::Disconnected(gone) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert!(!gone.will_reconnect);
}
