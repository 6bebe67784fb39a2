//! Room fan-out with and without permessage-deflate, side by side in one
//! run: Switchboard (one compression per publication, shared by every
//! member), the Node `ws` room hub with `ws`'s own permessage-deflate (a
//! compression context per connection, each send compressed for each
//! member), and Socket.IO 4.8 with its `perMessageDeflate`. socketioxide is
//! left out: its WebSocket layer (tungstenite) has no permessage-deflate.
//!
//! Every member offers the extension as a browser does and inflates what
//! arrives compressed (`switchboard_bench::inflate`), so the load client
//! pays what a browser pays, and its CPU is shown. Messages carry about
//! `--size` bytes of chat-like text. Reported per server and setting:
//! deliveries per second and per second of server CPU, the bytes that
//! crossed the wire per delivery, and the server's resident memory with the
//! room connected (a compression context per connection shows there).
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! (cd bench/node && npm ci)
//! target/release/compression --members 1000 --out bench/results/compression.md
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use switchboard_bench::inflate::WIRE_BYTES;
use switchboard_bench::process::{Hub, own_cpu};
use switchboard_bench::receive::{Received, join_room};
use switchboard_bench::report::progress;
use switchboard_bench::wire::{self, Proto, Socket};
use tokio_tungstenite::tungstenite::Message;

/// Room fan-out with and without permessage-deflate.
#[derive(Parser)]
struct Args {
    /// Members of the room.
    #[arg(long, default_value_t = 1_000)]
    members: usize,
    /// Messages published.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Bytes of text in each message.
    #[arg(long, default_value_t = 2_048)]
    size: usize,
    /// Publishes in flight (sent, not yet acked).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// The hub binary.
    #[arg(long, default_value = "target/release/switchboard")]
    binary: PathBuf,
    /// Leave out the Node peers.
    #[arg(long)]
    no_node: bool,
    /// Write the Markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

type Failure = Box<dyn std::error::Error>;

/// One server and setting, measured.
struct Row {
    name: String,
    /// Members whose connection negotiated the extension.
    negotiated: usize,
    deliveries: usize,
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
    wire_bytes: u64,
    rss: u64,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for deflate in [false, true] {
        let config = format!(
            "[limits]\nmessages_per_sec = 1000000\nmax_connections = {}\n\
             [compression]\nenabled = {deflate}\n",
            args.members + 100
        );
        let hub = Hub::start_configured(&args.binary, &config).await?;
        let name = format!("Switchboard, compression {}", if deflate { "on" } else { "off" });
        rows.push(measure(name, Proto::Json, &hub, &args).await?);
    }
    if !args.no_node {
        for (script, name, proto) in [
            ("bench/node/ws-hub.mjs", "Node ws hub", Proto::Json),
            ("bench/node/socketio-hub.mjs", "Socket.IO 4.8", Proto::SocketIo),
        ] {
            for deflate in [false, true] {
                let mut node_args = vec![script.to_owned()];
                if deflate {
                    node_args.push("--deflate".to_owned());
                }
                let hub = Hub::start("node".as_ref(), &node_args).await?;
                let name =
                    format!("{name}, perMessageDeflate {}", if deflate { "on" } else { "off" });
                rows.push(measure(name, proto, &hub, &args).await?);
            }
        }
    }
    switchboard_bench::report::publish(&table(&rows, &args), args.out.as_deref())?;
    Ok(())
}

/// A message's data: a sequence number, the send time, and `size` bytes of
/// words, as chat text compresses (not a run of one letter).
fn payload(n: usize, size: usize) -> String {
    const WORDS: [&str; 24] = [
        "the", "room", "message", "hello", "deploy", "build", "failed", "passed", "review",
        "merge", "branch", "today", "tomorrow", "meeting", "notes", "latency", "socket", "user",
        "again", "please", "thanks", "ship", "it", "now",
    ];
    let stamp = wire::stamped(n);
    let mut text = String::with_capacity(size + 16);
    let mut state = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while text.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
        text.push(' ');
    }
    format!(r#"{},"text":"{text}"}}"#, &stamp[..stamp.len() - 1])
}

async fn measure(name: String, proto: Proto, hub: &Hub, args: &Args) -> Result<Row, Failure> {
    let addr = hub.addr;
    let bar = progress(&name, "connect and join", args.members);
    let received = Arc::new(Received::default());
    let negotiated = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = stream::iter(0..args.members)
        .map(|n| {
            let (bar, received, negotiated) = (bar.clone(), received.clone(), negotiated.clone());
            async move {
                let socket = proto.open_offering(addr, &format!("u{n}"), true).await;
                let socket = socket.map_err(|err| format!("connect: {err}"))?;
                if socket.get_ref().is_on() {
                    negotiated.fetch_add(1, Ordering::Relaxed);
                }
                let reader = join_room(socket, proto, "bench", received).await;
                let reader = reader.map_err(|err| format!("join: {err}"));
                bar.inc(1);
                reader
            }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, String>>()?;
    bar.finish();
    eprintln!("{name}: {} members joined", args.members);
    let mut publisher: Socket = proto.open(addr, "publisher").await?;
    publisher.send(Message::text(proto.join("bench"))).await?;
    wire::read_until(&mut publisher, proto, |text| proto.is_ack(text)).await?;
    hub.settle().await?;

    let expected = args.members * args.messages;
    let bar = progress(&name, "fan-out deliveries", expected);
    let (server_before, client_before) = (hub.cpu()?, own_cpu()?);
    let bytes_before = WIRE_BYTES.load(Ordering::Relaxed);
    let started = Instant::now();
    let size = args.size;
    let publish = |n| proto.publish("bench", Some(n), &payload(n, size));
    wire::send_acked(&mut publisher, proto, args.messages, args.in_flight, publish).await?;
    let arrived = received.wait_for(expected, &bar).await;
    let seconds = arrived.at.saturating_duration_since(started).as_secs_f64();
    let row = Row {
        name,
        negotiated: negotiated.load(Ordering::Relaxed),
        deliveries: arrived.count,
        seconds,
        server_cpu: hub.cpu()?.saturating_sub(server_before).as_secs_f64(),
        client_cpu: own_cpu()?.saturating_sub(client_before).as_secs_f64(),
        wire_bytes: WIRE_BYTES.load(Ordering::Relaxed) - bytes_before,
        rss: hub.rss_bytes()?,
    };
    bar.finish();
    for reader in readers {
        reader.abort();
    }
    Ok(row)
}

fn table(rows: &[Row], args: &Args) -> String {
    let mut out = format!(
        "Room fan-out, {} members offering permessage-deflate as browsers do, {} messages of \
         about {} bytes of text, {} in flight; one run, one after the other.\n\n\
         | server | negotiated | deliveries/s | per server CPU s | bytes per delivery | \
         server CPU | load client CPU | server RSS |\n|---|---|---|---|---|---|---|---|\n",
        args.members, args.messages, args.size, args.in_flight
    );
    for row in rows {
        let missing = rows_missing(row, args);
        out.push_str(&format!(
            "| {} | {} | {:.0}{} | {:.0} | {:.0} | {:.2} s | {:.2} s ({:.0}%) | {:.1} MiB |\n",
            row.name,
            row.negotiated,
            row.deliveries as f64 / row.seconds.max(1e-6),
            missing,
            row.deliveries as f64 / row.server_cpu.max(0.01),
            row.wire_bytes as f64 / row.deliveries.max(1) as f64,
            row.server_cpu,
            row.client_cpu,
            100.0 * row.client_cpu / row.seconds.max(1e-6),
            row.rss as f64 / (1024.0 * 1024.0),
        ));
    }
    out
}

/// A note when some deliveries never arrived.
fn rows_missing(row: &Row, args: &Args) -> String {
    let expected = args.members * args.messages;
    if row.deliveries < expected {
        format!(" (**{} never arrived**)", expected - row.deliveries)
    } else {
        String::new()
    }
}
