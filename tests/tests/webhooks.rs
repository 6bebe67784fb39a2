//! HTTP webhooks against a real backend the test stands up (an axum app on
//! a loopback port): the hub POSTs each hooked event, acts on the reply,
//! signs the body, and falls back as `on_error` says when the backend is
//! down or slow; a backend behind `https://` is verified (system roots and
//! `hooks.ca_pem`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use switchboard_protocol::{CloseCode, ErrorCode};
use switchboard_server::Config;
use switchboard_server::config::{OnError, WebhookConfig};
use switchboard_server::webhooks::signature;
use switchboard_tests::{
    TestServer, TlsFront, connect, eventually, raw_close_code, raw_send, raw_upgrade, test_config,
};

const SECRET: &str = "shared-with-the-backend";

/// Every call the backend got: (hook, body, whether the signature matched).
type Calls = Arc<Mutex<Vec<(String, Value, bool)>>>;

/// Whether `headers` sign `body` as the hub does: a timestamp within a
/// minute of now, and the HMAC of `<timestamp>.<body>`.
fn signed(headers: &HeaderMap, body: &str) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp = header("x-switchboard-timestamp");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let recent = timestamp.parse::<u64>().is_ok_and(|t| t.abs_diff(now.as_secs()) <= 60);
    recent
        && header("x-switchboard-signature")
            == signature(SECRET.as_bytes(), timestamp, body.as_bytes())
}

/// A backend application answering the hub's webhooks; returns its base URL.
async fn backend(calls: Calls) -> String {
    async fn hook(
        State(calls): State<Calls>,
        Path(name): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> Json<Value> {
        let signed = signed(&headers, &body);
        let event: Value = serde_json::from_str(&body).unwrap();
        calls.lock().unwrap().push((name.clone(), event.clone(), signed));
        Json(match (name.as_str(), event["user"].as_str().unwrap_or("")) {
            ("connect", user) if user.starts_with("banned") => {
                json!({"refuse": {"message": "banned"}})
            }
            ("connect", "guest") => json!({
                "user": "member-7",
                "rooms": ["lobby"],
                "meta": {"plan": event["query"]["plan"], "ws": event["headers"]["sec-websocket-version"]},
            }),
            ("join", _) if event["room"] == "vip" => {
                json!({"refuse": {"code": 1403, "message": "members only"}})
            }
            ("publish", _) if event["data"] == "spam" => json!({"refuse": {"message": "no spam"}}),
            ("publish", _) if event["event"] == "mangle" => json!({"data": "not base64!"}),
            ("publish", _) if event["event"] == "shout" => {
                json!({"data": event["data"].as_str().unwrap_or("").to_lowercase()})
            }
            ("rpc", _) if event["method"] == "add" => {
                json!({"data": event["data"]["a"].as_i64().unwrap() + event["data"]["b"].as_i64().unwrap()})
            }
            ("rpc", _) if event["method"] == "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                json!({})
            }
            _ => json!({}),
        })
    }
    let app =
        axum::Router::new().route("/hooks/{name}", axum::routing::post(hook)).with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks")
}

fn webhook(url: String) -> Option<WebhookConfig> {
    Some(WebhookConfig { url, timeout_ms: 500, ..WebhookConfig::default() })
}

fn hooked(base: &str) -> Config {
    let mut config = test_config();
    let hooks = &mut config.hooks;
    hooks.secret = Some(SECRET.to_owned());
    hooks.connect = webhook(format!("{base}/connect")).map(|connect| WebhookConfig {
        headers: vec!["Sec-WebSocket-Version".to_owned()],
        ..connect
    });
    hooks.join = webhook(format!("{base}/join"));
    hooks.publish = webhook(format!("{base}/publish"));
    hooks.rpc = webhook(format!("{base}/rpc"));
    hooks.disconnect = webhook(format!("{base}/disconnect"));
    config
}

#[tokio::test]
async fn a_backend_in_any_language_decides_through_webhooks() {
    let calls = Calls::default();
    let base = backend(calls.clone()).await;
    let server = TestServer::start_with(hooked(&base)).await;

    let (client, mut events) = connect(&server, "ann").await;
    client.join("lobby").await.unwrap();
    let refused = client.join("vip").await.unwrap_err();
    assert!(
        matches!(&refused, switchboard_sdk::Error::Server { code, message } if code.0 == 1403 && message == "members only"),
        "{refused:?}"
    );
    client.publish("lobby", "shout", json!("HELLO")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("hello"), "rewritten by the backend");
    let spam = client.publish("lobby", "chat", json!("spam")).await.unwrap_err();
    assert!(
        matches!(spam, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::REFUSED)
    );
    assert_eq!(client.rpc("add", json!({"a": 2, "b": 40})).await.unwrap(), json!(42));
    let mut banned = raw_upgrade(&server, "banned-bob").await;
    assert_eq!(raw_close_code(&mut banned).await, CloseCode::REFUSED.0);
    let (mut guest, welcome) = switchboard_tests::raw_connect(&server, "guest&plan=gold").await;
    assert_eq!(welcome.user, "member-7", "the backend named the user");
    raw_send(&mut guest, r#"{"type":"rpc","id":"1","method":"whoami"}"#).await;
    let whoami = eventually("the guest's rpc", || async {
        let calls = calls.lock().unwrap().clone();
        calls.into_iter().find(|(hook, body, _)| hook == "rpc" && body["method"] == "whoami")
    })
    .await;
    let members = switchboard_tests::get_json(&server, "/api/rooms/lobby/members").await;
    assert_eq!(members["members"], json!(["ann", "member-7"]), "and joined it to lobby");
    client.close().await;

    eventually("the disconnect webhook", || async {
        let calls = calls.lock().unwrap().clone();
        calls
            .iter()
            .any(|(hook, body, _)| hook == "disconnect" && body["user"] == "ann")
            .then_some(())
    })
    .await;
    let calls = calls.lock().unwrap().clone();
    assert!(calls.iter().all(|(_, _, signed)| *signed), "every call signed with the shared secret");
    // The connect call carries the listed headers only and the URL's
    // parameters; later calls of that connection carry the meta its reply set.
    let connect = calls.iter().find(|(hook, body, _)| hook == "connect" && body["user"] == "guest");
    let connect = &connect.unwrap().1;
    assert_eq!(connect["headers"], json!({"sec-websocket-version": "13"}), "{connect}");
    assert_eq!(connect["query"], json!({"user_id": "guest", "plan": "gold"}));
    assert_eq!(whoami.1["meta"], json!({"plan": "gold", "ws": "13"}), "{}", whoami.1);
    let publish = calls.iter().find(|(hook, _, _)| hook == "publish").unwrap();
    assert_eq!(
        publish.1,
        json!({"hook": "publish", "user": "ann", "room": "lobby", "event": "shout", "data": "HELLO"})
    );
}

#[tokio::test]
async fn a_backend_that_is_down_or_slow_refuses_or_allows_as_configured_in_bounded_time() {
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hooks/publish", listener.local_addr().unwrap())
    };
    let calls = Calls::default();
    let base = backend(calls.clone()).await;
    let mut config = test_config();
    config.hooks.publish = webhook(dead.clone());
    config.hooks.rpc = webhook(format!("{base}/rpc"));
    let refusing = TestServer::start_with(config.clone()).await;
    let (client, _) = connect(&refusing, "ann").await;
    client.join("lobby").await.unwrap();
    let started = Instant::now();
    let down = client.publish("lobby", "chat", json!("hi")).await.unwrap_err();
    assert!(
        matches!(down, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::HOOK_FAILED)
    );
    let slow = client.rpc("slow", json!(null)).await.unwrap_err();
    assert!(
        matches!(slow, switchboard_sdk::Error::Server { code, .. } if code == ErrorCode::HOOK_FAILED)
    );
    assert!(started.elapsed() < Duration::from_secs(3), "bounded: {:?}", started.elapsed());

    config.hooks.publish =
        Some(WebhookConfig { on_error: OnError::Allow, ..webhook(dead).unwrap() });
    let allowing = TestServer::start_with(config).await;
    let (client, mut events) = connect(&allowing, "ann").await;
    client.join("lobby").await.unwrap();
    client.publish("lobby", "chat", json!("through")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("through"));
}

#[tokio::test]
async fn only_the_rooms_a_webhook_names_reach_the_backend() {
    let calls = Calls::default();
    let base = backend(calls.clone()).await;
    let mut config = test_config();
    config.hooks.publish = Some(WebhookConfig {
        rooms: vec!["chat:*".to_owned()],
        ..webhook(format!("{base}/publish")).unwrap()
    });
    let server = TestServer::start_with(config).await;
    let (client, _) = connect(&server, "ann").await;
    for room in ["general", "chat:fr"] {
        client.join(room).await.unwrap();
        client.publish(room, "e", json!(room)).await.unwrap();
    }
    let rooms: Vec<Value> =
        calls.lock().unwrap().iter().map(|(_, body, _)| body["room"].clone()).collect();
    assert_eq!(rooms, [json!("chat:fr")]);
}

#[tokio::test]
async fn the_python_example_backend_answers_the_hub() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/webhooks/backend.py");
    let mut python = std::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    eventually("the Python backend listens", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
    })
    .await;
    let mut config = test_config();
    config.hooks.secret = Some(SECRET.to_owned());
    config.hooks.publish = webhook(format!("http://127.0.0.1:{port}/hooks/publish"));
    config.hooks.rpc = webhook(format!("http://127.0.0.1:{port}/hooks/rpc"));
    let server = TestServer::start_with(config).await;
    let (client, mut events) = connect(&server, "ann").await;
    client.join("lobby").await.unwrap();
    let long = client.publish("lobby", "chat", json!("x".repeat(2100))).await.unwrap_err();
    assert!(
        matches!(&long, switchboard_sdk::Error::Server { code, message } if *code == ErrorCode::REFUSED && message == "at most 2000 characters"),
        "{long:?}"
    );
    client.publish("lobby", "chat", json!("short")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("short"));
    assert!(client.rpc("time", json!(null)).await.unwrap().is_f64(), "the backend's clock");
    // A request captured once cannot be sent again later: the example
    // refuses a timestamp older than five minutes, and a fresh timestamp
    // does not match the old signature.
    let body = r#"{"hook":"rpc","user":"ann","method":"time","data":null}"#;
    let post = |timestamp: String, signature: String| {
        switchboard_tests::http()
            .post(format!("http://127.0.0.1:{port}/hooks/rpc"))
            .header("x-switchboard-timestamp", timestamp)
            .header("x-switchboard-signature", signature)
            .body(body)
            .send()
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let sign = |t: u64| signature(SECRET.as_bytes(), &t.to_string(), body.as_bytes());
    assert_eq!(post(now.to_string(), sign(now)).await.unwrap().status().as_u16(), 200);
    let old = now - 600;
    assert_eq!(post(old.to_string(), sign(old)).await.unwrap().status().as_u16(), 403, "replayed");
    assert_eq!(post(now.to_string(), sign(old)).await.unwrap().status().as_u16(), 403, "re-dated");
    let _ = python.kill();
    let _ = python.wait();
}

#[tokio::test]
async fn events_after_the_fact_arrive_in_order_once_the_backend_is_back() {
    // The backend refuses the first two deliveries (HTTP 500), then takes them.
    let received = Arc::new(Mutex::new((0u32, Vec::<Value>::new())));
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let received = received.clone();
                async move {
                    assert!(signed(&headers, &body), "event batches are signed");
                    let mut received = received.lock().unwrap();
                    received.0 += 1;
                    if received.0 <= 2 {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let batch: Value = serde_json::from_str(&body).unwrap();
                    received.1.extend(batch["events"].as_array().unwrap().iter().cloned());
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = test_config();
    config.hooks.secret = Some(SECRET.to_owned());
    config.hooks.events = Some(switchboard_server::config::EventsConfig {
        url,
        retry_max_ms: 200,
        ..Default::default()
    });
    let server = TestServer::start_with(config).await;
    let (ann, _) = connect(&server, "ann").await;
    ann.join("lobby").await.unwrap();
    ann.publish("lobby", "chat", json!("hi")).await.unwrap();
    ann.send("bob", "dm", json!("psst")).await.unwrap();
    ann.publish_bytes("lobby", "blob", vec![0u8, 1, 2]).await.unwrap();
    ann.close().await;

    let mut kinds = eventually("five events delivered", || async {
        let received = received.lock().unwrap().1.clone();
        (received.len() >= 5).then_some(received)
    })
    .await;
    // The bytes, as base64 text with their encoding.
    let blob = kinds.remove(3);
    assert_eq!(
        (blob["kind"].as_str(), blob["data"].as_str(), blob["encoding"].as_str()),
        (Some("published"), Some("AAEC"), Some("base64"))
    );
    assert!(kinds.iter().all(|event| event.get("encoding").is_none()), "JSON payloads have none");
    let summary: Vec<(String, Value)> =
        kinds.iter().map(|e| (e["kind"].as_str().unwrap().to_owned(), e["data"].clone())).collect();
    assert_eq!(
        summary,
        [
            ("online".to_owned(), Value::Null),
            ("published".to_owned(), json!("hi")),
            ("sent".to_owned(), json!("psst")),
            ("offline".to_owned(), Value::Null),
        ]
    );
    assert_eq!((kinds[1]["room"].clone(), kinds[1]["offset"].clone()), (json!("lobby"), json!(1)));
    assert!(received.lock().unwrap().0 >= 3, "retried after the failures");
    let metrics = switchboard_tests::http()
        .get(server.http("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("switchboard_events_delivered_total 5"), "{metrics}");
}

#[tokio::test]
async fn a_backend_behind_https_is_called_when_its_certificate_is_trusted_only() {
    let calls = Calls::default();
    let base = backend(calls.clone()).await;
    let upstream = base.trim_start_matches("http://").trim_end_matches("/hooks").parse().unwrap();
    // TLS terminated in front of the backend, with a certificate made now.
    let front = TlsFront::start(upstream).await;
    let https = format!("https://{}/hooks", front.addr);

    let mut trusting = hooked(&https);
    trusting.hooks.ca_pem = Some(front.ca_pem.clone());
    let server = TestServer::start_with(trusting).await;
    let (client, mut events) = connect(&server, "ann").await;
    client.join("lobby").await.unwrap();
    client.publish("lobby", "shout", json!("HELLO")).await.unwrap();
    assert_eq!(events.next_message().await.data, json!("hello"), "decided over https");
    let (mut guest, welcome) = switchboard_tests::raw_connect(&server, "guest").await;
    assert_eq!(welcome.user, "member-7", "the connect webhook answered over https");
    raw_send(&mut guest, r#"{"type":"ping","id":"p"}"#).await;
    assert!(calls.lock().unwrap().iter().all(|(_, _, signed)| *signed));

    // A hub that does not trust the certificate cannot reach the backend:
    // the connect webhook fails, and `on_error = "refuse"` refuses.
    let untrusting = TestServer::start_with(hooked(&https)).await;
    let mut refused = raw_upgrade(&untrusting, "bob").await;
    assert_eq!(raw_close_code(&mut refused).await, CloseCode::INTERNAL_ERROR.0);
    assert!(
        !calls.lock().unwrap().iter().any(|(_, body, _)| body["user"] == "bob"),
        "nothing reached the backend without a verified connection"
    );
}

#[tokio::test]
async fn the_publish_webhook_sees_bytes_as_base64_with_their_encoding_and_must_keep_them_so() {
    let calls = Calls::default();
    let base = backend(calls.clone()).await;
    let server = TestServer::start_with(hooked(&base)).await;
    let (client, mut events) = connect(&server, "ann").await;
    client.join("lobby").await.unwrap();
    client.publish_bytes("lobby", "blob", vec![0u8, 1, 2]).await.unwrap();
    assert_eq!(events.next_message().await.binary, Some(vec![0, 1, 2]));
    let publish = calls
        .lock()
        .unwrap()
        .iter()
        .find(|(hook, body, _)| hook == "publish" && body["event"] == "blob")
        .cloned();
    assert_eq!(
        publish.unwrap().1,
        json!({"hook": "publish", "user": "ann", "room": "lobby", "event": "blob", "data": "AAEC", "encoding": "base64"})
    );
    // A backend that answers bytes with text that is not base64 fails the
    // publish (302), and nothing goes out.
    let mangled = client.publish_bytes("lobby", "mangle", vec![1u8]).await.unwrap_err();
    assert!(
        matches!(&mangled, switchboard_sdk::Error::Server { code, .. } if *code == ErrorCode::HOOK_FAILED),
        "{mangled:?}"
    );
    client.publish("lobby", "after", json!(1)).await.unwrap();
    assert_eq!(events.next_message().await.event, "after", "the mangled message never went out");
}
