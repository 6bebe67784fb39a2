//! Scale on one machine, side by side: the `switchboard` release binary, a
//! bare Node `ws` room hub (`bench/node/ws-hub.mjs`), the same room hub on
//! socketioxide, the Rust Socket.IO server (`socketioxide-hub`, built from
//! `bench/src/bin/socketioxide-hub.rs`) and on Socket.IO 4.8
//! (`bench/node/socketio-hub.mjs`) under the same load, one after the other
//! in one run, so the ratios hold on a noisy machine. One load client (this
//! process) speaks each server's frames as raw text (see
//! `switchboard_bench::wire`) and reports its own CPU in every row: where it
//! nears a whole core, the client may be what limits the row.
//!
//! - **storm**: N connections opened `--parallel` at a time (a reconnect
//!   storm), timed until every one was welcomed.
//! - **fill**: those N connections join one room, `--parallel` joins in
//!   flight, timed until every join is acked. Switchboard runs with its
//!   defaults, presence on; every client keeps reading what it is sent.
//! - **fan-out**: one more connection joins and publishes `--messages`
//!   messages to the room, `--in-flight` unacknowledged at a time, timed
//!   until every member has received every message (deliveries per second).
//!   Switchboard's per-connection rate limit is lifted for the publisher.
//!   Each message carries its send time, so every delivery's latency is
//!   known (p50, p99).
//! - **round trip**: 1 and then 100 connections, each alone in its own
//!   room, publish and wait for their own message to come back, one at a
//!   time (round trips per second, p50, p99); then the 100 again publishing
//!   with an id, as the SDKs do, each waiting for its ack and its message.
//! - **private**: one user holds 10 connections; another sends it
//!   `50 × --messages` private messages, `--in-flight` at a time, timed
//!   until every connection has every message (50,000 deliveries by
//!   default: long enough that the servers' CPU, sampled in 10 ms ticks,
//!   is measured to a few percent).
//! - **stalled member**: a room of 200 reading members and one that stops
//!   reading after its join (with a 4 KiB TCP receive window); 400 messages
//!   of 16 KiB are published, `--in-flight` at a time, timed until every
//!   reading member has them all. Reported: their rate, whether the server
//!   cut the stalled member off, and the server's RSS growth meanwhile.
//!   Switchboard runs with `limits.outbound_queue_bytes = 1 MiB` (the other
//!   phases queue far less per connection).
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! (cd bench/node && npm ci)
//! target/release/scale --connections 10000 --out bench/results/scale.md
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt, stream};
use indicatif::ProgressBar;
use switchboard_bench::percentiles::Percentiles;
use switchboard_bench::process::{Hub, own_cpu};
use switchboard_bench::receive::{Arrived, Received, join_room, read_on};
use switchboard_bench::report::progress;
use switchboard_bench::wire::{self, Proto, Socket, stamped};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Storms, room fills, fan-out, round trips and private messages against
/// Switchboard, a Node `ws` hub, a socketioxide hub and a Socket.IO hub.
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
    /// Messages published in the fan-out phase (ten times as many private ones).
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Requests in flight (sent, not yet acked) while publishing.
    #[arg(long, default_value_t = 4)]
    in_flight: usize,
    /// Measure Switchboard a second time, its clients connected with
    /// `?batch=1` as the SDKs connect (several frames to a WebSocket
    /// message), right after the first.
    #[arg(long)]
    batch: bool,
    /// Leave out Switchboard (to look at the peers alone).
    #[arg(long)]
    no_switchboard: bool,
    /// Leave out the Node peers (`ws` and Socket.IO).
    #[arg(long)]
    no_node: bool,
    /// Leave out Socket.IO only.
    #[arg(long)]
    no_socketio: bool,
    /// The socketioxide room hub (`bench/src/bin/socketioxide-hub.rs`), the
    /// Rust peer.
    #[arg(long, default_value = "target/release/socketioxide-hub")]
    socketioxide: PathBuf,
    /// Leave out socketioxide.
    #[arg(long)]
    no_socketioxide: bool,
    /// Write the Markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Draw the chart (SVG) here: each server's speed in each scenario,
    /// relative to the Node `ws` hub.
    #[arg(long)]
    chart: Option<PathBuf>,
}

/// What one server did.
struct Run {
    name: &'static str,
    storm: Phase,
    fill: Phase,
    fanout: Phase,
    /// Messages every member received in the fan-out phase.
    deliveries: usize,
    fanout_latency: Percentiles,
    /// Round trips with 1 and with 100 connections, then with 100 acked.
    round_trips: Vec<RoundTrips>,
    private: Phase,
    private_deliveries: usize,
    private_latency: Percentiles,
    stalled: Stalled,
}

/// The stalled-member phase.
struct Stalled {
    phase: Phase,
    deliveries: usize,
    /// Whether the stalled member's connection was closed by the server.
    cut_off: bool,
    /// The server's RSS growth during the phase, in bytes.
    rss_growth: u64,
}

/// Round trips through the hub by `connections` clients at once.
struct RoundTrips {
    connections: usize,
    /// Published with an id, as the SDKs do: a round trip waits for the
    /// ack and the message.
    acked: bool,
    count: usize,
    phase: Phase,
    latency: Percentiles,
}

/// One timed phase, with the CPU both sides spent in it.
struct Phase {
    elapsed: Duration,
    server_cpu: Duration,
    client_cpu: Duration,
    /// Connections the server closed before the phase was done with them
    /// (slow consumers cut off, for example).
    lost: usize,
    /// Messages that never arrived (dropped by the server).
    missing: usize,
}

impl Phase {
    /// Starts timing a phase on `hub`.
    fn start(hub: &Hub) -> std::io::Result<Timer> {
        Ok(Timer { started: Instant::now(), server: hub.cpu()?, client: own_cpu()? })
    }

    fn cell(&self) -> String {
        format!(
            "{:.2} s (server CPU {:.1} s, client {:.1} s{})",
            self.elapsed.as_secs_f64(),
            self.server_cpu.as_secs_f64(),
            self.client_cpu.as_secs_f64(),
            self.losses()
        )
    }

    /// What the server lost in the phase, if anything, in bold.
    fn losses(&self) -> String {
        let mut out = String::new();
        if self.lost > 0 {
            out.push_str(&format!(", **{} closed by the server**", self.lost));
        }
        if self.missing > 0 {
            out.push_str(&format!(", **{} messages never arrived**", self.missing));
        }
        out
    }

    /// The load client's CPU over the phase's wall time: near 1 (a whole
    /// core) or above, the client may be what limits the phase.
    fn client_load(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// `count` per second of the phase and per second of server CPU.
    fn rates(&self, count: usize) -> (f64, f64) {
        (
            count as f64 / self.elapsed.as_secs_f64(),
            count as f64 / self.server_cpu.as_secs_f64().max(0.01),
        )
    }
}

/// A phase being timed.
struct Timer {
    started: Instant,
    server: Duration,
    client: Duration,
}

impl Timer {
    fn stop(self, hub: &Hub, lost: usize) -> std::io::Result<Phase> {
        Ok(Phase {
            elapsed: self.started.elapsed(),
            server_cpu: hub.cpu()?.saturating_sub(self.server),
            client_cpu: own_cpu()?.saturating_sub(self.client),
            lost,
            missing: 0,
        })
    }

    /// Stops a phase that waited for `expected` messages: timed to the last
    /// that arrived, with those that did not counted as missing.
    fn stop_arrived(self, hub: &Hub, arrived: Arrived, expected: usize) -> std::io::Result<Phase> {
        let elapsed = arrived.at.saturating_duration_since(self.started);
        let mut phase = self.stop(hub, 0)?;
        phase.elapsed = elapsed;
        phase.missing = expected.saturating_sub(arrived.count);
        Ok(phase)
    }
}

type Failure = Box<dyn std::error::Error>;

/// Names the step an error came from.
fn during<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> Failure {
    move |error| format!("{step}: {error}").into()
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let mut runs = Vec::new();
    // The publisher sends faster than a chat client would.
    let config =
        std::env::temp_dir().join(format!("switchboard-scale-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[limits]\nmessages_per_sec = 1000000\noutbound_queue_bytes = 1048576\n",
    )?;
    let mut hub_args = vec![
        "--log".to_owned(),
        "error".to_owned(),
        "--max-connections".to_owned(),
        (args.connections + 1_000).to_string(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    hub_args.extend(args.hub_args.iter().cloned());
    if !args.no_switchboard {
        let hub = Hub::start(&args.binary, &hub_args).await?;
        runs.push(measure("switchboard", Proto::Json, &hub, &args).await?);
        drop(hub);
        if args.batch {
            let hub = Hub::start(&args.binary, &hub_args).await?;
            runs.push(measure("switchboard, batch=1", Proto::JsonBatched, &hub, &args).await?);
            drop(hub);
        }
    }
    if !args.no_node {
        let hub = Hub::start("node".as_ref(), &["bench/node/ws-hub.mjs".to_owned()]).await?;
        runs.push(measure(NODE_WS, Proto::Json, &hub, &args).await?);
        drop(hub);
    }
    if !args.no_socketioxide {
        let hub = Hub::start(&args.socketioxide, &[]).await?;
        runs.push(measure("socketioxide 0.18", Proto::SocketIo, &hub, &args).await?);
        drop(hub);
    }
    if !args.no_node && !args.no_socketio {
        let script = "bench/node/socketio-hub.mjs".to_owned();
        let hub = Hub::start("node".as_ref(), &[script]).await?;
        runs.push(measure("Socket.IO 4.8", Proto::SocketIo, &hub, &args).await?);
    }
    let table = table(&runs, &args);
    switchboard_bench::report::publish(&table, args.out.as_deref())?;
    if let Some(path) = &args.chart {
        chart(&runs, args.connections, path)?;
    }
    Ok(())
}

/// The run every chart bar is relative to.
const NODE_WS: &str = "Node ws hub";

/// Each server's speed in each scenario relative to the Node `ws` hub's: the
/// inverse time for storm and fill, the rate otherwise.
fn chart(runs: &[Run], connections: usize, path: &std::path::Path) -> Result<(), Failure> {
    let Some(base) = runs.iter().find(|run| run.name == NODE_WS) else {
        return Ok(());
    };
    fn speed(phase: &Phase) -> f64 {
        1.0 / phase.elapsed.as_secs_f64().max(1e-6)
    }
    /// How fast a run was in one scenario.
    type Speed = fn(&Run) -> f64;
    let scenarios: [(&str, Speed); 7] = [
        ("connect storm", |r| speed(&r.storm)),
        ("room fill", |r| speed(&r.fill)),
        ("room fan-out", |r| r.fanout.rates(r.deliveries).0),
        ("round trips x1", |r| r.round_trips[0].phase.rates(r.round_trips[0].count).0),
        ("round trips x100", |r| r.round_trips[1].phase.rates(r.round_trips[1].count).0),
        ("acked round trips x100", |r| r.round_trips[2].phase.rates(r.round_trips[2].count).0),
        ("private x10", |r| r.private.rates(r.private_deliveries).0),
    ];
    let groups: Vec<(String, Vec<f64>)> = scenarios
        .iter()
        .map(|(label, value)| {
            let unit = value(base).max(1e-9);
            (label.to_string(), runs.iter().map(|r| value(r) / unit).collect())
        })
        .collect();
    let names: Vec<&str> = runs.iter().map(|r| r.name).collect();
    let title =
        format!("Speed relative to the Node ws hub (= 1), {connections} connections, one run");
    switchboard_bench::chart::grouped_bars(path, &title, "×", &names, &groups)
}

async fn measure(name: &'static str, proto: Proto, hub: &Hub, args: &Args) -> Result<Run, Failure> {
    let addr = hub.addr;
    let bar = progress(name, "connect storm", args.connections);
    let timer = Phase::start(hub)?;
    let sockets: Vec<Socket> = stream::iter(0..args.connections)
        .map(|n| {
            let bar = bar.clone();
            async move {
                let socket = proto.open(addr, &format!("u{n}")).await;
                bar.inc(1);
                socket
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(during("connect storm"))?;
    let storm = timer.stop(hub, 0)?;
    bar.finish();

    let bar = progress(name, "room fill", sockets.len());
    let timer = Phase::start(hub)?;
    let received = Arc::new(Received::default());
    let results: Vec<_> = stream::iter(sockets)
        .map(|socket| {
            let bar = bar.clone();
            let joined = join_room(socket, proto, "bench", received.clone());
            async move {
                let result = joined.await;
                bar.inc(1);
                result
            }
        })
        .buffer_unordered(args.parallel.max(1))
        .collect()
        .await;
    let lost = results.iter().filter(|r| r.is_err()).count();
    let readers: Vec<JoinHandle<()>> = results.into_iter().filter_map(Result::ok).collect();
    let fill = timer.stop(hub, lost)?;
    bar.finish();

    // The publisher is in the room too (it gets its own messages, as every
    // hub here sends them to the sender as well), not counted as a member.
    let members = readers.len();
    let expected = members * args.messages;
    let mut publisher = proto.open(addr, "publisher").await.map_err(during("fan-out: open"))?;
    publisher.send(Message::text(proto.join("bench"))).await?;
    let acked = wire::read_until(&mut publisher, proto, |text| proto.is_ack(text)).await;
    acked.map_err(during("fan-out: the publisher's join"))?;
    let bar = progress(name, "fan-out deliveries", expected);
    let timer = Phase::start(hub)?;
    let publish = |n| proto.publish("bench", Some(n), &stamped(n));
    let sent = wire::send_acked(&mut publisher, proto, args.messages, args.in_flight, publish);
    sent.await.map_err(during("fan-out: publishing"))?;
    let arrived = received.wait_for(expected, &bar).await;
    let fanout = timer.stop_arrived(hub, arrived, expected)?;
    bar.finish();
    let fanout_latency = received.take_latencies();
    for reader in readers {
        reader.abort();
    }
    drop(publisher);
    // 10,000 connections just closed: let the server finish with them.
    hub.settle().await?;

    let mut round_trips = Vec::new();
    for (connections, each, acked) in [(1, 5_000, false), (100, 200, false), (100, 200, true)] {
        let label = format!("round trips x{connections}{}", if acked { " acked" } else { "" });
        let bar = progress(name, &label, connections * each);
        let trips = round_trip(hub, proto, connections, each, acked, &bar).await;
        round_trips.push(trips.map_err(during("round trips"))?);
        bar.finish();
        hub.settle().await?;
    }

    let count = args.messages * PRIVATE_PER_MESSAGE;
    let bar = progress(name, "private deliveries", count * 10);
    let (private, private_deliveries, private_latency) =
        private(hub, proto, count, args.in_flight, &bar).await.map_err(during("private"))?;
    bar.finish();
    hub.settle().await?;

    let bar = progress(name, "stalled member, deliveries", STALL_MEMBERS * STALL_MESSAGES);
    let stalled =
        stalled(hub, proto, args.in_flight, &bar).await.map_err(during("stalled member"))?;
    bar.finish();
    Ok(Run {
        name,
        storm,
        fill,
        fanout,
        deliveries: arrived.count,
        fanout_latency,
        round_trips,
        private,
        private_deliveries,
        private_latency,
        stalled,
    })
}

/// Private messages sent per `--messages`.
const PRIVATE_PER_MESSAGE: usize = 50;

/// Reading members of the stalled-member room.
const STALL_MEMBERS: usize = 200;
/// Messages published to it.
const STALL_MESSAGES: usize = 400;

/// A room of [`STALL_MEMBERS`] reading members and one that stops reading
/// after its join; [`STALL_MESSAGES`] messages of 16 KiB are published.
async fn stalled(
    hub: &Hub,
    proto: Proto,
    in_flight: usize,
    bar: &ProgressBar,
) -> Result<Stalled, Failure> {
    let received = Arc::new(Received::default());
    let mut readers = Vec::new();
    for n in 0..STALL_MEMBERS {
        let socket =
            proto.open(hub.addr, &format!("s{n}")).await.map_err(during("a member's open"))?;
        let reader = join_room(socket, proto, "stall", received.clone());
        readers.push(reader.await.map_err(during("a member's join"))?);
    }
    let mut stalled = proto.open_small_window(hub.addr, "stalled", 4096).await?;
    stalled.send(Message::text(proto.join("stall"))).await?;
    let acked = wire::read_until(&mut stalled, proto, |text| proto.is_ack(text)).await;
    acked.map_err(during("the stalled member's join"))?;
    let mut publisher = proto.open(hub.addr, "stall-publisher").await?;
    publisher.send(Message::text(proto.join("stall"))).await?;
    let acked = wire::read_until(&mut publisher, proto, |text| proto.is_ack(text)).await;
    acked.map_err(during("the publisher's join"))?;
    let rss = hub.rss_bytes()?;
    let timer = Phase::start(hub)?;
    let publish = |n| proto.publish("stall", Some(n), &wire::stamped_padded(n, 16 * 1024));
    let sent = wire::send_acked(&mut publisher, proto, STALL_MESSAGES, in_flight, publish).await;
    sent.map_err(during("publishing"))?;
    let arrived = received.wait_for(STALL_MEMBERS * STALL_MESSAGES, bar).await;
    let phase = timer.stop_arrived(hub, arrived, STALL_MEMBERS * STALL_MESSAGES)?;
    let rss_growth = hub.rss_bytes()?.saturating_sub(rss);
    for reader in readers {
        reader.abort();
    }
    // What reached the stalled member, until the server's close or 3 s of
    // silence.
    let cut_off = loop {
        match tokio::time::timeout(Duration::from_secs(3), stalled.next()).await {
            Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => break true,
            Ok(Some(Ok(_))) => continue,
            Err(_) => break false,
        }
    };
    Ok(Stalled { phase, deliveries: arrived.count, cut_off, rss_growth })
}

/// `connections` clients, each alone in its own room, publish `each`
/// messages one at a time, each waiting for its own message to come back
/// (and, `acked`, for the ack of a publish with an id, as the SDKs publish).
async fn round_trip(
    hub: &Hub,
    proto: Proto,
    connections: usize,
    each: usize,
    acked: bool,
    bar: &ProgressBar,
) -> Result<RoundTrips, Failure> {
    let mut sockets = Vec::new();
    for n in 0..connections {
        let mut socket = proto.open(hub.addr, &format!("rtt{n}")).await?;
        socket.send(Message::text(proto.join(&format!("rtt{n}")))).await?;
        wire::read_until(&mut socket, proto, |text| proto.is_ack(text)).await?;
        sockets.push((n, socket));
    }
    let timer = Phase::start(hub)?;
    let trips = sockets.into_iter().map(|(n, mut socket)| async move {
        let room = format!("rtt{n}");
        let mut latencies = Vec::with_capacity(each);
        for trip in 0..each {
            let sent = Instant::now();
            let id = acked.then_some(trip);
            socket.send(Message::text(proto.publish(&room, id, "1"))).await?;
            // Without an id only the message comes; with one, its ack too,
            // in either order (in one batched message, or two).
            let (mut ack, mut message) = (!acked, false);
            while !(ack && message) {
                let text = wire::read_until(&mut socket, proto, |_| true).await?;
                for frame in text.split('\n') {
                    ack |= proto.is_ack(frame);
                    message |= proto.is_message(frame);
                }
            }
            latencies.push(sent.elapsed());
            bar.inc(1);
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(latencies)
    });
    let results = futures::future::join_all(trips).await;
    let lost = results.iter().filter(|r| r.is_err()).count();
    let phase = timer.stop(hub, lost)?;
    let latencies: Vec<Duration> = results.into_iter().filter_map(Result::ok).flatten().collect();
    Ok(RoundTrips {
        connections,
        acked,
        count: latencies.len(),
        phase,
        latency: Percentiles::of(latencies),
    })
}

/// One user with 10 connections; another sends it `count` private
/// messages, `in_flight` at a time, until every connection has them all.
async fn private(
    hub: &Hub,
    proto: Proto,
    count: usize,
    in_flight: usize,
    bar: &ProgressBar,
) -> Result<(Phase, usize, Percentiles), Failure> {
    let received = Arc::new(Received::default());
    let mut readers = Vec::new();
    for _ in 0..10 {
        readers.push(read_on(proto.open(hub.addr, "target").await?, proto, received.clone()));
    }
    let mut sender = proto.open(hub.addr, "sender").await?;
    let timer = Phase::start(hub)?;
    let send = |n| proto.send("target", n, &stamped(n));
    wire::send_acked(&mut sender, proto, count, in_flight, send).await?;
    let arrived = received.wait_for(count * 10, bar).await;
    let phase = timer.stop_arrived(hub, arrived, count * 10)?;
    for reader in readers {
        reader.abort();
    }
    Ok((phase, arrived.count, received.take_latencies()))
}

fn table(runs: &[Run], args: &Args) -> String {
    let mut out = format!(
        "{} connections, {} at a time, one machine, loopback\n\n| scenario |",
        args.connections, args.parallel
    );
    for run in runs {
        out.push_str(&format!(" {} |", run.name));
    }
    let peers = &runs[1.min(runs.len())..];
    for peer in peers {
        out.push_str(&format!(" switchboard / {} |", peer.name));
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(runs.len() + peers.len()));
    for (label, pick) in [
        ("connect storm, all welcomed", (|r: &Run| &r.storm) as fn(&Run) -> &Phase),
        ("fill one room, all joins acked", |r: &Run| &r.fill),
        ("fan-out to the room, every member has every message", |r: &Run| &r.fanout),
    ] {
        out.push_str(&format!("\n| {label} |"));
        for run in runs {
            out.push_str(&format!(" {} |", pick(run).cell()));
        }
        for peer in peers {
            let ratio = pick(&runs[0]).elapsed.as_secs_f64() / pick(peer).elapsed.as_secs_f64();
            out.push_str(&format!(" {ratio:.2}× the time |"));
        }
    }
    let rate_row = |out: &mut String, label: &str, phases: Vec<(&Phase, usize)>| {
        out.push_str(&format!("\n| {label} |"));
        for (phase, count) in &phases {
            let (rate, per_cpu) = phase.rates(*count);
            out.push_str(&format!(
                " {rate:.0}/s ({per_cpu:.0} per server CPU s; client CPU {:.0}%{}) |",
                phase.client_load() * 100.0,
                phase.losses()
            ));
        }
        let rates: Vec<(f64, f64)> =
            phases.iter().map(|(phase, count)| phase.rates(*count)).collect();
        if let Some(((ours, ours_cpu), peers)) = rates.split_first() {
            for (rate, per_cpu) in peers {
                out.push_str(&format!(
                    " {:.2}× the rate ({:.2}× per core) |",
                    ours / rate,
                    ours_cpu / per_cpu
                ));
            }
        }
    };
    let latency_row = |out: &mut String, label: &str, cells: Vec<Percentiles>| {
        out.push_str(&format!("\n| {label} |"));
        for cell in &cells {
            out.push_str(&format!(" {} |", cell.cell()));
        }
        out.push_str(&" |".repeat(cells.len().saturating_sub(1)));
    };
    rate_row(
        &mut out,
        "fan-out deliveries",
        runs.iter().map(|r| (&r.fanout, r.deliveries)).collect(),
    );
    latency_row(&mut out, "fan-out latency", runs.iter().map(|r| r.fanout_latency).collect());
    let trips = runs.first().map_or(0, |r| r.round_trips.len());
    for at in 0..trips {
        let first = &runs[0].round_trips[at];
        let label = format!(
            "round trips, {} connection(s), one at a time each{}",
            first.connections,
            if first.acked { ", acked (publish with an id: ack and message)" } else { "" }
        );
        let phases =
            runs.iter().map(|r| (&r.round_trips[at].phase, r.round_trips[at].count)).collect();
        rate_row(&mut out, &label, phases);
        latency_row(
            &mut out,
            "round-trip latency",
            runs.iter().map(|r| r.round_trips[at].latency).collect(),
        );
    }
    let private = runs.iter().map(|r| (&r.private, r.private_deliveries)).collect();
    rate_row(&mut out, "private messages to a user's 10 connections, deliveries", private);
    latency_row(&mut out, "private latency", runs.iter().map(|r| r.private_latency).collect());
    let stalled = runs.iter().map(|r| (&r.stalled.phase, r.stalled.deliveries)).collect();
    rate_row(&mut out, "room of 200 with a member that stopped reading, deliveries", stalled);
    out.push_str("\n| the stalled member; server RSS growth meanwhile |");
    for run in runs {
        out.push_str(&format!(
            " {}; +{:.1} MiB |",
            if run.stalled.cut_off { "cut off" } else { "**still served**" },
            run.stalled.rss_growth as f64 / (1024.0 * 1024.0)
        ));
    }
    out.push_str(&" |".repeat(runs.len().saturating_sub(1)));
    out.push_str(&format!(
        "\n\nfan-out: {} messages, {} in flight, to every member of the filled room; \
         private: {} messages, {} in flight; latency from send to receipt; stalled member: \
         {STALL_MESSAGES} messages of 16 KiB to {STALL_MEMBERS} reading members and one that stopped \
         reading (Switchboard with `limits.outbound_queue_bytes = 1 MiB`). Client CPU: the load \
         client's CPU time over the phase's wall time; at 100% or more (it may use both cores) \
         the client, not the server, may be what limits the row.\n",
        args.messages,
        args.in_flight,
        args.messages * PRIVATE_PER_MESSAGE,
        args.in_flight
    ));
    out
}
