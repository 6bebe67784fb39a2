//! The SDK on a hub that requires tokens: the first frame carries it, the
//! provider keeps long connections alive across expiry, and a refused token
//! is not offered again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::json;
use switchboard_sdk::{Client, CloseCode, Error};
use switchboard_tests::{Event, TIMEOUT, TestServer, fast_reconnect, record, test_config};

const SECRET: &str = "sdk-token-secret";

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn token(user: &str, lifetime_secs: u64) -> String {
    let claims = json!({"sub": user, "exp": now() + lifetime_secs});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

async fn token_hub(refresh_before_ms: u64) -> TestServer {
    let mut config = test_config();
    config.auth.jwt_secret = Some(SECRET.into());
    config.auth.refresh_before_ms = refresh_before_ms;
    TestServer::start_with(config).await
}

#[tokio::test]
async fn a_token_names_the_user_and_never_rides_in_the_url() {
    let server = token_hub(30_000).await;
    let client = Client::builder(server.ws_url())
        .user("ignored")
        .token(token("alice", 600))
        .build()
        .unwrap();
    let mut events = record(&client);
    tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    assert_eq!(client.send("alice", "dm", "to myself").await.unwrap(), 1);
    let message = events.next_message().await;
    assert_eq!(message.from, "alice", "the hub took the user from the token");
}

#[tokio::test]
async fn the_provider_keeps_a_connection_alive_past_its_first_tokens_expiry() {
    let server = token_hub(2_000).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = Client::builder(server.ws_url())
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok(token("bob", 3)) }
        })
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    let connected_at = std::time::Instant::now();
    tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    // Past the first token's 3 s life, the connection is the same one.
    switchboard_tests::eventually("a refresh past the first expiry", || async {
        (connected_at.elapsed() > Duration::from_millis(3_500) && calls.load(Ordering::SeqCst) >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(client.send("bob", "dm", "still here").await.unwrap(), 1);
    let seen = events.drain();
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Disconnected(_))),
        "refreshed in band, never dropped: {seen:?}"
    );
}

#[tokio::test]
async fn a_refused_fixed_token_is_not_retried() {
    let server = token_hub(30_000).await;
    let forged =
        encode(&Header::default(), &json!({"sub": "eve"}), &EncodingKey::from_secret(b"wrong"))
            .unwrap();
    let client =
        Client::builder(server.ws_url()).token(forged).reconnect(fast_reconnect()).build().unwrap();
    let mut events = record(&client);
    let result = tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap();
    assert!(matches!(result, Err(Error::Refused(_))), "{result:?}");
    let Event::Disconnected(lost) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert_eq!(lost.code, Some(CloseCode::UNAUTHORIZED));
    assert!(!lost.will_reconnect);
}

#[tokio::test]
async fn a_provider_that_repeats_a_refused_token_gives_up() {
    let server = token_hub(30_000).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = Client::builder(server.ws_url())
        .token_provider(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok("not-a-token".to_owned()) }
        })
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let result = tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap();
    assert!(matches!(result, Err(Error::Refused(_))), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "asked once more, got the same token, stopped");
}

#[tokio::test]
async fn a_provider_whose_every_token_is_refused_ends_with_one_refused_error() {
    let server = token_hub(30_000).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = Client::builder(server.ws_url())
        .token_provider(move || {
            // A different forged token each time: never the same refusal twice.
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let claims = json!({"sub": "eve", "n": n, "exp": 4_000_000_000u64});
            let token =
                encode(&Header::default(), &claims, &EncodingKey::from_secret(b"wrong")).unwrap();
            async move { Ok(token) }
        })
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    let result = tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap();
    assert!(matches!(result, Err(Error::Refused(_))), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 3, "three refusals in a row end the attempts");
    let refused: Vec<_> = events
        .drain()
        .into_iter()
        .filter(|e| matches!(e, Event::Error(Error::Refused(_))))
        .collect();
    assert_eq!(refused.len(), 1, "one terminal error event: {refused:?}");
    assert!(!client.is_connected());
}

/// What the release binary, configured through its environment as a
/// deployment behind an identity provider would be, makes of a token: its
/// answer to `GET /ws?token=…` (the token is checked before the upgrade, so
/// a plain request shows it: 426 `not_websocket` once the token passed, 401
/// with the reason otherwise).
async fn verdict(hub: &switchboard_tests::HubProcess, claims: serde_json::Value) -> (u16, String) {
    let token = encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes()));
    let url = format!("{}?token={}", hub.http("/ws"), token.unwrap());
    let response = switchboard_tests::http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"]["message"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn tokens_as_identity_providers_make_them_audience_issuer_and_expiry() {
    use switchboard_tests::HubProcess;
    let hub = HubProcess::start_with(
        &[],
        &[
            ("SWITCHBOARD_AUTH__JWT_SECRET", SECRET),
            ("SWITCHBOARD_AUTH__AUDIENCE", "https://hub.example/ws"),
            ("SWITCHBOARD_AUTH__ISSUER", "https://idp.example/"),
        ],
    )
    .await;
    let (aud, iss) = ("https://hub.example/ws", "https://idp.example/");
    let exp = now() + 600;
    // As Auth0 or Keycloak make them: `aud` a string, or a list naming
    // this hub among others.
    let passed = (426, "`Connection` must include `upgrade`".to_owned());
    assert_eq!(
        verdict(&hub, json!({"sub": "a", "exp": exp, "aud": aud, "iss": iss})).await,
        passed
    );
    let list = json!({"sub": "a", "exp": exp, "aud": ["https://api.example", aud], "iss": iss});
    assert_eq!(verdict(&hub, list).await.0, 426);
    // A few seconds of clock skew pass; more do not.
    let skewed = json!({"sub": "a", "exp": now() - 2, "aud": aud, "iss": iss});
    assert_eq!(verdict(&hub, skewed).await.0, 426);
    let (status, why) =
        verdict(&hub, json!({"sub": "a", "exp": now() - 60, "aud": aud, "iss": iss})).await;
    assert_eq!((status, why.as_str()), (401, "the token has expired"));
    for (claims, reason) in [
        (json!({"sub": "a", "exp": exp, "aud": "https://other.example", "iss": iss}), "audience"),
        (json!({"sub": "a", "exp": exp, "iss": iss}), "`aud`"),
        (json!({"sub": "a", "exp": exp, "aud": aud, "iss": "https://evil.example/"}), "issuer"),
        (json!({"sub": "a", "exp": exp, "aud": aud}), "`iss`"),
        (json!({"sub": "a", "aud": aud, "iss": iss}), "`exp`"),
    ] {
        let (status, why) = verdict(&hub, claims.clone()).await;
        assert_eq!(status, 401, "{claims}");
        assert!(why.contains(reason), "{claims}: {why}");
    }
    drop(hub);

    // Without an audience configured, a token minted for some audience is
    // refused with what to set; and eternal tokens are a choice.
    let hub = HubProcess::start_with(
        &[],
        &[("SWITCHBOARD_AUTH__JWT_SECRET", SECRET), ("SWITCHBOARD_AUTH__REQUIRE_EXP", "false")],
    )
    .await;
    let (status, why) = verdict(&hub, json!({"sub": "a", "exp": exp, "aud": aud})).await;
    assert_eq!(status, 401);
    assert!(why.contains("auth.audience"), "{why}");
    assert_eq!(verdict(&hub, json!({"sub": "a"})).await.0, 426, "no `exp`, allowed here");
}

/// A connect hook that names the connection's user from the token's and
/// attaches metadata; an RPC that says who the connection is.
struct Renamer;

impl switchboard_server::hooks::Hooks for Renamer {
    fn connect<'a>(
        &'a self,
        request: &'a switchboard_server::hooks::ConnectRequest<'a>,
    ) -> switchboard_server::hooks::HookFuture<'a, switchboard_server::hooks::ConnectDecision> {
        let user = format!("member-{}", request.identity.user);
        Box::pin(async move {
            switchboard_server::hooks::ConnectDecision::Allow {
                user: Some(user),
                rooms: Vec::new(),
                meta: Some(json!({"plan": "gold"})),
            }
        })
    }

    fn rpc<'a>(
        &'a self,
        who: &'a switchboard_server::Identity,
        _method: &'a str,
        _data: &'a serde_json::Value,
    ) -> switchboard_server::hooks::HookFuture<'a, switchboard_server::hooks::RpcReply> {
        let data = json!({"user": &*who.user, "meta": who.meta.as_deref(), "exp": who.expires_at});
        Box::pin(async move { switchboard_server::hooks::RpcReply::Result(data) })
    }
}

/// A refreshed token keeps what the connect hook decided (the user it
/// named, the metadata) and must name the same subject as the first.
#[tokio::test]
async fn a_refresh_keeps_the_connect_hooks_user_and_metadata() {
    use switchboard_protocol::ServerFrame;
    use switchboard_tests::{raw_next, raw_send};
    let mut config = test_config();
    config.auth.jwt_secret = Some(SECRET.into());
    let state = switchboard_server::AppState::new(config).unwrap();
    assert!(state.set_hooks(Renamer));
    let server = TestServer::start_state(state).await;
    let url = format!("{}?token={}", server.ws_url(), token("ann", 600));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match raw_next(&mut socket).await {
        ServerFrame::Welcome(welcome) => assert_eq!(welcome.user, "member-ann"),
        other => panic!("expected welcome, got {other:?}"),
    }
    let later = token("ann", 1_200);
    raw_send(&mut socket, &json!({"type": "auth", "id": "r", "token": later}).to_string()).await;
    assert!(matches!(raw_next(&mut socket).await, ServerFrame::Ack(ack) if ack.id == "r"));
    raw_send(&mut socket, r#"{"type":"rpc","id":"w","method":"whoami"}"#).await;
    match raw_next(&mut socket).await {
        ServerFrame::Ack(ack) => {
            let data = ack.data.unwrap();
            assert_eq!(
                (data["user"].clone(), data["meta"].clone()),
                (json!("member-ann"), json!({"plan": "gold"}))
            );
            let exp = data["exp"].as_u64().unwrap();
            assert!(exp >= now() + 1_100, "the new token's expiry: {exp}");
        }
        other => panic!("expected the rpc's ack, got {other:?}"),
    }
    // Another subject's token changes nothing.
    let other = token("bob", 1_200);
    raw_send(&mut socket, &json!({"type": "auth", "id": "o", "token": other}).to_string()).await;
    match raw_next(&mut socket).await {
        ServerFrame::Error(error) => assert_eq!(error.message, "the new token is for another user"),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// An identity provider's key set endpoint, stood up by the test: it
/// serves whatever document the test sets and counts its fetches.
struct KeySetEndpoint {
    url: String,
    document: Arc<std::sync::RwLock<String>>,
    fetches: Arc<AtomicUsize>,
}

impl KeySetEndpoint {
    async fn start(document: String) -> KeySetEndpoint {
        let fetches = Arc::new(AtomicUsize::new(0));
        let document = Arc::new(std::sync::RwLock::new(document));
        let (count, served) = (fetches.clone(), document.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let body = served.read().unwrap().clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        KeySetEndpoint { url, document, fetches }
    }

    fn serve(&self, document: String) {
        *self.document.write().unwrap() = document;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// The test key set (server/testdata/jwks.json) keeping only the keys `ids`.
fn key_set(ids: &[&str]) -> String {
    let mut set: serde_json::Value =
        serde_json::from_str(include_str!("../../server/testdata/jwks.json")).unwrap();
    set["keys"].as_array_mut().unwrap().retain(|key| ids.contains(&key["kid"].as_str().unwrap()));
    set.to_string()
}

/// A token for `alice`, signed by the test's RSA or EC key and naming `kid`.
fn provider_token(algorithm: jsonwebtoken::Algorithm, kid: Option<&str>) -> String {
    let key = match algorithm {
        jsonwebtoken::Algorithm::ES256 => {
            EncodingKey::from_ec_pem(include_bytes!("../../server/testdata/ec-private.pem"))
        }
        _ => EncodingKey::from_rsa_pem(include_bytes!("../../server/testdata/rsa-private.pem")),
    };
    let header = Header { kid: kid.map(str::to_owned), ..Header::new(algorithm) };
    encode(&header, &json!({"sub": "alice", "exp": now() + 600}), &key.unwrap()).unwrap()
}

/// The release binary's answer to `GET /ws?token=…` (426 once the token
/// passed), with its error code and message otherwise.
async fn answer(hub: &switchboard_tests::HubProcess, token: &str) -> (u16, String, String) {
    let url = format!("{}?token={token}", hub.http("/ws"));
    let response = switchboard_tests::http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let field = |name: &str| body["error"][name].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

#[tokio::test]
async fn keys_come_from_the_identity_providers_key_set_and_follow_its_rotation() {
    use jsonwebtoken::Algorithm::{ES256, PS256, RS256};
    let provider = KeySetEndpoint::start(key_set(&["rsa-1"])).await;
    let hub = switchboard_tests::HubProcess::start_with(
        &[],
        &[
            ("SWITCHBOARD_AUTH__JWKS_URL", provider.url.as_str()),
            // The least interval: an unknown key id a second after the
            // last fetch fetches again. The default minute has a test of
            // its own below.
            ("SWITCHBOARD_AUTH__JWKS_MIN_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let passed = |answer: (u16, String, String)| answer.0 == 426;
    assert!(passed(answer(&hub, &provider_token(RS256, Some("rsa-1"))).await));
    // The provider has one RS256 key: a token without `kid` finds it.
    assert!(passed(answer(&hub, &provider_token(RS256, None)).await));
    // Its `alg` says RS256: the same key under PS256 is refused.
    let (status, code, why) = answer(&hub, &provider_token(PS256, Some("rsa-1"))).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"), "{why}");
    // A key the provider has not published yet is refused by its name…
    let (status, _, why) = answer(&hub, &provider_token(ES256, Some("ec-1"))).await;
    assert_eq!(status, 401);
    assert!(why.contains("`ec-1`"), "{why}");
    // …and accepted once it has: past the interval since the last fetch,
    // the unknown `kid` fetches the set again.
    provider.serve(key_set(&["rsa-1", "ec-1"]));
    let fetched = provider.fetches();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(passed(answer(&hub, &provider_token(ES256, Some("ec-1"))).await));
    assert_eq!(provider.fetches(), fetched + 1);
    // An HS256 token has no key here, whatever `kid` it names.
    let forged = encode(
        &Header { kid: Some("rsa-1".into()), ..Header::default() },
        &json!({"sub": "mallory", "exp": now() + 600}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    assert_eq!(answer(&hub, &forged).await.0, 401);

    // A whole connection on a provider's token, through the SDK.
    let client = Client::builder(hub.ws_url())
        .token(provider_token(ES256, Some("ec-1")))
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = record(&client);
    tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    assert_eq!(client.send("alice", "dm", "signed by the provider").await.unwrap(), 1);
    assert_eq!(events.next_message().await.from, "alice", "the user is the token's `sub`");
    client.close().await;
}

#[tokio::test]
async fn made_up_key_ids_do_not_make_the_hub_hammer_the_provider() {
    let provider = KeySetEndpoint::start(key_set(&["rsa-1"])).await;
    let hub = switchboard_tests::HubProcess::start_with(
        &[],
        &[("SWITCHBOARD_AUTH__JWKS_URL", provider.url.as_str())],
    )
    .await;
    // The fetch at start.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while provider.fetches() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the key set was never fetched");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        answer(&hub, &provider_token(jsonwebtoken::Algorithm::RS256, Some("rsa-1"))).await.0,
        426
    );
    for n in 0..20 {
        let kid = format!("made-up-{n}");
        let token = provider_token(jsonwebtoken::Algorithm::RS256, Some(&kid));
        assert_eq!(answer(&hub, &token).await.0, 401);
    }
    // Within a minute of the last fetch, none of them fetched again.
    assert_eq!(provider.fetches(), 1);
}

#[tokio::test]
async fn a_hub_whose_provider_cannot_be_reached_answers_503_which_clients_retry() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let hub = switchboard_tests::HubProcess::start_with(
        &[],
        &[("SWITCHBOARD_AUTH__JWKS_URL", url.as_str())],
    )
    .await;
    let token = provider_token(jsonwebtoken::Algorithm::RS256, Some("rsa-1"));
    let (status, code, _) = answer(&hub, &token).await;
    assert_eq!((status, code.as_str()), (503, "keys_unavailable"));
}
