//! Resident memory per idle connection, side by side: starts the
//! `switchboard` release binary (and then the bare Node `ws` server,
//! `bench/node/ws-server.mjs`), opens N WebSocket connections that each
//! receive `welcome` and then stay idle, and reports each server's RSS growth
//! divided by N, for every N asked for.
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! (cd bench/node && npm ci)
//! target/release/memory --connections 1000,10000,19000 --out bench/results/memory.md
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use switchboard_bench::inflate::Inflate;
use switchboard_bench::process::Hub;
use switchboard_bench::wire::{self, Proto};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Measures the hub's resident memory per idle WebSocket connection.
#[derive(Parser)]
struct Args {
    /// Connection counts to measure, comma-separated (each connection holds
    /// a file descriptor here and one in the server).
    #[arg(long, value_delimiter = ',', default_value = "5000")]
    connections: Vec<usize>,
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
    /// Join `--room` with a `join` frame after the welcome (as the SDKs and a
    /// hand-written client do) rather than with `?room=` on the URL.
    #[arg(long, requires = "room")]
    join_frame: bool,
    /// Messages published to `--room` (4 in flight) once every connection is
    /// in it, before the sample: what a member keeps after traffic, not only
    /// after its join.
    #[arg(long, default_value_t = 0, requires = "room")]
    publish: usize,
    /// Keep the connections open this many seconds after the sample, to
    /// look at the hub with a profiler or `gdb` meanwhile.
    #[arg(long, default_value_t = 0)]
    hold: u64,
    /// The hub binary.
    #[arg(long, default_value = "target/release/switchboard")]
    binary: PathBuf,
    /// Extra flags for the hub binary (for example `--config hub.toml`).
    #[arg(long, allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Offer permessage-deflate as browsers do (what a compressing
    /// connection costs at rest; the Node baseline then has `ws`'s own on).
    #[arg(long)]
    deflate: bool,
    /// Leave out the Node `ws` baseline.
    #[arg(long)]
    no_node: bool,
    /// Write the Markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One measurement: RSS before and after, in bytes.
struct Sample {
    connections: usize,
    before: u64,
    after: u64,
}

impl Sample {
    fn per_connection_kib(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.connections.max(1) as f64 / 1024.0
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let most = args.connections.iter().copied().max().unwrap_or(0);
    let mut rows = Vec::new();
    for &connections in &args.connections {
        let mut flags = vec![
            "--log".to_owned(),
            "error".to_owned(),
            "--max-connections".to_owned(),
            (most + 1_000).to_string(),
        ];
        flags.extend(args.hub_args.iter().cloned());
        let hub = Hub::start(&args.binary, &flags).await?;
        let ours = measure(&hub, connections, &args).await?;
        report("switchboard", &ours, &args);
        drop(hub);
        let node = if args.no_node {
            None
        } else {
            let mut script = vec!["bench/node/ws-server.mjs".to_owned()];
            if args.deflate {
                script.push("--deflate".to_owned());
            }
            let hub = Hub::start("node".as_ref(), &script).await?;
            let node = measure(&hub, connections, &args).await?;
            report("node ws", &node, &args);
            Some(node)
        };
        rows.push((ours, node));
    }
    let table = table(&rows);
    switchboard_bench::report::publish(&table, args.out.as_deref())?;
    Ok(())
}

/// Opens `connections` idle WebSockets to `hub` and samples its RSS.
async fn measure(
    hub: &Hub,
    connections: usize,
    args: &Args,
) -> Result<Sample, Box<dyn std::error::Error>> {
    let before = settled_rss(hub).await?;
    let users = args.users.unwrap_or(connections).max(1);
    let join = args.room.as_deref().filter(|_| args.join_frame);
    let join = join.map(|room| format!(r#"{{"type":"join","id":"1","room":"{room}"}}"#));
    let room = match &args.room {
        Some(room) if !args.join_frame => format!("&room={room}"),
        _ => String::new(),
    };
    let addr = hub.addr;
    let sockets: Vec<_> = stream::iter(0..connections)
        .map(|n| {
            let url = format!("ws://{addr}/ws?user_id=u{}{room}", n % users);
            let join = join.clone();
            let deflate = args.deflate;
            async move {
                let mut request = url.into_client_request()?;
                if deflate {
                    let offer = switchboard_bench::inflate::OFFER.parse().expect("a header value");
                    request.headers_mut().insert("sec-websocket-extensions", offer);
                }
                let stream = tokio::net::TcpStream::connect(addr).await?;
                let (mut socket, _) =
                    tokio_tungstenite::client_async(request, Inflate::new(stream, deflate)).await?;
                // The welcome frame: the session is fully set up.
                match socket.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(err),
                    None => return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
                }
                if let Some(join) = join {
                    socket.send(Message::text(join)).await?;
                    loop {
                        match socket.next().await {
                            Some(Ok(Message::Text(text)))
                                if text.starts_with(r#"{"type":"ack""#) =>
                            {
                                break;
                            }
                            Some(Ok(_)) => continue,
                            Some(Err(err)) => return Err(err),
                            None => {
                                return Err(
                                    tokio_tungstenite::tungstenite::Error::ConnectionClosed,
                                );
                            }
                        }
                    }
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
    if let (Some(room), true) = (&args.room, args.publish > 0) {
        let mut publisher = Proto::Json.open(addr, "publisher").await?;
        publisher.send(Message::text(Proto::Json.join(room))).await?;
        wire::read_until(&mut publisher, Proto::Json, |text| Proto::Json.is_ack(text)).await?;
        let publish = |n| Proto::Json.publish(room, Some(n), &wire::stamped(n));
        wire::send_acked(&mut publisher, Proto::Json, args.publish, 4, publish).await?;
        hub.settle().await?;
    }
    let after = settled_rss(hub).await?;
    if args.hold > 0 {
        eprintln!(
            "sampled ({} KiB); holding for {} s (hub pid {})",
            after / 1024,
            args.hold,
            hub.pid()
        );
        tokio::time::sleep(Duration::from_secs(args.hold)).await;
    }
    for reader in &sockets {
        reader.abort();
    }
    Ok(Sample { connections: sockets.len(), before, after })
}

fn report(name: &str, sample: &Sample, args: &Args) {
    let users = args.users.unwrap_or(sample.connections).min(sample.connections);
    let room = args.room.as_deref().map(|room| format!(", all in `{room}`")).unwrap_or_default();
    eprintln!(
        "{name}: {} idle connections ({users} users{room}): RSS {} KiB -> {} KiB, {:.1} KiB per connection",
        sample.connections,
        sample.before / 1024,
        sample.after / 1024,
        sample.per_connection_kib()
    );
}

fn table(rows: &[(Sample, Option<Sample>)]) -> String {
    let with_node = rows.iter().any(|(_, node)| node.is_some());
    let mut out = String::from(
        "Server RSS growth per idle connection (each welcomed, then idle), one machine, loopback\n\n",
    );
    out.push_str(if with_node {
        "| connections | switchboard | Node `ws` | switchboard / node |\n|---|---|---|---|\n"
    } else {
        "| connections | switchboard |\n|---|---|\n"
    });
    for (ours, node) in rows {
        out.push_str(&format!(
            "| {} | {:.1} KiB ({} → {} KiB) |",
            ours.connections,
            ours.per_connection_kib(),
            ours.before / 1024,
            ours.after / 1024
        ));
        if let Some(node) = node {
            out.push_str(&format!(
                " {:.1} KiB ({} → {} KiB) | {:.2}× |",
                node.per_connection_kib(),
                node.before / 1024,
                node.after / 1024,
                ours.per_connection_kib() / node.per_connection_kib()
            ));
        }
        out.push('\n');
    }
    out
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
