//! `cargo run -p switchboard-example-embedded`: the application on
//! 127.0.0.1:3000, the hub's WebSocket at `/realtime/ws`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (router, hub, _store) = switchboard_example_embedded::app(
        switchboard_server::Config::default(),
        vec!["ann".to_owned()],
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://127.0.0.1:3000 (WebSocket: ws://127.0.0.1:3000/realtime/ws)");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            hub.shutdown();
        })
        .await?;
    Ok(())
}
