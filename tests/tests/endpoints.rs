//! A client given several URLs of a hub (its nodes): an attempt that fails
//! moves to the next URL; a lost connection tries its own URL first.

use serde_json::json;
use switchboard_sdk::Client;
use switchboard_tests::{Event, Events, TIMEOUT, TestServer, connect, fast_reconnect, record};

/// A loopback URL where nothing listens.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/ws")
}

/// Alice, connected through `first` or else `fallback`, with her events recorded.
async fn alice(first: String, fallback: String) -> (Client, Events) {
    let client = Client::builder(first)
        .fallbacks([fallback])
        .user("alice")
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let events = record(&client);
    tokio::time::timeout(TIMEOUT, client.connect()).await.expect("in time").expect("connects");
    (client, events)
}

#[tokio::test]
async fn a_client_whose_first_url_is_down_connects_through_the_next() {
    let server = TestServer::start().await;
    let (client, mut events) = alice(dead_url(), server.ws_url()).await;
    client.join("lobby").await.unwrap();
    let (bob, _bob_events) = connect(&server, "bob").await;
    bob.join("lobby").await.unwrap();
    bob.publish("lobby", "chat", json!("found you")).await.unwrap();
    let message = events.next_message().await;
    assert_eq!((message.from.as_str(), message.data), ("bob", json!("found you")));
}

#[tokio::test]
async fn when_its_node_goes_away_a_client_moves_to_the_next_url_and_rejoins() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let (client, mut events) = alice(first.ws_url(), second.ws_url()).await;
    client.join("lobby").await.unwrap();
    events.wait_for("the first join", |e| matches!(e, Event::Joined(_))).await;

    first.stop().await;
    events.wait_for("reconnected", |e| matches!(e, Event::Connected)).await;
    let Event::Joined(joined) =
        events.wait_for("the rejoin", |e| matches!(e, Event::Joined(_))).await
    else {
        unreachable!()
    };
    assert!(joined.rejoin && joined.room == "lobby", "{joined:?}");
    // Now on the second node: a member there reaches alice.
    let (bob, _bob_events) = connect(&second, "bob").await;
    bob.join("lobby").await.unwrap();
    bob.publish("lobby", "chat", json!("over here")).await.unwrap();
    let message = events.next_message().await;
    assert_eq!((message.from.as_str(), message.data), ("bob", json!("over here")));
}

#[tokio::test]
async fn a_bad_fallback_url_is_refused_when_the_client_is_built() {
    let built = Client::builder("ws://127.0.0.1:1/ws").fallbacks(["http://nope"]).user("a").build();
    assert!(matches!(built, Err(switchboard_sdk::Error::InvalidUrl(_))));
}
