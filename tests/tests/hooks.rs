//! The application's Rust hooks on a real hub: refusing and rewriting
//! messages, refusing joins and connections, hearing disconnects, and a
//! hook that panics or hangs refusing only its own action.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_protocol::{CloseCode, ErrorCode, ServerFrame};
use switchboard_server::hooks::{
    ConnectDecision, ConnectRequest, Decision, HookFuture, Hooks, MessageDecision, RpcReply,
};
use switchboard_server::{AppState, Identity};
use switchboard_tests::{
    TestServer, connect, raw_close_code, raw_connect, raw_next, raw_send, test_config,
};

/// The application of these tests.
#[derive(Default)]
struct Moderator {
    disconnects: Arc<Mutex<Vec<(String, String)>>>,
}

impl Hooks for Moderator {
    fn connect<'a>(&'a self, request: &'a ConnectRequest<'a>) -> HookFuture<'a, ConnectDecision> {
        Box::pin(async move {
            let user = &*request.identity.user;
            if user.starts_with("banned") {
                ConnectDecision::refuse("you are banned")
            } else if let Some(ticket) = user.strip_prefix("ticket-") {
                // The application decides who a ticket holder is, where,
                // and what the later hooks should know of the connection
                // (from the URL's own parameters and the request's headers).
                let plan = request.query.iter().find(|(name, _)| name == "plan");
                let version = request.headers.get("sec-websocket-version");
                ConnectDecision::Allow {
                    user: Some(format!("member-{ticket}")),
                    rooms: vec!["lobby".to_owned(), "members".to_owned()],
                    meta: Some(json!({
                        "plan": plan.map(|(_, value)| value.as_str()),
                        "websocket": version.and_then(|v| v.to_str().ok()),
                    })),
                }
            } else {
                ConnectDecision::allow()
            }
        })
    }

    fn join<'a>(&'a self, who: &'a Identity, room: &'a str) -> HookFuture<'a, Decision> {
        Box::pin(async move {
            match room {
                "staff" if &*who.user != "boss" => {
                    Decision::Refuse { code: ErrorCode(1403), message: "staff only".to_owned() }
                }
                "panics" => panic!("a bug in the application"),
                "hangs" => std::future::pending().await,
                _ => Decision::Allow,
            }
        })
    }

    fn publish<'a>(
        &'a self,
        _who: &'a Identity,
        _room: &'a str,
        event: &'a str,
        data: &'a Value,
        _encoding: Option<switchboard_server::Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            match (event, data.as_str()) {
                (_, Some(text)) if text.contains("spam") => MessageDecision::refuse("no spam"),
                ("shout", Some(text)) => MessageDecision::Replace(json!(text.to_lowercase())),
                _ => MessageDecision::Allow,
            }
        })
    }

    fn send<'a>(
        &'a self,
        who: &'a Identity,
        to: &'a str,
        _event: &'a str,
        _data: &'a Value,
        _encoding: Option<switchboard_server::Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            if to == "boss" && &*who.user != "assistant" {
                MessageDecision::refuse("write to the assistant")
            } else {
                MessageDecision::Allow
            }
        })
    }

    fn rpc<'a>(
        &'a self,
        who: &'a Identity,
        method: &'a str,
        data: &'a Value,
    ) -> HookFuture<'a, RpcReply> {
        Box::pin(async move {
            match method {
                "orders.total" => {
                    let order = data["order"].as_u64().unwrap_or(0);
                    RpcReply::Result(
                        json!({"order": order, "total": order * 10, "for": &*who.user}),
                    )
                }
                "orders.cancel" => RpcReply::Refuse {
                    code: ErrorCode(1409),
                    message: "already shipped".to_owned(),
                },
                "slow" => std::future::pending().await,
                "whoami" => RpcReply::Result(json!({
                    "user": &*who.user,
                    "meta": who.meta.as_deref(),
                })),
                other => RpcReply::no_handler(other),
            }
        })
    }

    fn disconnect<'a>(&'a self, who: &'a Identity, reason: &'a str) -> HookFuture<'a, ()> {
        Box::pin(async move {
            let entry = (who.user.to_string(), reason.to_owned());
            self.disconnects.lock().unwrap().push(entry);
        })
    }
}

async fn hub(moderator: Moderator) -> TestServer {
    let mut config = test_config();
    config.hooks.timeout_ms = 200;
    let state = AppState::new(config).unwrap();
    assert!(state.set_hooks(moderator));
    TestServer::start_state(state).await
}

/// The next answer (`ack` or `error`) on a raw socket, as JSON.
async fn answer(socket: &mut switchboard_tests::RawSocket) -> Value {
    loop {
        match raw_next(socket).await {
            ServerFrame::Presence(_) | ServerFrame::Message(_) => continue,
            frame => return serde_json::to_value(frame).unwrap(),
        }
    }
}

#[tokio::test]
async fn publish_and_send_hooks_refuse_or_rewrite_what_goes_out() {
    let server = hub(Moderator::default()).await;
    let (listener, mut heard) = connect(&server, "listener").await;
    listener.join("lobby").await.unwrap();
    let (mut socket, _) = raw_connect(&server, "talker").await;
    raw_send(&mut socket, r#"{"type":"join","id":"j","room":"lobby"}"#).await;
    assert_eq!(answer(&mut socket).await["type"], "ack");

    raw_send(
        &mut socket,
        r#"{"type":"publish","id":"1","room":"lobby","event":"shout","data":"HELLO"}"#,
    )
    .await;
    assert_eq!(answer(&mut socket).await["type"], "ack");
    assert_eq!(heard.next_message().await.data, json!("hello"), "rewritten by the hook");

    raw_send(
        &mut socket,
        r#"{"type":"publish","id":"2","room":"lobby","event":"chat","data":"buy spam"}"#,
    )
    .await;
    let refused = answer(&mut socket).await;
    assert_eq!(
        (refused["code"].clone(), refused["message"].clone()),
        (json!(205), json!("no spam"))
    );

    raw_send(&mut socket, r#"{"type":"send","id":"3","to":"boss","event":"dm","data":"hi"}"#).await;
    assert_eq!(answer(&mut socket).await["message"], "write to the assistant");

    raw_send(
        &mut socket,
        r#"{"type":"publish","id":"4","room":"lobby","event":"chat","data":"fine"}"#,
    )
    .await;
    assert_eq!(answer(&mut socket).await["type"], "ack");
    assert_eq!(heard.next_message().await.data, json!("fine"), "the refused one never went out");
}

#[tokio::test]
async fn join_and_connect_hooks_refuse_with_the_applications_words() {
    let server = hub(Moderator::default()).await;
    let (mut socket, _) = raw_connect(&server, "guest").await;
    raw_send(&mut socket, r#"{"type":"join","id":"j","room":"staff"}"#).await;
    let refused = answer(&mut socket).await;
    assert_eq!(
        (refused["code"].clone(), refused["message"].clone()),
        (json!(1403), json!("staff only"))
    );
    let (boss, _) = connect(&server, "boss").await;
    boss.join("staff").await.unwrap();

    let mut banned = switchboard_tests::raw_upgrade(&server, "banned-1").await;
    assert_eq!(raw_close_code(&mut banned).await, CloseCode::REFUSED.0);
}

#[tokio::test]
async fn a_hook_that_panics_or_hangs_refuses_its_action_only() {
    let server = hub(Moderator::default()).await;
    let (mut socket, _) = raw_connect(&server, "tester").await;
    raw_send(&mut socket, r#"{"type":"join","id":"p","room":"panics"}"#).await;
    let failed = answer(&mut socket).await;
    assert_eq!((failed["code"].clone(), failed["id"].clone()), (json!(302), json!("p")));
    let started = Instant::now();
    raw_send(&mut socket, r#"{"type":"join","id":"h","room":"hangs"}"#).await;
    let failed = answer(&mut socket).await;
    assert_eq!(failed["code"], 302);
    assert!(started.elapsed() < Duration::from_secs(2), "bounded by hooks.timeout_ms");
    // The same connection, and everyone else, carry on.
    raw_send(&mut socket, r#"{"type":"join","id":"ok","room":"lobby"}"#).await;
    assert_eq!(answer(&mut socket).await["type"], "ack");
    let (other, _) = connect(&server, "other").await;
    other.join("lobby").await.unwrap();
}

#[tokio::test]
async fn the_disconnect_hook_hears_every_ending() {
    let moderator = Moderator::default();
    let disconnects = moderator.disconnects.clone();
    let server = hub(moderator).await;
    let (client, _events) = connect(&server, "leaver").await;
    client.close().await;
    switchboard_tests::eventually("the hook heard it", || async {
        let heard = disconnects.lock().unwrap().clone();
        heard.iter().any(|(user, _)| user == "leaver").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_rpc_is_answered_by_the_applications_hook() {
    let server = hub(Moderator::default()).await;
    let (client, _events) = connect(&server, "shopper").await;
    let result = client.rpc("orders.total", json!({"order": 7})).await.unwrap();
    assert_eq!(result, json!({"order": 7, "total": 70, "for": "shopper"}));
    let refused = client.rpc("orders.cancel", json!({"order": 7})).await.unwrap_err();
    assert!(
        matches!(&refused, switchboard_sdk::Error::Server { code, message } if code.0 == 1409 && message == "already shipped"),
        "{refused:?}"
    );
    let unknown = client.rpc("orders.unknown", json!(null)).await.unwrap_err();
    assert!(
        matches!(unknown, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::NO_HANDLER)
    );
    let slow = client.rpc("slow", json!(null)).await.unwrap_err();
    assert!(
        matches!(slow, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::HOOK_FAILED)
    );
    assert!(client.rpc("bad\nname", json!(null)).await.is_err(), "names are checked");
}

#[tokio::test]
async fn a_hub_without_hooks_answers_an_rpc_with_no_handler() {
    let server = TestServer::start().await;
    let (client, _events) = connect(&server, "caller").await;
    let error = client.rpc("anything", json!(1)).await.unwrap_err();
    assert!(
        matches!(error, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::NO_HANDLER)
    );
}

#[tokio::test]
async fn sse_feeds_pass_the_connect_and_join_hooks() {
    let server = hub(Moderator::default()).await;
    let status = |path: &str| {
        let url = server.http(path);
        async move { switchboard_tests::http().get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/sse?user_id=banned-2&rooms=lobby").await, 403);
    assert_eq!(status("/sse?user_id=guest&rooms=staff").await, 403);
    assert_eq!(status("/sse?user_id=guest&rooms=panics").await, 503);
    let mut feed =
        switchboard_tests::SseReader::open(&server, "user_id=boss&rooms=staff", None).await;
    let (boss, _) = connect(&server, "boss").await;
    boss.join("staff").await.unwrap();
    boss.publish("staff", "memo", json!("hi")).await.unwrap();
    assert_eq!(feed.next_message().await.0, json!("hi"));
}

#[tokio::test]
async fn the_connect_hook_names_the_user_and_joins_initial_rooms() {
    let server = hub(Moderator::default()).await;
    let (mut socket, welcome) = raw_connect(&server, "ticket-42&plan=gold").await;
    assert_eq!(welcome.user, "member-42", "the application named the user");
    raw_send(&mut socket, r#"{"type":"rpc","id":"w","method":"whoami"}"#).await;
    let me = answer(&mut socket).await;
    assert_eq!(
        me["data"],
        json!({
            "user": "member-42",
            "meta": {"plan": "gold", "websocket": "13"},
        }),
        "the metadata set at connect reaches later hooks: {me}"
    );
    let (speaker, _) = connect(&server, "speaker").await;
    speaker.join("members").await.unwrap();
    speaker.publish("members", "news", json!("for members")).await.unwrap();
    loop {
        if let ServerFrame::Message(message) = raw_next(&mut socket).await {
            assert_eq!(message.data, json!("for members"), "joined at connect");
            break;
        }
    }
    let members = speaker.members("lobby").await;
    assert!(members.is_err(), "speaker is not in lobby; the ticket holder is");
    let online = switchboard_tests::get_json(&server, "/api/rooms/lobby/members").await;
    assert_eq!(online["members"], json!(["member-42"]));
}
