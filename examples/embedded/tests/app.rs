//! The example application driven as its users would: SDK clients over
//! real sockets, and its own HTTP routes.

use serde_json::json;
use switchboard_sdk::{Client, Error};

async fn start() -> String {
    let (router, _hub, _store) = switchboard_example_embedded::app(
        switchboard_server::Config::default(),
        vec!["ann".to_owned()],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

async fn client(addr: &str, user: &str) -> Client {
    let client = Client::builder(format!("ws://{addr}/realtime/ws")).user(user).build().unwrap();
    client.connect().await.unwrap();
    client
}

#[tokio::test]
async fn the_application_validates_persists_and_answers_through_its_hooks() {
    let addr = start().await;
    let ann = client(&addr, "ann").await;
    let bob = client(&addr, "bob").await;
    ann.join("mod:team").await.unwrap();
    let refused = bob.join("mod:team").await.unwrap_err();
    assert!(matches!(refused, Error::Server { message, .. } if message == "moderators only"));

    bob.join("general").await.unwrap();
    bob.publish("general", "chat", "hello").await.unwrap();
    let long = bob.publish("general", "chat", "x".repeat(501)).await.unwrap_err();
    assert!(matches!(long, Error::Server { message, .. } if message == "at most 500 characters"));
    assert_eq!(bob.rpc("archive.count", json!({"room": "general"})).await.unwrap(), json!(1));

    let http = reqwest::Client::new();
    let archive: serde_json::Value = http
        .get(format!("http://{addr}/archive/general"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(archive["messages"], json!([{"from": "bob", "event": "chat", "data": "hello"}]));
    let announced: serde_json::Value = http
        .post(format!("http://{addr}/announce"))
        .json(&json!({"room": "general", "text": "maintenance at 5"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(announced["offset"], 2, "after bob's message in the room's stream");
    let history = bob.history("general", None, None).await.unwrap();
    assert_eq!(history.messages.last().unwrap().data, json!("maintenance at 5"));
}
