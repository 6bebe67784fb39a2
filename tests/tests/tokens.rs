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
    assert!(matches!(result, Err(Error::GaveUp(_))), "{result:?}");
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
    assert!(matches!(result, Err(Error::GaveUp(_))), "{result:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "asked once more, got the same token, stopped");
}
