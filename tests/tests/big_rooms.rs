//! Big rooms over real sockets: a join costs the same whatever the room's
//! size (a capped member list, a count and a cursor), the rest of the
//! members is read page by page (frame and HTTP), and a room past the
//! large-room threshold reports counts instead of every join and leave,
//! while every member still ends with the true view of who is present; a
//! member that stops reading is cut off without costing the others a message.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::Value;
use switchboard_protocol::{CloseCode, ErrorCode, PresenceAction};
use switchboard_sdk::{Client, Error};
use switchboard_tests::{
    Event, Events, RawTcp, TIMEOUT, TestServer, connect, get_json, http, raw_connect, raw_send,
    test_config,
};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn user(n: usize) -> String {
    format!("user-{n:03}")
}

/// `count` SDK clients, user-000 upwards, connected (not joined).
async fn crowd(server: &TestServer, count: usize) -> Vec<(Client, Events)> {
    futures::future::join_all((0..count).map(|n| async move { connect(server, &user(n)).await }))
        .await
}

#[tokio::test]
async fn a_join_lists_a_capped_page_and_the_rest_is_read_page_by_page() {
    let mut config = test_config();
    config.rooms.join_ack_members = 5;
    let server = TestServer::start_with(config).await;
    let mut clients = crowd(&server, 23).await;
    for (client, _) in &clients[..22] {
        client.join("hall").await.unwrap();
    }
    let (last, last_events) = &mut clients[22];
    let first = last.join("hall").await.unwrap();
    assert_eq!(first, (0..5).map(user).collect::<Vec<_>>(), "the first five, in byte order");
    let Event::Joined(joined) =
        last_events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    assert_eq!((joined.members.len(), joined.member_count, joined.large), (5, 23, false));

    let everyone: Vec<String> = (0..23).map(user).collect();
    assert_eq!(last.members("hall").await.unwrap(), everyone, "members() follows the cursors");
    let page = last.members_page("hall", Some(&user(19)), Some(2)).await.unwrap();
    assert_eq!(page.members, [user(20), user(21)]);
    assert_eq!((page.member_count, page.cursor.as_deref()), (23, Some(user(21).as_str())));
    let tail = last.members_page("hall", page.cursor.as_deref(), Some(2)).await.unwrap();
    assert_eq!((tail.members, tail.cursor), (vec![user(22)], None));

    // Over HTTP, three pages of ten.
    let mut seen = Vec::new();
    let mut path = "/api/rooms/hall/members?limit=10".to_owned();
    for pages in 1.. {
        let page = get_json(&server, &path).await;
        assert_eq!(page["member_count"], 23);
        seen.extend(
            page["members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_owned()),
        );
        match page["cursor"].as_str() {
            Some(cursor) => path = format!("/api/rooms/hall/members?limit=10&cursor={cursor}"),
            None => {
                assert_eq!(pages, 3);
                break;
            }
        }
    }
    assert_eq!(seen, everyone);
    let detail = get_json(&server, "/api/rooms/hall").await;
    assert_eq!(
        (detail["members"].as_array().unwrap().len(), detail["member_count"].clone()),
        (5, Value::from(23))
    );
    assert_eq!(detail["cursor"], user(4));

    let missing = http().get(server.http("/api/rooms/nowhere/members")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let typo = http().get(server.http("/api/rooms/hall/members?cursr=x")).send().await.unwrap();
    assert_eq!(typo.status().as_u16(), 400);

    // Only members read the member list over the WebSocket.
    let (outsider, _) = connect(&server, "outsider").await;
    match outsider.members_page("hall", None, None).await {
        Err(Error::Server { code, .. }) => assert_eq!(code, ErrorCode::NOT_JOINED),
        other => panic!("expected 201, got {other:?}"),
    }
}

/// What one member believes about a room, from the events it received.
#[derive(Default, Debug)]
struct View {
    names: BTreeSet<String>,
    count: Option<u64>,
    large: bool,
}

impl View {
    fn apply(&mut self, event: &Event) {
        match event {
            Event::Joined(joined) => {
                self.names = joined.members.iter().cloned().collect();
                self.count = Some(joined.member_count);
                self.large = joined.large;
            }
            Event::Presence(presence) => match presence.action {
                PresenceAction::Join => {
                    self.names.insert(presence.user.clone());
                }
                PresenceAction::Leave => {
                    self.names.remove(&presence.user);
                }
            },
            Event::Occupancy(occupancy) => {
                self.large = true;
                self.count = Some(occupancy.count);
            }
            _ => {}
        }
    }
}

/// Applies `events` until the view's count is `count`; the presence frames seen.
async fn settle(events: &mut Events, view: &mut View, count: u64) -> usize {
    let mut presence_frames = 0;
    while view.count != Some(count) || !view.large {
        let event = events
            .wait_for("presence, occupancy or joined", |e| {
                matches!(e, Event::Presence(_) | Event::Occupancy(_) | Event::Joined(_))
            })
            .await;
        presence_frames += usize::from(matches!(event, Event::Presence(_)));
        view.apply(&event);
    }
    presence_frames
}

#[tokio::test]
async fn a_room_past_the_threshold_counts_and_every_member_ends_with_the_true_view() {
    const LARGE: usize = 8;
    const FILL: usize = 40;
    let mut config = test_config();
    config.rooms.large_room = LARGE;
    config.rooms.occupancy_interval_ms = 50;
    let server = TestServer::start_with(config).await;
    let mut clients = crowd(&server, FILL).await;

    // The first LARGE join one by one: a small room names each arrival.
    for (client, _) in &clients[..LARGE] {
        client.join("arena").await.unwrap();
    }
    let (_, first_events) = &mut clients[0];
    let mut early = View::default();
    while early.names.len() < LARGE {
        let event = first_events.next().await;
        early.apply(&event);
    }
    assert_eq!(early.names, (0..LARGE).map(user).collect(), "names while small");
    assert!(!early.large);

    // The rest arrive at once: the room goes large and counts.
    let joins = clients[LARGE..].iter().map(|(client, _)| client.join("arena"));
    for members in futures::future::join_all(joins).await {
        members.unwrap();
    }
    let everyone: BTreeSet<String> = (0..FILL).map(user).collect();
    for (n, (client, events)) in clients.iter_mut().enumerate() {
        let mut view = if n == 0 { std::mem::take(&mut early) } else { View::default() };
        let named = settle(events, &mut view, FILL as u64).await;
        assert!(view.large, "{}: told the room is large", user(n));
        // Past the threshold nobody is named one by one: at most the
        // LARGE - 1 arrivals a small room announces reach anyone.
        assert!(named < LARGE, "{}: {named} presence frames", user(n));
        let members: BTreeSet<String> =
            client.members("arena").await.unwrap().into_iter().collect();
        assert_eq!(members, everyone, "{}: the full list by pages", user(n));
    }

    // Leaves are counted too, and a late joiner learns the count from its ack.
    let leavers: Vec<_> = clients.drain(FILL - 10..).collect();
    for (client, _) in &leavers {
        client.leave("arena").await.unwrap();
    }
    for (n, (_, events)) in clients.iter_mut().enumerate() {
        let mut view = View { large: true, ..View::default() };
        let named = settle(events, &mut view, (FILL - 10) as u64).await;
        assert_eq!(named, 0, "{}: no leave named in a large room", user(n));
    }
    let (late, mut late_events) = connect(&server, "late").await;
    late.join("arena").await.unwrap();
    let Event::Joined(joined) =
        late_events.wait_for("joined", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    assert_eq!((joined.member_count, joined.large), ((FILL - 10 + 1) as u64, true));
    let stats = get_json(&server, "/api/rooms/arena").await;
    assert_eq!(
        (stats["member_count"].clone(), stats["large"].clone()),
        (Value::from(FILL - 10 + 1), Value::Bool(true))
    );
}

#[tokio::test]
async fn a_member_that_stops_reading_is_cut_off_and_the_rest_of_the_room_gets_everything() {
    const MEMBERS: usize = 50;
    const AFTER_THE_CUT: u64 = 20;
    let mut config = test_config();
    config.limits.max_message_bytes = 16 * 1024;
    config.limits.outbound_queue_bytes = 64 * 1024;
    config.limits.messages_per_sec = 100_000;
    config.rooms.publish_requires_join = false;
    let server = TestServer::start_with(config).await;

    // Every reading member checks that it gets each message once, in order,
    // and ends at the `last` one. It reports its progress, so the publisher
    // goes as fast as the readers in this (debug) process can follow,
    // whatever the machine: a lagging reader must not be taken for a
    // stalled one.
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..MEMBERS).map(|_| AtomicU64::new(0)).collect());
    let moved = Arc::new(Notify::new());
    let mut readers = Vec::new();
    for n in 0..MEMBERS {
        let url = format!("{}?user_id={}&room=stream", server.ws_url(), user(n));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.expect("member connects");
        let (progress, moved) = (progress.clone(), moved.clone());
        readers.push(tokio::spawn(async move {
            let mut next = 0u64;
            loop {
                let frame = match tokio::time::timeout(TIMEOUT, socket.next()).await {
                    Ok(Some(Ok(WsMessage::Text(text)))) => text,
                    Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
                    other => panic!("member lost its stream at {next}: {other:?}"),
                };
                let frame: Value = serde_json::from_str(&frame).unwrap();
                if frame["type"] != "message" {
                    continue;
                }
                if frame["event"] == "last" {
                    return next;
                }
                assert_eq!(frame["data"]["n"], next, "in order, none missing, none twice");
                next += 1;
                progress[n].store(next, Ordering::Release);
                moved.notify_waiters();
            }
        }));
    }
    let slowest = || progress.iter().map(|p| p.load(Ordering::Acquire)).min().unwrap_or(0);
    let mut stalled =
        RawTcp::connect_with_window(&server, "user_id=stalled&room=stream", 4096).await;
    let (mut publisher, _) = raw_connect(&server, "publisher").await;
    let pad = "z".repeat(12 * 1024);
    let publish = |n: u64, event: &str| {
        format!(
            r#"{{"type":"publish","room":"stream","event":"{event}","data":{{"n":{n},"pad":"{pad}"}}}}"#
        )
    };
    let mut sent = 0u64;
    let mut cut_at = None;
    while sent < 5_000 {
        // At most 4 messages (48 KiB) ahead of the slowest reader.
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let notified = moved.notified();
                if slowest() + 4 >= sent {
                    break;
                }
                notified.await;
            }
        })
        .await
        .expect("the readers keep up");
        raw_send(&mut publisher, &publish(sent, "x")).await;
        sent += 1;
        if cut_at.is_none() && sent % 10 == 0 {
            let stats = get_json(&server, "/api/stats").await;
            if stats["slow_consumers_total"] == 1 {
                cut_at = Some(sent);
            }
        }
        if cut_at.is_some_and(|at| sent >= at + AFTER_THE_CUT) {
            break;
        }
    }
    let cut_at = cut_at.expect("the member that stopped reading was cut off");
    raw_send(&mut publisher, &publish(sent, "last")).await;
    for reader in readers {
        assert_eq!(reader.await.unwrap(), sent, "every reading member got all {sent} messages");
    }
    // The stalled member's backlog is bounded by its queue, and its
    // connection ends with the slow-consumer code once it reads again.
    let mut buffered = 0u64;
    let code = loop {
        match stalled.next_frame().await {
            Some(frame) if frame.opcode == 8 => break frame.close_code(),
            Some(_) => buffered += 1,
            None => break None,
        }
    };
    assert!(buffered < cut_at, "it was cut before everything reached it ({buffered} of {sent})");
    if let Some(code) = code {
        assert_eq!(code, CloseCode::SLOW_CONSUMER.0);
    }
    let stats = get_json(&server, "/api/stats").await;
    assert_eq!(stats["slow_consumers_total"], 1, "nobody else was cut off");
}
