//! Scale on one machine, side by side: the `switchboard` release binary and
//! the Node `ws` room hub (`bench/node/ws-hub.mjs`) under the same load, one
//! after the other in one run, so the ratios hold on a noisy machine.
//!
//! - **storm**: N connections opened `--parallel` at a time (a reconnect
//!   storm), timed until every one got its `welcome`.
//! - **fill**: those N connections join one room, `--parallel` joins in
//!   flight, timed until every `join` is acked. Switchboard runs with its
//!   defaults, presence on; every client keeps reading what it is sent.
//! - **fan-out**: one more connection joins and publishes `--messages`
//!   messages to the room, `--in-flight` unacknowledged at a time, timed
//!   until every member has received every message (deliveries per second).
//!   Switchboard's per-connection rate limit is lifted for the publisher.
//!   Each message carries its send time, so every delivery's latency is
//!   known (p50, p99).
//! - **round trip**: 1 and then 100 connections, each alone in its own
//!   room, publish and wait for their own message to come back, one at a
//!   time (round trips per second, p50, p99).
//! - **private**: one user holds 10 connections; another sends it
//!   `--messages` private messages, `--in-flight` at a time, timed until
//!   every connection has every message.
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! (cd bench/node && npm ci)
//! target/release/scale --connections 10000
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use switchboard_bench::process::{Hub, own_cpu};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connection storms and room fills against Switchboard and a Node `ws` hub.
#[derive(Parser)]
struct Args {
    /// Connections (each holds a file descriptor here and one in the hub).
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connects, and then joins, in flight at once.
    #[arg(long, default_value_t = 256)]
    parallel: usize,
    /// The hub binary.
    #[arg(long, default_value = "target/release/switchboard")]
    binary: PathBuf,
    /// Extra flags for the hub binary (for example `--config hub.toml`).
    #[arg(long, allow_hyphen_values = true)]
    hub_args: Vec<String>,
    /// Messages published in the fan-out phase.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Publishes in flight (sent, not yet acked) during the fan-out phase.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Leave out the Node `ws` hub.
    #[arg(long)]
    no_node: bool,
    /// Write the Markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What one server did.
struct Run {
    name: &'static str,
    storm: Phase,
    fill: Phase,
    fanout: Phase,
    /// Messages every member received in the fan-out phase.
    deliveries: usize,
    /// Each fan-out delivery's latency.
    fanout_latency: Percentiles,
    /// Round trips with 1 and with 100 connections.
    round_trips: Vec<RoundTrips>,
    /// The private-message phase.
    private: Phase,
    private_deliveries: usize,
    private_latency: Percentiles,
}

/// Round trips through the hub by `connections` clients at once.
struct RoundTrips {
    connections: usize,
    count: usize,
    phase: Phase,
    latency: Percentiles,
}

/// Latency percentiles, in microseconds.
#[derive(Clone, Copy, Default)]
struct Percentiles {
    p50: u32,
    p99: u32,
}

impl Percentiles {
    fn of(mut micros: Vec<u32>) -> Percentiles {
        if micros.is_empty() {
            return Percentiles::default();
        }
        micros.sort_unstable();
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
        Percentiles { p50: at(0.50), p99: at(0.99) }
    }

    fn cell(&self) -> String {
        format!("p50 {} / p99 {}", millis(self.p50), millis(self.p99))
    }
}

fn millis(micros: u32) -> String {
    if micros >= 10_000 {
        format!("{:.0} ms", f64::from(micros) / 1000.0)
    } else {
        format!("{:.2} ms", f64::from(micros) / 1000.0)
    }
}

/// The instant every timestamp in a message counts from.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
fn now_micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// The latency of a received message from the `"t":` send time it carries.
fn latency_of(text: &str) -> Option<u32> {
    let at = text.find(r#""t":"#)? + 4;
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    let sent: u64 = digits.parse().ok()?;
    Some(now_micros().saturating_sub(sent).min(u64::from(u32::MAX)) as u32)
}

/// One timed phase, with the CPU both sides spent in it.
struct Phase {
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Connections the server closed before the phase was done with them
    /// (slow consumers cut off, for example).
    lost: usize,
}

impl Phase {
    fn cell(&self) -> String {
        let lost = if self.lost > 0 {
            format!(", **{} closed by the server**", self.lost)
        } else {
            String::new()
        };
        format!(
            "{:.2} s (server CPU {:.1} s, client {:.1} s{lost})",
            self.elapsed.as_secs_f64(),
            self.server_cpu.as_secs_f64(),
            self.client_cpu.as_secs_f64()
        )
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut runs = Vec::new();
    // The publisher sends faster than a chat client would.
    let config =
        std::env::temp_dir().join(format!("switchboard-scale-{}.toml", std::process::id()));
    std::fs::write(&config, "[limits]\nmessages_per_sec = 1000000\n")?;
    let mut hub_args = vec![
        "--log".to_owned(),
        "error".to_owned(),
        "--max-connections".to_owned(),
        (args.connections + 1_000).to_string(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    hub_args.extend(args.hub_args.iter().cloned());
    let hub = Hub::start(&args.binary, &hub_args).await?;
    runs.push(measure("switchboard", &hub, &args).await?);
    drop(hub);
    if !args.no_node {
        let hub = Hub::start("node".as_ref(), &["bench/node/ws-hub.mjs".to_owned()]).await?;
        runs.push(measure("node ws hub", &hub, &args).await?);
    }
    let table = table(&runs, &args);
    println!("{table}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, &table)?;
    }
    Ok(())
}

async fn measure(
    name: &'static str,
    hub: &Hub,
    args: &Args,
) -> Result<Run, Box<dyn std::error::Error>> {
    eprintln!("{name}: opening {} connections, {} at a time", args.connections, args.parallel);
    let (server, client) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    let addr = hub.addr;
    let sockets: Vec<Socket> = stream::iter(0..args.connections)
        .map(|n| open(format!("ws://{addr}/ws?user_id=u{n}")))
        .buffer_unordered(args.parallel.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let storm = Phase {
        elapsed: started.elapsed(),
        server_cpu: hub.cpu()? - server,
        client_cpu: own_cpu()? - client,
        lost: 0,
    };
    eprintln!(
        "{name}: {} welcomed in {:.2} s; filling one room",
        sockets.len(),
        storm.elapsed.as_secs_f64()
    );
    let (server, client) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    let received = Arc::new(Received::default());
    let results: Vec<_> = stream::iter(sockets)
        .map(|socket| join(socket, received.clone()))
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let lost = results.iter().filter(|r| r.is_err()).count();
    let readers: Vec<JoinHandle<()>> = results.into_iter().filter_map(Result::ok).collect();
    let fill = Phase {
        elapsed: started.elapsed(),
        server_cpu: hub.cpu()? - server,
        client_cpu: own_cpu()? - client,
        lost,
    };
    eprintln!(
        "{name}: {} joined in {:.2} s, {lost} closed",
        readers.len(),
        fill.elapsed.as_secs_f64()
    );
    let members = readers.len();
    eprintln!("{name}: publishing {} messages to {members} members", args.messages);
    // The publisher is in the room too (it gets its own messages, as every
    // hub here sends them to the sender as well), not counted as a member.
    let mut publisher = open(format!("ws://{addr}/ws?user_id=publisher")).await?;
    publisher.send(Message::text(r#"{"type":"join","id":"j","room":"bench"}"#)).await?;
    let (server, client) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    let expected = members * args.messages;
    publish(&mut publisher, args.messages, args.in_flight).await?;
    received.wait_for(expected).await;
    let fanout = Phase {
        elapsed: started.elapsed(),
        server_cpu: hub.cpu()? - server,
        client_cpu: own_cpu()? - client,
        lost: 0,
    };
    eprintln!(
        "{name}: {expected} deliveries in {:.2} s ({:.0}/s)",
        fanout.elapsed.as_secs_f64(),
        expected as f64 / fanout.elapsed.as_secs_f64()
    );
    let fanout_latency = received.take_latencies();
    for reader in readers {
        reader.abort();
    }
    drop(publisher);
    // 10,000 connections just closed: let the server finish with them.
    hub.settle().await?;
    let mut round_trips = Vec::new();
    for (connections, each) in [(1, 5_000), (100, 200)] {
        eprintln!("{name}: round trips, {connections} connection(s), {each} each");
        round_trips.push(round_trip(hub, connections, each).await?);
        hub.settle().await?;
    }
    eprintln!("{name}: {} private messages to a user with 10 connections", args.messages * 10);
    let (private, private_deliveries, private_latency) =
        private(hub, args.messages * 10, args.in_flight).await?;
    Ok(Run {
        name,
        storm,
        fill,
        fanout,
        deliveries: expected,
        fanout_latency,
        round_trips,
        private,
        private_deliveries,
        private_latency,
    })
}

/// `connections` clients, each alone in its own room, publish `each`
/// messages one at a time, each waiting for its own message to come back.
async fn round_trip(
    hub: &Hub,
    connections: usize,
    each: usize,
) -> Result<RoundTrips, Box<dyn std::error::Error>> {
    let addr = hub.addr;
    let mut sockets = Vec::new();
    for n in 0..connections {
        let mut socket = open(format!("ws://{addr}/ws?user_id=rtt{n}")).await?;
        socket
            .send(Message::text(format!(r#"{{"type":"join","id":"j","room":"rtt{n}"}}"#)))
            .await?;
        read_until(&mut socket, r#"{"type":"ack""#).await?;
        sockets.push((n, socket));
    }
    let (server, client) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    let results =
        futures::future::join_all(sockets.into_iter().map(|(n, mut socket)| async move {
            let mut micros = Vec::with_capacity(each);
            for _ in 0..each {
                let sent = Instant::now();
                let frame =
                    format!(r#"{{"type":"publish","room":"rtt{n}","event":"rtt","data":1}}"#);
                socket.send(Message::text(frame)).await?;
                read_until(&mut socket, r#"{"type":"message""#).await?;
                micros.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
            }
            Ok::<_, tokio_tungstenite::tungstenite::Error>(micros)
        }))
        .await;
    let phase = Phase {
        elapsed: started.elapsed(),
        server_cpu: hub.cpu()? - server,
        client_cpu: own_cpu()? - client,
        lost: results.iter().filter(|r| r.is_err()).count(),
    };
    let micros: Vec<u32> = results.into_iter().filter_map(Result::ok).flatten().collect();
    Ok(RoundTrips { connections, count: micros.len(), phase, latency: Percentiles::of(micros) })
}

/// Reads until a text frame that starts with `prefix`.
async fn read_until(
    socket: &mut Socket,
    prefix: &str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(prefix) => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err),
            None => return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
        }
    }
}

/// One user with 10 connections; another sends it `count` private
/// messages, `in_flight` at a time, until every connection has them all.
async fn private(
    hub: &Hub,
    count: usize,
    in_flight: usize,
) -> Result<(Phase, usize, Percentiles), Box<dyn std::error::Error>> {
    let addr = hub.addr;
    let received = Arc::new(Received::default());
    let mut readers = Vec::new();
    for _ in 0..10 {
        let mut socket = open(format!("ws://{addr}/ws?user_id=target")).await?;
        let received = received.clone();
        readers.push(tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Text(text) = frame {
                    if text.starts_with(r#"{"type":"message""#) {
                        received.add(&text);
                    }
                }
            }
        }));
    }
    let mut sender = open(format!("ws://{addr}/ws?user_id=sender")).await?;
    let (server, client) = (hub.cpu()?, own_cpu()?);
    let started = Instant::now();
    send_acked(&mut sender, count, in_flight, r#""type":"send","to":"target""#).await?;
    let expected = count * 10;
    received.wait_for(expected).await;
    let phase = Phase {
        elapsed: started.elapsed(),
        server_cpu: hub.cpu()? - server,
        client_cpu: own_cpu()? - client,
        lost: 0,
    };
    for reader in readers {
        reader.abort();
    }
    Ok((phase, received.count.load(Ordering::Relaxed), received.take_latencies()))
}

/// Opens a connection and reads its `welcome`.
async fn open(url: String) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    // tungstenite's default read buffer is 128 KiB, zeroed on first use:
    // across 10,000 connections that is the load client's biggest cost,
    // the same for every server. The frames here are small.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
    match socket.next().await {
        Some(Ok(_)) => Ok(socket),
        Some(Err(err)) => Err(err),
        None => Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
    }
}

/// Room messages received by all members together.
#[derive(Default)]
struct Received {
    count: AtomicUsize,
    changed: Notify,
    latencies: std::sync::Mutex<Vec<u32>>,
}

impl Received {
    fn add(&self, text: &str) {
        if let Some(micros) = latency_of(text) {
            self.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(micros);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The latencies recorded so far, leaving none behind.
    fn take_latencies(&self) -> Percentiles {
        Percentiles::of(std::mem::take(
            &mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Waits until `total` messages arrived; gives up after 120 s.
    async fn wait_for(&self, total: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.count.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.changed.notified()).await;
        }
    }
}

/// Publishes `count` messages to the room, `in_flight` unacknowledged at a time.
async fn publish(
    socket: &mut Socket,
    count: usize,
    in_flight: usize,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    send_acked(socket, count, in_flight, r#""type":"publish","room":"bench""#).await
}

/// Sends `count` frames of the kind `head` names (with an `id`, an event and
/// data carrying `n` and the send time), `in_flight` unacknowledged at a time.
async fn send_acked(
    socket: &mut Socket,
    count: usize,
    in_flight: usize,
    head: &str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (mut sent, mut acked) = (0, 0);
    while acked < count {
        while sent < count && sent - acked < in_flight.max(1) {
            let frame = format!(
                r#"{{{head},"id":"p{sent}","event":"tick","data":{{"n":{sent},"t":{}}}}}"#,
                now_micros()
            );
            socket.send(Message::text(frame)).await?;
            sent += 1;
        }
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"ack","id":"p"#) => {
                acked += 1
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err),
            None => return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
        }
    }
    Ok(())
}

/// Joins the room, waits for the ack, then keeps reading (presence, counts,
/// messages) in the background, as a live client does, counting messages.
async fn join(
    mut socket: Socket,
    received: Arc<Received>,
) -> Result<JoinHandle<()>, tokio_tungstenite::tungstenite::Error> {
    socket.send(Message::text(r#"{"type":"join","id":"j","room":"bench"}"#)).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with(r#"{"type":"ack""#) => break,
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err),
            None => return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed),
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(text) = frame {
                if text.starts_with(r#"{"type":"message""#) {
                    received.add(&text);
                }
            }
        }
    }))
}

fn table(runs: &[Run], args: &Args) -> String {
    let mut out = format!(
        "{} connections, {} at a time, one machine, loopback\n\n| scenario |",
        args.connections, args.parallel
    );
    for run in runs {
        out.push_str(&format!(" {} |", run.name));
    }
    if runs.len() == 2 {
        out.push_str(" switchboard / node |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(runs.len() + usize::from(runs.len() == 2)));
    for (label, pick) in [
        ("connect storm, all welcomed", (|r: &Run| &r.storm) as fn(&Run) -> &Phase),
        ("fill one room, all joins acked", |r: &Run| &r.fill),
        ("fan-out to the room, every member has every message", |r: &Run| &r.fanout),
    ] {
        out.push_str(&format!("\n| {label} |"));
        for run in runs {
            out.push_str(&format!(" {} |", pick(run).cell()));
        }
        if let [ours, node] = runs {
            let ratio = pick(ours).elapsed.as_secs_f64() / pick(node).elapsed.as_secs_f64();
            out.push_str(&format!(" {ratio:.2}× the time |"));
        }
    }
    let rate_row = |out: &mut String, label: &str, rates: &[(f64, f64)]| {
        out.push_str(&format!("\n| {label} |"));
        for (rate, per_cpu) in rates {
            out.push_str(&format!(" {rate:.0}/s ({per_cpu:.0} per server CPU s) |"));
        }
        if let [(ours, ours_cpu), (node, node_cpu)] = rates[..] {
            out.push_str(&format!(
                " {:.2}× the rate ({:.2}× per core) |",
                ours / node,
                ours_cpu / node_cpu
            ));
        }
    };
    let latency_row = |out: &mut String, label: &str, cells: Vec<Percentiles>| {
        out.push_str(&format!("\n| {label} |"));
        for cell in &cells {
            out.push_str(&format!(" {} |", cell.cell()));
        }
        if cells.len() == 2 {
            out.push_str(" |");
        }
    };
    let per = |count: usize, phase: &Phase| {
        (
            count as f64 / phase.elapsed.as_secs_f64(),
            count as f64 / phase.server_cpu.as_secs_f64().max(1e-3),
        )
    };
    let fanout: Vec<_> = runs.iter().map(|r| per(r.deliveries, &r.fanout)).collect();
    rate_row(&mut out, "fan-out deliveries", &fanout);
    latency_row(&mut out, "fan-out latency", runs.iter().map(|r| r.fanout_latency).collect());
    let trips = runs.first().map_or(0, |r| r.round_trips.len());
    for at in 0..trips {
        let label = |r: &Run| {
            let trip = &r.round_trips[at];
            format!("round trips, {} connection(s) one at a time each", trip.connections)
        };
        let rates: Vec<_> =
            runs.iter().map(|r| per(r.round_trips[at].count, &r.round_trips[at].phase)).collect();
        rate_row(&mut out, &label(&runs[0]), &rates);
        latency_row(
            &mut out,
            "round-trip latency",
            runs.iter().map(|r| r.round_trips[at].latency).collect(),
        );
    }
    let private: Vec<_> = runs.iter().map(|r| per(r.private_deliveries, &r.private)).collect();
    rate_row(&mut out, "private messages to a user's 10 connections, deliveries", &private);
    latency_row(&mut out, "private latency", runs.iter().map(|r| r.private_latency).collect());
    out.push_str(&format!(
        "\n\nfan-out: {} messages, {} in flight, to every member of the filled room; \
         private: {} messages, {} in flight; latency from send to receipt.\n",
        args.messages,
        args.in_flight,
        args.messages * 10,
        args.in_flight
    ));
    out
}
