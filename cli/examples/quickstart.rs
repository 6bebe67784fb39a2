//! The README's first Rust program: connect, join a room, publish, send.

use switchboard_sdk::Client;

#[tokio::main]
async fn main() -> switchboard_sdk::Result<()> {
    let client = Client::builder("ws://127.0.0.1:8080/ws").user("alice").build()?;
    client.on("chat", |m| println!("{} in {:?}: {}", m.from, m.room, m.data));

    client.connect().await?; // resolves on the hub's welcome
    let present = client.join("general").await?; // who is in the room
    client.publish("general", "chat", serde_json::json!({ "text": "hi" })).await?;
    let reached = client.send("bob", "dm", "psst").await?; // bob's connections
    println!("{present:?} {reached}");
    client.close().await;
    Ok(())
}
