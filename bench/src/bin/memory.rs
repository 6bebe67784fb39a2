//! Resident memory per idle connection: starts the `switchboard` binary,
//! opens N WebSocket connections that each receive `welcome` and then stay
//! idle, and reports the hub's RSS growth divided by N.
//!
//! ```sh
//! cargo build --release -p switchboard-server
//! cargo run --release -p switchboard-bench --bin memory -- --connections 5000
//! (cd bench/node && npm ci) && target/release/memory --node-ws   # the Node baseline
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use futures::{StreamExt, stream};
use switchboard_bench::process::Hub;

/// Measures the hub's resident memory per idle WebSocket connection.
#[derive(Parser)]
struct Args {
    /// Connections to open (each holds a file descriptor here and one in the hub).
    #[arg(long, default_value_t = 5_000)]
    connections: usize,
    /// Connections opened at once.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Users the connections are spread over (several connections per user
    /// is what the hub is for; one user per connection is the worst case).
    #[arg(long)]
    users: Option<usize>,
    /// A room every connection joins on connect (none by default).
    #[arg(long)]
    room: Option<String>,
    /// The hub binary.
    #[arg(long, default_value = "target/release/switchboard")]
    binary: PathBuf,
    /// Extra flags for the hub binary (for example `--config hub.toml`).
    #[arg(long, allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Measure the Node `ws` baseline (`bench/node/ws-server.mjs`) instead.
    #[arg(long)]
    node_ws: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let hub = if args.node_ws {
        let script = "bench/node/ws-server.mjs".to_owned();
        Hub::start("node".as_ref(), &[script]).await?
    } else {
        let mut flags = vec!["--log".to_owned(), "error".to_owned()];
        flags.extend(args.hub_args.iter().cloned());
        Hub::start(&args.binary, &flags).await?
    };
    let before = settled_rss(&hub).await?;
    let users = args.users.unwrap_or(args.connections).max(1);
    let room = args.room.as_deref().map(|room| format!("&room={room}")).unwrap_or_default();
    let addr = hub.addr;
    let sockets: Vec<_> = stream::iter(0..args.connections)
        .map(|n| {
            let url = format!("ws://{addr}/ws?user_id=u{}{room}", n % users);
            async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
                // The welcome frame: the session is fully set up.
                match socket.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err),
                    None => return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
                }
                // Keep reading (presence frames when a room is joined), so
                // what is measured is the hub at rest, not frames queued for
                // a client that does not read.
                Ok(tokio::spawn(async move { while let Some(Ok(_)) = socket.next().await {} }))
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let after = settled_rss(&hub).await?;
    let per = after.saturating_sub(before) as f64 / sockets.len().max(1) as f64;
    println!(
        "{}: {} idle connections ({} users{}): hub RSS {} KiB -> {} KiB, {:.1} KiB per connection",
        if args.node_ws { "node ws" } else { "switchboard" },
        sockets.len(),
        users.min(sockets.len()),
        args.room.as_deref().map(|room| format!(", all in `{room}`")).unwrap_or_default(),
        before / 1024,
        after / 1024,
        per / 1024.0
    );
    for reader in sockets {
        reader.abort();
    }
    Ok(())
}

/// RSS once it stops moving: sampled every 200 ms until two samples agree
/// within 1%, at most 5 s.
async fn settled_rss(hub: &Hub) -> std::io::Result<u64> {
    let mut last = hub.rss_bytes()?;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = hub.rss_bytes()?;
        if now.abs_diff(last) * 100 <= last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}
