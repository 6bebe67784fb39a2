//! SDK options that only a hand-made hub can observe: the upgrade request's
//! headers and query, and the client's own heartbeat noticing a silent hub.

use std::time::Duration;

use futures::SinkExt;
use switchboard_sdk::{Client, Heartbeat, ReconnectPolicy};
use switchboard_tests::{Event, TIMEOUT, record};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const WELCOME: &str =
    r#"{"type":"welcome","session":"fake","user":"alice","protocol":1,"heartbeat_ms":25000}"#;

/// A hub that records each upgrade request, sends `welcome`, then never
/// reads or writes again.
async fn silent_hub() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Request>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (requests, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let requests = requests.clone();
            // The error type is tungstenite's `ErrorResponse`, fixed by its `Callback` trait.
            #[allow(clippy::result_large_err)]
            let callback = move |request: &Request, response: Response| {
                let _ = requests.send(request.clone());
                Ok(response)
            };
            if let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                let _ = socket.send(Message::Text(WELCOME.into())).await;
                held.push(socket);
            }
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn custom_headers_and_the_user_id_reach_the_upgrade_request() {
    let (addr, mut requests) = silent_hub().await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .user("alice smith")
        .header("x-tenant", "acme")
        .header("authorization", "Bearer t0k3n")
        .build()
        .unwrap();
    tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    let request = requests.recv().await.unwrap();
    assert_eq!(request.uri().path(), "/ws");
    // The SDK asks for batched messages (several frames to a message) and
    // speaks binary (bytes as binary messages).
    assert_eq!(request.uri().query(), Some("user_id=alice+smith&batch=1&binary=1"));
    assert_eq!(request.headers()["x-tenant"], "acme");
    assert_eq!(request.headers()["authorization"], "Bearer t0k3n");
    client.close().await;
}

#[tokio::test]
async fn the_client_heartbeat_drops_a_silent_hub_and_reconnects() {
    let (addr, mut requests) = silent_hub().await;
    let client = Client::builder(format!("ws://{addr}/ws"))
        .user("alice")
        .heartbeat(Some(Heartbeat {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(150),
        }))
        .reconnect(ReconnectPolicy {
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            ..ReconnectPolicy::default()
        })
        .build()
        .unwrap();
    let mut events = record(&client);
    tokio::time::timeout(TIMEOUT, client.connect()).await.unwrap().unwrap();
    let Event::Disconnected(lost) =
        events.wait_for("disconnected", |e| matches!(e, Event::Disconnected(_))).await
    else {
        unreachable!()
    };
    assert!(lost.reason.contains("heartbeat"), "{}", lost.reason);
    assert!(lost.will_reconnect);
    events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    assert!(requests.recv().await.is_some() && requests.recv().await.is_some(), "two upgrades");
    client.close().await;
}

#[tokio::test]
async fn invalid_builder_input_is_refused_before_anything_is_sent() {
    assert!(matches!(
        Client::builder("http://example.invalid/ws").build(),
        Err(switchboard_sdk::Error::InvalidUrl(_))
    ));
    assert!(matches!(
        Client::builder("ws://127.0.0.1:1/ws").user("").build(),
        Err(switchboard_sdk::Error::InvalidName { field: "user", .. })
    ));
    let client = Client::builder("ws://127.0.0.1:1/ws").user("a").build().unwrap();
    assert!(matches!(
        client.join(&"r".repeat(200)).await,
        Err(switchboard_sdk::Error::InvalidName { field: "room", .. })
    ));
    client.close().await;
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    assert!(matches!(
        Client::builder("ws://127.0.0.1:1/ws").user("a").build(),
        Err(switchboard_sdk::Error::NoRuntime)
    ));
}
