//! The session on an in-memory socket with a paused clock: heartbeats,
//! stalled and dropped peers, malformed frames, shutdown.

use super::*;
use crate::Config;
use futures::channel::mpsc;

struct Peer {
    to_session: mpsc::UnboundedSender<Result<WsMessage, tungstenite::Error>>,
    from_session: mpsc::UnboundedReceiver<WsMessage>,
    memory: crate::session::memory_socket::MemoryPeer,
}

impl Peer {
    fn send(&self, text: &str) {
        self.to_session.unbounded_send(Ok(WsMessage::Text(text.into()))).unwrap();
    }

    fn send_binary(&self, bytes: Vec<u8>) {
        self.to_session.unbounded_send(Ok(WsMessage::Binary(bytes.into()))).unwrap();
    }

    async fn next(&mut self) -> WsMessage {
        self.from_session.next().await.expect("session ended")
    }

    /// Everything the session wrote until it dropped its socket.
    async fn rest(&mut self) -> Vec<WsMessage> {
        let mut rest = Vec::new();
        while let Some(message) = self.from_session.next().await {
            rest.push(message);
        }
        rest
    }

    async fn next_frame(&mut self) -> ServerFrame {
        loop {
            match self.next().await {
                WsMessage::Text(text) => return serde_json::from_str(&text).unwrap(),
                WsMessage::Ping(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }
}

fn start(config: Config, user: &str) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
    start_with(config, user, |_| {})
}

/// Like [`start`], for a client that asked for batches (`?batch=1`).
fn start_batched(config: Config, user: &str) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
    start_session(config, user, |_| {}, true)
}

/// Like [`start`], with `before` applied to the client's end before the
/// session runs.
fn start_with(
    config: Config,
    user: &str,
    before: impl FnOnce(&crate::session::memory_socket::MemoryPeer),
) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
    start_session(config, user, before, false)
}

fn start_session(
    config: Config,
    user: &str,
    before: impl FnOnce(&crate::session::memory_socket::MemoryPeer),
    batch: bool,
) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
    let state = AppState::new(config).unwrap();
    let (peer, task) = join_session(&state, user, before, batch, false);
    (peer, state, task)
}

/// A session of `user` on a hub that runs already, for a client that asked
/// for `batch`es and speaks `binary` (or not).
fn join_session(
    state: &AppState,
    user: &str,
    before: impl FnOnce(&crate::session::memory_socket::MemoryPeer),
    batch: bool,
    binary: bool,
) -> (Peer, tokio::task::JoinHandle<()>) {
    let (socket, mut memory) = crate::session::memory_socket::pair();
    before(&memory);
    let (to_session, from_session) = (memory.to_session.clone(), {
        let (_, empty) = mpsc::unbounded();
        std::mem::replace(&mut memory.from_session, empty)
    });
    let session = Session::new(socket, state.clone(), Identity::trusted(user));
    let session = if batch { session.batched() } else { session };
    let session = if binary { session.speaking_binary() } else { session };
    let task = tokio::spawn(session.run(Start::default()));
    (Peer { to_session, from_session, memory }, task)
}

fn heartbeat(interval_ms: u64, timeout_ms: u64) -> Config {
    let mut config = Config::default();
    config.heartbeat.interval_ms = interval_ms;
    config.heartbeat.timeout_ms = timeout_ms;
    config
}

#[tokio::test(start_paused = true)]
async fn a_client_that_sends_but_never_reads_is_cut_off_after_the_timeout() {
    // Its own answers pile up, not queued deliveries: no outbound queue
    // overflows, so only the stalled write can tell.
    let (mut peer, state, task) = start(heartbeat(1_000, 2_500), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    let started = Instant::now();
    peer.memory.stop_reading();
    peer.send(r#"{"type":"ping","id":"1"}"#);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the session ends on its own")
        .unwrap();
    let elapsed = started.elapsed();
    // Noticed at the first tick past the timeout, then at most
    // CLOSE_LINGER spent trying to say goodbye.
    assert!(
        elapsed >= Duration::from_millis(2_500)
            && elapsed <= Duration::from_millis(3_500) + CLOSE_LINGER,
        "ended after {elapsed:?}"
    );
    assert_eq!(state.hub().connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_its_welcome_is_cut_off_after_the_timeout() {
    let (_peer, state, task) =
        start_with(heartbeat(1_000, 2_500), "alice", |peer| peer.stop_reading());
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the session ends on its own")
        .unwrap();
    assert_eq!(state.hub().connection_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_busy_client_that_reads_is_not_mistaken_for_a_stalled_one() {
    let (mut peer, state, _task) = start(heartbeat(1_000, 2_500), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    for n in 0..50 {
        peer.send(&format!(r#"{{"type":"ping","id":"{n}"}}"#));
        loop {
            match peer.next().await {
                WsMessage::Text(text) if text.contains("pong") => break,
                WsMessage::Ping(_) => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state.hub().connection_count(), 1, "still connected after 10 s");
}

#[tokio::test]
async fn a_connection_that_drops_without_a_close_frame_is_not_a_protocol_error() {
    let (mut peer, state, task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    let reset = tungstenite::Error::Protocol(
        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
    );
    peer.to_session.unbounded_send(Err(reset)).unwrap();
    task.await.unwrap();
    let rest = peer.rest().await;
    assert!(
        !rest.iter().any(|m| matches!(m, WsMessage::Close(_))),
        "no close frame (1002 or any) is sent to a vanished peer: {rest:?}"
    );
    assert_eq!(state.hub().connection_count(), 0);
}

#[test]
fn read_errors_map_to_what_they_are() {
    use tungstenite::error::ProtocolError;
    let flow = read_error_flow;
    let dropped = flow(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake));
    assert!(matches!(dropped, Flow::Gone(Ended::Dropped)), "{dropped:?}");
    let io = flow(tungstenite::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
    assert!(matches!(io, Flow::Gone(Ended::NetworkError)), "{io:?}");
    let violation = flow(tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient));
    assert!(matches!(violation, Flow::Close(CloseCode(1002), _)), "{violation:?}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_pinged_then_closed_after_the_timeout() {
    let mut config = Config::default();
    config.heartbeat.interval_ms = 1_000;
    config.heartbeat.timeout_ms = 2_500;
    let (mut peer, _state, task) = start(config, "alice");
    let started = Instant::now();
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    assert!(matches!(peer.next().await, WsMessage::Ping(_)));
    let close = loop {
        match peer.next().await {
            WsMessage::Ping(_) => continue,
            WsMessage::Close(frame) => break frame.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), CloseCode::HEARTBEAT_TIMEOUT.0);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(2_500) && elapsed <= Duration::from_millis(3_500),
        "closed after {elapsed:?}"
    );
    drop(peer);
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_client_that_answers_stays_connected() {
    let mut config = Config::default();
    config.heartbeat.interval_ms = 1_000;
    config.heartbeat.timeout_ms = 2_500;
    let (mut peer, state, _task) = start(config, "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    for _ in 0..10 {
        assert!(matches!(peer.next().await, WsMessage::Ping(_)));
        peer.to_session.unbounded_send(Ok(WsMessage::Pong(Default::default()))).unwrap();
    }
    assert_eq!(state.hub().connection_count(), 1, "still connected after 10 s");
}

#[tokio::test]
async fn malformed_frames_get_errors_and_the_session_goes_on() {
    let (mut peer, _state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    peer.send("{oops");
    match peer.next_frame().await {
        ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::MALFORMED),
        other => panic!("{other:?}"),
    }
    peer.send(r#"{"type":"join","id":"j","room":""}"#);
    match peer.next_frame().await {
        ServerFrame::Error(e) => {
            assert_eq!((e.code, e.id.as_deref()), (ErrorCode::INVALID_NAME, Some("j")))
        }
        other => panic!("{other:?}"),
    }
    peer.send(r#"{"type":"publish","id":"p","room":"general","event":"chat"}"#);
    match peer.next_frame().await {
        ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::NOT_JOINED),
        other => panic!("{other:?}"),
    }
    peer.send(r#"{"type":"ping","id":"7"}"#);
    assert_eq!(peer.next_frame().await, ServerFrame::Pong { id: Some("7".into()) });
}

#[tokio::test]
async fn shutdown_closes_with_going_away() {
    let (mut peer, state, task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    state.shutdown();
    match peer.next().await {
        WsMessage::Close(Some(frame)) => assert_eq!(u16::from(frame.code), CloseCode::GOING_AWAY.0),
        other => panic!("{other:?}"),
    }
    drop(peer);
    task.await.unwrap();
    assert_eq!(state.hub().connection_count(), 0);
}

#[test]
fn close_reasons_fit_a_control_frame() {
    assert_eq!(truncate_reason(&"é".repeat(100)).len(), 122);
}

#[tokio::test(start_paused = true)]
async fn a_server_side_join_and_leave_reach_the_connection_between_its_frames() {
    let (mut peer, state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    // A broadcast queued before the order is written before it, and the
    // order is carried out before the broadcast queued after it.
    state.broadcast("before", serde_json::Value::Null).await.unwrap();
    assert_eq!(state.join("alice", "lobby").await.unwrap(), 1);
    state.publish("lobby", "hello", serde_json::json!(1)).await.unwrap();
    assert!(matches!(peer.next_frame().await, ServerFrame::Message(m) if m.event == "before"));
    // The message published after `join` returned, but before the
    // connection carried the order out, is replayed right after `joined`,
    // which names the position before it.
    match peer.next_frame().await {
        ServerFrame::Joined(joined) => {
            assert_eq!(joined.room, "lobby");
            assert_eq!(joined.members, Some(vec!["alice".to_owned()]));
            assert_eq!(joined.member_count, Some(1));
            assert_eq!(joined.offset, 0);
        }
        other => panic!("expected `joined`, got {other:?}"),
    }
    assert!(
        matches!(peer.next_frame().await, ServerFrame::Message(m) if m.event == "hello" && m.offset == Some(1))
    );
    // The user's own join is announced to the room, itself included.
    assert!(matches!(peer.next_frame().await, ServerFrame::Presence(p) if p.user == "alice"));
    state.publish("lobby", "live", serde_json::json!(2)).await.unwrap();
    assert!(
        matches!(peer.next_frame().await, ServerFrame::Message(m) if m.event == "live" && m.offset == Some(2))
    );
    // A second join of a room it is in changes nothing and says nothing.
    assert_eq!(state.join("alice", "lobby").await.unwrap(), 1);
    assert_eq!(state.leave("alice", "lobby").await.unwrap(), 1);
    assert_eq!(peer.next_frame().await, ServerFrame::Left { room: "lobby".into() });
    assert!(!state.hub().is_member(1, "lobby") && state.hub().room_count() == 0);
    // Bad names are refused before anything is ordered.
    assert!(matches!(state.join("alice", "").await, Err(crate::ServerError::InvalidName { .. })));
    assert_eq!(state.join("nobody", "lobby").await.unwrap(), 0);
}

/// Five frames queued for `user` while its session is not running (the
/// runtime has one thread: the session runs only when the test waits).
fn queue_five(state: &AppState, user: &str) -> Vec<String> {
    let frames: Vec<String> = (0..5).map(|n| format!(r#"{{"type":"x","n":{n}}}"#)).collect();
    for frame in &frames {
        let target = crate::hub::Target::User(user.into());
        let kind = crate::hub::DeliveryKind::Message;
        state.hub().deliver(Delivery::new(target, frame.as_str().into(), kind));
    }
    frames
}

#[tokio::test(start_paused = true)]
async fn a_batching_client_gets_what_waited_in_one_message_split_by_newlines() {
    let (mut peer, state, _task) = start_batched(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    let frames = queue_five(&state, "alice");
    match peer.next().await {
        WsMessage::Text(text) => assert_eq!(text.as_str(), frames.join("\n")),
        other => panic!("expected one text message, got {other:?}"),
    }
    // A reply still comes alone, after what was queued before it.
    peer.send(r#"{"type":"ping","id":"p"}"#);
    assert!(matches!(peer.next_frame().await, ServerFrame::Pong { .. }));
}

/// Joins `room` and reads on until the presence of the client's own
/// arrival (queued, so written after the join's answer).
async fn join_and_settle(peer: &mut Peer, room: &str) {
    peer.send(&format!(r#"{{"type":"join","id":"j","room":"{room}"}}"#));
    loop {
        let WsMessage::Text(text) = peer.next().await else { continue };
        if text.contains(r#""type":"presence""#) {
            break;
        }
    }
}

/// A publish to a room the client is in: its ack, then its own message,
/// each a WebSocket message of its own (the protocol promises answers one,
/// batches or not; `next_frame` reads a whole message as one frame), and
/// both in one write.
async fn ack_then_own_message_in_one_write(batched: bool) {
    let start = if batched { start_batched } else { start };
    let (mut peer, _state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    join_and_settle(&mut peer, "general").await;
    let writes = peer.memory.writes();
    peer.send(r#"{"type":"publish","id":"p1","room":"general","event":"chat","data":1}"#);
    assert!(matches!(peer.next_frame().await, ServerFrame::Ack(ack) if ack.id == "p1"));
    assert!(matches!(peer.next_frame().await, ServerFrame::Message(m) if m.offset == Some(1)));
    assert_eq!(peer.memory.writes() - writes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_publish_ack_and_the_publishers_own_message_go_out_in_one_write() {
    ack_then_own_message_in_one_write(false).await;
}

#[tokio::test(start_paused = true)]
async fn a_batching_client_still_gets_the_ack_in_a_message_of_its_own() {
    ack_then_own_message_in_one_write(true).await;
}

#[tokio::test(start_paused = true)]
async fn publishes_committed_together_are_all_acked_before_their_messages() {
    let (mut peer, _state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    join_and_settle(&mut peer, "general").await;
    // Queued before the session reads them: gathered, committed together.
    for n in 1..=3 {
        peer.send(&format!(
            r#"{{"type":"publish","id":"p{n}","room":"general","event":"chat","data":{n}}}"#
        ));
    }
    let mut order = Vec::new();
    for _ in 0..6 {
        order.push(match peer.next_frame().await {
            ServerFrame::Ack(ack) => ack.id,
            ServerFrame::Message(message) => format!("m{}", message.offset.unwrap()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(order, ["p1", "p2", "p3", "m1", "m2", "m3"]);
}

#[tokio::test(start_paused = true)]
async fn without_batches_each_frame_is_its_own_message() {
    let (mut peer, state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    for frame in queue_five(&state, "alice") {
        match peer.next().await {
            WsMessage::Text(text) => assert_eq!(text.as_str(), frame),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn publishes_that_arrive_together_keep_their_order_and_their_answers_order() {
    // Everything below is queued before the session reads any of it, so
    // the publishes are gathered and committed together
    // (`publishing.rs`); a refused one, a malformed frame and a ping among
    // them are answered in their place.
    let (mut peer, _state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    peer.send(r#"{"type":"join","id":"j","room":"r"}"#);
    for n in 0..60 {
        match n {
            7 => peer.send(r#"{"type":"publish","id":"7","room":"bad name","event":"e","data":7}"#),
            12 => peer.send(r#"{"type":"publish","id":"12","room":"r""#),
            20 => peer.send(r#"{"type":"ping","id":"20"}"#),
            _ => peer.send(&format!(
                r#"{{"type":"publish","id":"{n}","room":"r","event":"e","data":{n}}}"#
            )),
        }
    }
    let mut answers = Vec::new();
    let mut delivered = Vec::new();
    while answers.len() < 61 {
        match peer.next_frame().await {
            ServerFrame::Ack(ack) => answers.push((ack.id, ack.offset)),
            ServerFrame::Error(error) => answers.push((error.id.unwrap_or_default(), None)),
            ServerFrame::Pong { id } => answers.push((id.unwrap(), None)),
            ServerFrame::Message(message) => {
                delivered.push((message.data.as_u64().unwrap(), message.offset.unwrap()));
            }
            ServerFrame::Joined(_) | ServerFrame::Presence(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let ids: Vec<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<String> =
        std::iter::once("j".to_owned()).chain((0..60).map(|n| n.to_string())).collect();
    // The malformed frame's error names no id (it could not be read).
    let expected: Vec<&str> =
        expected.iter().map(|id| if id == "12" { "" } else { id.as_str() }).collect();
    assert_eq!(ids, expected, "answers in the order of the requests");
    let offsets: Vec<u64> = answers.iter().skip(1).filter_map(|(_, offset)| *offset).collect();
    assert_eq!(offsets, (1..=57).collect::<Vec<u64>>(), "offsets in the order sent");
    while delivered.len() < 57 {
        if let ServerFrame::Message(message) = peer.next_frame().await {
            delivered.push((message.data.as_u64().unwrap(), message.offset.unwrap()));
        }
    }
    let sent: Vec<u64> = (0..60).filter(|n| ![7, 12, 20].contains(n)).collect();
    assert_eq!(delivered.iter().map(|(n, _)| *n).collect::<Vec<_>>(), sent);
    assert!(delivered.windows(2).all(|pair| pair[0].1 + 1 == pair[1].1));
}

#[tokio::test(start_paused = true)]
async fn a_replay_goes_out_several_messages_to_a_write() {
    let (mut peer, state, _task) = start(Config::default(), "alice");
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    // The stream's epoch, from a first join's answer.
    peer.send(r#"{"type":"join","id":"first","room":"history"}"#);
    let epoch = loop {
        if let ServerFrame::Ack(ack) = peer.next_frame().await {
            break ack.epoch.expect("a join's answer names the epoch");
        }
    };
    peer.send(r#"{"type":"leave","id":"left","room":"history"}"#);
    while !matches!(peer.next_frame().await, ServerFrame::Ack(ack) if ack.id == "left") {}
    for n in 0..10 {
        state.publish("history", "tick", serde_json::json!(n)).await.unwrap();
    }
    let writes = peer.memory.writes();
    let join = serde_json::json!({
        "type": "join", "id": "j", "room": "history", "since": {"epoch": epoch, "offset": 0}
    });
    peer.send(&join.to_string());
    // The replay comes before the join's answer.
    let mut replayed = Vec::new();
    loop {
        match peer.next_frame().await {
            ServerFrame::Message(m) => replayed.push(m.offset.unwrap()),
            ServerFrame::Ack(ack) if ack.id == "j" => break,
            _ => {}
        }
    }
    assert_eq!(replayed, (1..=10).collect::<Vec<u64>>());
    // The ten replayed messages in one write, then the answer (and perhaps
    // the client's own presence): not one write each.
    assert!(peer.memory.writes() - writes <= 3, "{} writes", peer.memory.writes() - writes);
}

/// Joins `room` and waits for the join's answer.
async fn joined(peer: &mut Peer, room: &str) {
    peer.send(&format!(r#"{{"type":"join","id":"in-{room}","room":"{room}"}}"#));
    while !matches!(peer.next_frame().await, ServerFrame::Ack(ack) if ack.id == format!("in-{room}"))
    {
    }
}

/// The next binary message, skipping text frames and pings.
async fn next_binary(peer: &mut Peer) -> Vec<u8> {
    loop {
        match peer.next().await {
            WsMessage::Binary(bytes) => return bytes.to_vec(),
            WsMessage::Text(_) | WsMessage::Ping(_) => continue,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bytes_published_in_a_binary_message_reach_binary_members_raw_and_json_ones_as_base64() {
    use switchboard_protocol::binary::{envelope, split_envelope};
    let state = AppState::new(Config::default()).unwrap();
    let (mut sender, _a) = join_session(&state, "ann", |_| {}, false, true);
    let (mut raw, _b) = join_session(&state, "bob", |_| {}, true, true);
    let (mut json, _c) = join_session(&state, "cy", |_| {}, false, false);
    for peer in [&mut sender, &mut raw, &mut json] {
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        joined(peer, "blobs").await;
    }
    let bytes: Vec<u8> = (0..=255).collect();
    sender.send_binary(envelope(
        r#"{"type":"publish","id":"p","room":"blobs","event":"png"}"#,
        &bytes,
    ));
    loop {
        match sender.next_frame().await {
            ServerFrame::Ack(ack) if ack.id == "p" => break,
            ServerFrame::Error(e) => panic!("{e:?}"),
            _ => {}
        }
    }
    let got = next_binary(&mut raw).await;
    let (header, payload) = split_envelope(&got).unwrap();
    assert_eq!(payload, &bytes[..]);
    let header: serde_json::Value = serde_json::from_str(header).unwrap();
    assert_eq!(header["type"], "message");
    assert_eq!((header["from"].as_str(), header["event"].as_str()), (Some("ann"), Some("png")));
    assert!(header.get("data").is_none() && header.get("encoding").is_none(), "{header}");
    let message = loop {
        if let ServerFrame::Message(message) = json.next_frame().await {
            break message;
        }
    };
    assert_eq!(message.encoding, Some(switchboard_protocol::Encoding::Base64));
    assert_eq!(message.data, serde_json::json!(switchboard_protocol::binary::to_base64(&bytes)));
    // The sender, in the room and speaking binary, gets its own bytes too.
    assert_eq!(split_envelope(&next_binary(&mut sender).await).unwrap().1, &bytes[..]);
}

#[tokio::test]
async fn binary_messages_are_refused_unless_asked_for_and_broken_ones_get_their_codes() {
    use switchboard_protocol::binary::envelope;
    let state = AppState::new(Config::default()).unwrap();
    let (mut text_only, _a) = join_session(&state, "ann", |_| {}, false, false);
    assert!(matches!(text_only.next_frame().await, ServerFrame::Welcome(_)));
    text_only.send_binary(envelope(r#"{"type":"publish","id":"p","room":"r","event":"e"}"#, b"x"));
    match text_only.next_frame().await {
        ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::BINARY_UNSUPPORTED),
        other => panic!("{other:?}"),
    }
    let (mut binary, _b) = join_session(&state, "bob", |_| {}, false, true);
    assert!(matches!(binary.next_frame().await, ServerFrame::Welcome(_)));
    for (message, code) in [
        (vec![0, 0, 1], ErrorCode::MALFORMED),
        (envelope("{", b""), ErrorCode::MALFORMED),
        (envelope(r#"{"type":"ping","id":"1"}"#, b""), ErrorCode::INVALID_FRAME),
        (
            envelope(r#"{"type":"send","id":"2","to":"x","event":"e","data":"AA=="}"#, b""),
            ErrorCode::INVALID_FRAME,
        ),
    ] {
        binary.send_binary(message);
        match binary.next_frame().await {
            ServerFrame::Error(e) => assert_eq!(e.code, code, "{}", e.message),
            other => panic!("{other:?}"),
        }
    }
    // Base64 text that is not base64 is refused in JSON too.
    binary.send(r#"{"type":"send","id":"3","to":"x","event":"e","data":"%%","encoding":"base64"}"#);
    match binary.next_frame().await {
        ServerFrame::Error(e) => {
            assert_eq!((e.code, e.id.as_deref()), (ErrorCode::INVALID_FRAME, Some("3")))
        }
        other => panic!("{other:?}"),
    }
    // And the connection goes on.
    binary.send(r#"{"type":"ping","id":"7"}"#);
    assert_eq!(binary.next_frame().await, ServerFrame::Pong { id: Some("7".into()) });
}

#[tokio::test(start_paused = true)]
async fn bytes_are_replayed_as_binary_messages_to_a_binary_client() {
    use switchboard_protocol::binary::split_envelope;
    let state = AppState::new(Config::default()).unwrap();
    let (mut peer, _task) = join_session(&state, "ann", |_| {}, false, true);
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    peer.send(r#"{"type":"join","id":"first","room":"h"}"#);
    let epoch = loop {
        if let ServerFrame::Ack(ack) = peer.next_frame().await {
            break ack.epoch.unwrap();
        }
    };
    peer.send(r#"{"type":"leave","id":"left","room":"h"}"#);
    while !matches!(peer.next_frame().await, ServerFrame::Ack(ack) if ack.id == "left") {}
    state.publish("h", "blob", vec![1u8, 2, 3]).await.unwrap();
    state.publish("h", "json", serde_json::json!({"n": 1})).await.unwrap();
    let join = serde_json::json!({"type": "join", "id": "j", "room": "h", "since": {"epoch": epoch, "offset": 0}});
    peer.send(&join.to_string());
    let got = next_binary(&mut peer).await;
    assert_eq!(split_envelope(&got).unwrap().1, &[1, 2, 3]);
    match peer.next_frame().await {
        ServerFrame::Message(m) => assert_eq!((m.offset, m.encoding), (Some(2), None)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_binary_publish_past_the_limit_in_base64_gets_202_and_a_flood_203_with_its_id() {
    use switchboard_protocol::binary::envelope;
    let mut config = Config::default();
    config.limits.max_message_bytes = 1024;
    config.limits.messages_per_sec = 1;
    let state = AppState::new(config).unwrap();
    let (mut peer, _task) = join_session(&state, "ann", |_| {}, false, true);
    assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
    // 800 bytes fit the limit raw, not as the 1,068 of base64 the hub keeps.
    peer.send_binary(envelope(
        r#"{"type":"publish","id":"big","room":"r","event":"e"}"#,
        &[0; 800],
    ));
    match peer.next_frame().await {
        ServerFrame::Error(e) => {
            assert_eq!((e.code, e.id.as_deref()), (ErrorCode::LIMIT_EXCEEDED, Some("big")))
        }
        other => panic!("{other:?}"),
    }
    // Past the rate (one a second, bursts of two), a binary frame is
    // refused by name, read from its header.
    for n in 0..4 {
        let header = format!(r#"{{"type":"publish","id":"f{n}","room":"r","event":"e"}}"#);
        peer.send_binary(envelope(&header, b"x"));
    }
    let mut limited = Vec::new();
    for _ in 0..4 {
        if let ServerFrame::Error(e) = peer.next_frame().await {
            if e.code == ErrorCode::RATE_LIMITED {
                limited.push(e.id.expect("the refusal names the request"));
            }
        }
    }
    assert!(!limited.is_empty() && limited.iter().all(|id| id.starts_with('f')), "{limited:?}");
}
