//! Room fan-out of bytes: what a binary payload costs the hub per delivery,
//! against a JSON text payload of the same size, in one run.
//!
//! Rows (compression off, so that only the payload's form differs):
//! - JSON text: `data` is a string of `--size` characters; every member
//!   speaks JSON. The reference.
//! - bytes to members that speak binary (`?binary=1`): the publisher sends
//!   binary messages (an envelope: header length, the publish's JSON
//!   without data, `--size` raw bytes) and every member gets one, made once
//!   per publication and shared.
//! - bytes to JSON-only members: the same publishes, and every member gets
//!   the hub's JSON form, the bytes as base64 text (a third longer).
//! - bytes to a room of both halves: both forms of each publication.
//!
//! Reported per row: deliveries per second and per second of server CPU,
//! payload bytes per delivery as the members read them, and the load
//! client's own CPU (it reads every delivery: where it nears 100% of a
//! core, the row measures the client too).
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! target/release/binary --members 1000 --out bench/results/binary.md
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use switchboard_bench::process::{Hub, own_cpu};
use switchboard_bench::receive::Received;
use switchboard_bench::report::progress;
use tokio_tungstenite::tungstenite::Message;

/// Room fan-out of bytes against JSON text.
#[derive(Parser)]
struct Args {
    /// Members of the room.
    #[arg(long, default_value_t = 1_000)]
    members: usize,
    /// Messages published.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Bytes of payload in each message.
    #[arg(long, default_value_t = 2_048)]
    size: usize,
    /// Publishes in flight (sent, not yet acked).
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// The hub binary.
    #[arg(long, default_value = "target/release/switchboard")]
    binary: PathBuf,
    /// Write the Markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

type Failure = Box<dyn std::error::Error>;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a row publishes, and how its members connect.
#[derive(Clone, Copy)]
struct Setting {
    name: &'static str,
    /// The publisher sends bytes (binary messages) rather than JSON text.
    bytes: bool,
    /// Which members ask for binary: every `n` for which this holds.
    binary_member: fn(usize) -> bool,
}

const SETTINGS: [Setting; 4] = [
    Setting { name: "JSON text payload, JSON members", bytes: false, binary_member: |_| false },
    Setting { name: "bytes, members speak binary", bytes: true, binary_member: |_| true },
    Setting { name: "bytes, JSON-only members (base64)", bytes: true, binary_member: |_| false },
    Setting { name: "bytes, half the members binary", bytes: true, binary_member: |n| n % 2 == 0 },
];

struct Row {
    name: &'static str,
    deliveries: usize,
    seconds: f64,
    server_cpu: f64,
    client_cpu: f64,
    payload_bytes: u64,
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let config = format!(
        "[limits]\nmessages_per_sec = 1000000\nmax_connections = {}\n\
         [compression]\nenabled = false\n",
        args.members + 100
    );
    let mut rows = Vec::new();
    for setting in SETTINGS {
        let hub = Hub::start_configured(&args.binary, &config).await?;
        rows.push(measure(setting, &hub, &args).await?);
    }
    switchboard_bench::report::publish(&table(&rows, &args), args.out.as_deref())?;
    Ok(())
}

async fn open(addr: std::net::SocketAddr, user: &str, binary: bool) -> Result<Socket, Failure> {
    let url = format!("ws://{addr}/ws?user_id={user}{}", if binary { "&binary=1" } else { "" });
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    // The welcome.
    socket.next().await.ok_or("closed before its welcome")??;
    Ok(socket)
}

/// Sends `text` and reads until the answer whose id it names.
async fn request(socket: &mut Socket, text: String, id: &str) -> Result<(), Failure> {
    socket.send(Message::text(text)).await?;
    let tag = format!(r#""id":"{id}""#);
    loop {
        match socket.next().await.ok_or("closed")?? {
            Message::Text(answer) if answer.contains(&tag) => return Ok(()),
            _ => continue,
        }
    }
}

/// The `n`th publication: an envelope of bytes, or a JSON text frame.
fn publication(n: usize, size: usize, bytes: bool) -> Message {
    let body: Vec<u8> = (0..size).map(|at| (at * 31 + n) as u8).collect();
    if bytes {
        let header = format!(r#"{{"type":"publish","id":"p{n}","room":"bench","event":"blob"}}"#);
        Message::binary(switchboard_protocol::binary::envelope(&header, &body))
    } else {
        // Text of the same length; a JSON string needs no escapes for it.
        let text: String = body.iter().map(|byte| char::from(b'a' + byte % 26)).collect();
        Message::text(format!(
            r#"{{"type":"publish","id":"p{n}","room":"bench","event":"blob","data":"{text}"}}"#
        ))
    }
}

async fn measure(setting: Setting, hub: &Hub, args: &Args) -> Result<Row, Failure> {
    let addr = hub.addr;
    let bar = progress(setting.name, "connect and join", args.members);
    let received = Arc::new(Received::default());
    let payload = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = stream::iter(0..args.members)
        .map(|n| {
            let (bar, received, payload) = (bar.clone(), received.clone(), payload.clone());
            async move {
                let mut socket = open(addr, &format!("u{n}"), (setting.binary_member)(n)).await?;
                let join = r#"{"type":"join","id":"j","room":"bench"}"#.to_owned();
                request(&mut socket, join, "j").await?;
                bar.inc(1);
                Ok::<_, Failure>(tokio::spawn(async move {
                    while let Some(Ok(message)) = socket.next().await {
                        match message {
                            Message::Binary(bytes) => {
                                payload.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                                received.add("");
                            }
                            Message::Text(text) if text.starts_with(r#"{"type":"message""#) => {
                                payload.fetch_add(text.len() as u64, Ordering::Relaxed);
                                received.add("");
                            }
                            _ => {}
                        }
                    }
                }))
            }
        })
        .buffer_unordered(128)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    bar.finish();
    // The publisher is in the room too (the hub asks publishers to join);
    // it speaks binary, so that its own copies cost it no base64.
    let mut publisher = open(addr, "publisher", true).await?;
    request(&mut publisher, r#"{"type":"join","id":"j","room":"bench"}"#.to_owned(), "j").await?;
    hub.settle().await?;

    let expected = args.members * args.messages;
    let bar = progress(setting.name, "fan-out deliveries", expected);
    let (server_before, client_before) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    let (mut sent, mut acked) = (0, 0);
    while acked < args.messages {
        while sent < args.messages && sent - acked < args.in_flight.max(1) {
            publisher.send(publication(sent, args.size, setting.bytes)).await?;
            sent += 1;
        }
        match publisher.next().await.ok_or("the publisher's socket closed")?? {
            Message::Text(text) if text.starts_with(r#"{"type":"ack""#) => acked += 1,
            Message::Text(text) if text.starts_with(r#"{"type":"error""#) => {
                return Err(format!("a publish was refused: {text}").into());
            }
            _ => {}
        }
    }
    let arrived = received.wait_for(expected, &bar).await;
    let row = Row {
        name: setting.name,
        deliveries: arrived.count,
        seconds: arrived.at.saturating_duration_since(started).as_secs_f64(),
        server_cpu: hub.cpu()?.saturating_sub(server_before).as_secs_f64(),
        client_cpu: own_cpu()?.saturating_sub(client_before).as_secs_f64(),
        payload_bytes: payload.load(Ordering::Relaxed),
    };
    bar.finish();
    for reader in readers {
        reader.abort();
    }
    Ok(row)
}

fn table(rows: &[Row], args: &Args) -> String {
    let mut out = format!(
        "Room fan-out of {} messages of {} payload bytes to {} members, {} in flight, \
         compression off; one run, one hub per row, one after the other.\n\n\
         | payload, members | deliveries/s | per server CPU s | payload bytes per delivery | \
         server CPU | load client CPU |\n|---|---|---|---|---|---|\n",
        args.messages, args.size, args.members, args.in_flight
    );
    let expected = args.members * args.messages;
    for row in rows {
        let missing = if row.deliveries < expected {
            format!(" (**{} never arrived**)", expected - row.deliveries)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "| {} | {:.0}{missing} | {:.0} | {:.0} | {:.2} s | {:.2} s ({:.0}%) |\n",
            row.name,
            row.deliveries as f64 / row.seconds.max(1e-6),
            row.deliveries as f64 / row.server_cpu.max(0.01),
            row.payload_bytes as f64 / row.deliveries.max(1) as f64,
            row.server_cpu,
            row.client_cpu,
            100.0 * row.client_cpu / row.seconds.max(1e-6),
        ));
    }
    out
}
