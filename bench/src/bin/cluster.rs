//! Room fan-out across nodes on Redis, side by side in one run: one
//! `switchboard` node alone (no Redis), then one, two and three nodes on
//! one Redis, two nodes over two independent Redis servers
//! (`redis.shards`) and two nodes on a Redis Cluster of three masters,
//! with the rooms' members split between the nodes and the publisher on
//! the first. With `--rooms`, the members are spread over that many rooms
//! and the messages go to each in turn (one room lives on one shard). Every member reads every message; reported: deliveries per
//! second, latency from send to receipt (p50, p99), the CPU the nodes and
//! Redis spent and deliveries per second of that CPU (per core of all
//! server processes), the load client's own CPU (a row where it nears the
//! elapsed time is bound by the client); and, from filling the room, how
//! long each member's join took from request to ack (p50, p99), one join at
//! a time.
//!
//! ```sh
//! cargo build --release -p switchboard-server -p switchboard-bench
//! target/release/cluster --members 2000 --out bench/results/cluster.md
//! target/release/cluster --members 2000 --rooms 64 --messages 2000
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::SinkExt;
use switchboard_bench::percentiles::Percentiles;
use switchboard_bench::process::{Hub, Redises, own_cpu};
use switchboard_bench::receive::{Received, join_room};
use switchboard_bench::report::progress;
use switchboard_bench::wire::{self, Proto, stamped};
use tokio_tungstenite::tungstenite::Message;

/// Cross-node fan-out on Redis against one node.
#[derive(Parser)]
struct Args {
    /// Members of the room (split evenly between the nodes).
    #[arg(long, default_value_t = 2_000)]
    members: usize,
    /// Messages published.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Rooms the members are spread over; the messages go to each in turn.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Only the setups on one Redis (for a hub built before shards and
    /// Redis Cluster, as a baseline).
    #[arg(long)]
    one_redis_only: bool,
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

/// One setup's result.
struct Run {
    name: &'static str,
    /// Deliveries due.
    expected: usize,
    /// Each member's join, request to ack.
    joins: Percentiles,
    elapsed: Duration,
    deliveries: usize,
    latency: Percentiles,
    nodes_cpu: Duration,
    redis_cpu: Duration,
    client_cpu: Duration,
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let rooms = args.rooms.max(1);
    let mut runs = Vec::new();
    let alone = Hub::start(&args.binary, &hub_args(&args, "")?).await?;
    runs.push(measure("1 node, no Redis", &[&alone], None, rooms, &args).await?);
    drop(alone);
    let setups: [(&'static str, usize, Layout); 6] = [
        ("1 node on Redis", 1, Layout::Independent(1)),
        ("2 nodes on Redis", 2, Layout::Independent(1)),
        ("3 nodes on Redis", 3, Layout::Independent(1)),
        ("2 nodes, 2 Redis shards", 2, Layout::Independent(2)),
        ("2 nodes, Redis Cluster (3 masters)", 2, Layout::Cluster(3)),
        ("1 node, Redis Cluster (3 masters)", 1, Layout::Cluster(3)),
    ];
    for (name, nodes, layout) in setups {
        if args.one_redis_only && !matches!(layout, Layout::Independent(1)) {
            continue;
        }
        let redis = match layout {
            Layout::Independent(n) => Redises::independent(n).await?,
            Layout::Cluster(masters) => Redises::cluster(masters).await?,
        };
        let with_redis = hub_args(&args, &redis.toml())?;
        let mut hubs = Vec::new();
        for _ in 0..nodes {
            hubs.push(Hub::start(&args.binary, &with_redis).await?);
        }
        let hubs: Vec<&Hub> = hubs.iter().collect();
        runs.push(measure(name, &hubs, Some(&redis), rooms, &args).await?);
    }
    let table = table(&runs, &args);
    switchboard_bench::report::publish(&table, args.out.as_deref())?;
    Ok(())
}

/// Where a setup's keys live.
enum Layout {
    /// This many independent servers (one: `redis.url`).
    Independent(usize),
    /// A Redis Cluster of this many masters.
    Cluster(usize),
}

/// Configuration files written so far (each setup has its own).
static CONFIGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A hub's arguments, with `redis` (a `[redis]` section, or nothing) in
/// its configuration file.
fn hub_args(args: &Args, redis: &str) -> Result<Vec<String>, Failure> {
    let config = std::env::temp_dir().join(format!(
        "switchboard-cluster-{}-{}.toml",
        std::process::id(),
        CONFIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&config, format!("[limits]\nmessages_per_sec = 1000000\n{redis}"))?;
    Ok(vec![
        "--log".to_owned(),
        std::env::var("HUB_LOG").unwrap_or_else(|_| "error".to_owned()),
        "--max-connections".to_owned(),
        (args.members + 1_000).to_string(),
        "--config".to_owned(),
        config.display().to_string(),
    ])
}

fn cpu(hubs: &[&Hub], redis: Option<&Redises>) -> std::io::Result<(Duration, Duration)> {
    let mut nodes = Duration::ZERO;
    for hub in hubs {
        nodes += hub.cpu()?;
    }
    let redis = match redis {
        Some(redis) => redis.cpu()?,
        None => Duration::ZERO,
    };
    Ok((nodes, redis))
}

async fn measure(
    name: &'static str,
    hubs: &[&Hub],
    redis: Option<&Redises>,
    rooms: usize,
    args: &Args,
) -> Result<Run, Failure> {
    let proto = Proto::Json;
    let received = Arc::new(Received::default());
    let mut readers = Vec::new();
    let mut joins = Vec::with_capacity(args.members);
    for n in 0..args.members {
        let hub = hubs[n % hubs.len()];
        let socket = proto.open(hub.addr, &format!("m{n}")).await?;
        let asked = Instant::now();
        let room = format!("bench-{}", n % rooms);
        readers.push(join_room(socket, proto, &room, received.clone()).await?);
        joins.push(asked.elapsed());
    }
    let mut publisher = proto.open(hubs[0].addr, "publisher").await?;
    for room in 0..rooms {
        publisher.send(Message::text(proto.join(&format!("bench-{room}")))).await?;
        wire::read_until(&mut publisher, proto, |text| proto.is_ack(text)).await?;
    }
    for hub in hubs {
        hub.settle().await?;
    }
    // Message n goes to room n % rooms, which holds every rooms-th member.
    let members_in = |room: usize| args.members / rooms + usize::from(room < args.members % rooms);
    let expected: usize = (0..args.messages).map(|n| members_in(n % rooms)).sum();
    let bar = progress(name, "deliveries", expected);
    let (nodes_before, redis_before) = cpu(hubs, redis)?;
    let client_before = own_cpu()?;
    let started = Instant::now();
    let publish = |n| proto.publish(&format!("bench-{}", n % rooms), Some(n), &stamped(n));
    wire::send_acked(&mut publisher, proto, args.messages, args.in_flight, publish).await?;
    let arrived = received.wait_for(expected, &bar).await;
    let elapsed = arrived.at.saturating_duration_since(started);
    bar.finish();
    let (nodes_after, redis_after) = cpu(hubs, redis)?;
    let client_cpu = own_cpu()?.saturating_sub(client_before);
    for reader in readers {
        reader.abort();
    }
    let deliveries = arrived.count;
    Ok(Run {
        name,
        expected,
        joins: Percentiles::of(joins),
        elapsed,
        deliveries,
        latency: received.take_latencies(),
        nodes_cpu: nodes_after.saturating_sub(nodes_before),
        redis_cpu: redis_after.saturating_sub(redis_before),
        client_cpu,
    })
}

fn table(runs: &[Run], args: &Args) -> String {
    let mut out = format!(
        "Room fan-out: {} members (split evenly between the nodes) in {} room(s), {} messages (to each room in turn), {} in flight, \
         publisher on the first node; one machine ({} cores), loopback, one run\n\n\
         | setup | deliveries/s | relative to 1 node | per core of the servers (nodes + Redis) | relative | latency | nodes' CPU | Redis CPU | load client's CPU | join (request to ack) |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        args.members,
        args.rooms.max(1),
        args.messages,
        args.in_flight,
        std::thread::available_parallelism().map_or(1, usize::from),
    );
    let rate_of = |run: &Run| run.deliveries as f64 / run.elapsed.as_secs_f64();
    let per_core_of = |run: &Run| {
        let cpu = (run.nodes_cpu + run.redis_cpu).as_secs_f64();
        if cpu > 0.0 { run.deliveries as f64 / cpu } else { 0.0 }
    };
    let base = runs.first().map_or(1.0, rate_of);
    let base_per_core = runs.first().map_or(1.0, per_core_of);
    for run in runs {
        let rate = rate_of(run);
        let per_core = per_core_of(run);
        out.push_str(&format!(
            "\n| {} | {rate:.0} ({} of {}) | {:.2}× | {per_core:.0} | {:.2}× | {} | {:.2} s | {:.2} s | {:.2} s of {:.2} s | {} |",
            run.name,
            run.deliveries,
            run.expected,
            rate / base,
            per_core / base_per_core,
            run.latency.cell(),
            run.nodes_cpu.as_secs_f64(),
            run.redis_cpu.as_secs_f64(),
            run.client_cpu.as_secs_f64(),
            run.elapsed.as_secs_f64(),
            run.joins.cell(),
        ));
    }
    out.push('\n');
    out
}
