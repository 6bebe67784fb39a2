//! The hub under measurement: the real `switchboard` binary in its own
//! process, so its memory is its own and nothing of the load generator's.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A running `switchboard` process, killed on drop.
pub struct Hub {
    child: Child,
    /// Its loopback address, `127.0.0.1:port`.
    pub addr: std::net::SocketAddr,
}

impl Hub {
    /// Starts `binary` with `args` and `--bind 127.0.0.1:<free port>`, and
    /// waits (up to 15 s) until `/health` answers.
    pub async fn start(binary: &Path, args: &[String]) -> std::io::Result<Hub> {
        let addr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let child = Command::new(binary)
            .args(args)
            .arg("--bind")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let hub = Hub { child, addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !hub.healthy().await {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the hub did not answer /health in 15 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(hub)
    }

    /// Starts `binary` quietly (`--log error`) with `config` (TOML) as its
    /// configuration file, like [`Hub::start`]. The file lives only until
    /// the hub has read it.
    pub async fn start_configured(binary: &Path, config: &str) -> std::io::Result<Hub> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("switchboard-bench-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, config)?;
        let args = ["--log", "error", "--config"].map(str::to_owned);
        let mut args = args.to_vec();
        args.push(path.display().to_string());
        let hub = Hub::start(binary, &args).await;
        let _ = std::fs::remove_file(&path);
        hub
    }

    async fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else { return false };
        let request = "GET /health HTTP/1.0\r\nHost: bench\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200")
    }

    /// CPU time the process used so far (user + system), Linux `/proc`.
    pub fn cpu(&self) -> std::io::Result<Duration> {
        let pid = self.child.id().ok_or_else(|| std::io::Error::other("the hub exited"))?;
        cpu_of(&format!("/proc/{pid}/stat"))
    }

    /// The process id (0 once it exited).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Waits (at most 10 s) until the process is idle: less than 20 ms of CPU
    /// in 250 ms. Between phases, so one phase's clean-up (thousands of
    /// connections closing) is not measured as part of the next.
    pub async fn settle(&self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut last = self.cpu()?;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.cpu()?;
            if now.saturating_sub(last) < Duration::from_millis(20) {
                break;
            }
            last = now;
        }
        Ok(())
    }

    /// The process's resident set size in bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> std::io::Result<u64> {
        let pid = self.child.id().ok_or_else(|| std::io::Error::other("the hub exited"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| std::io::Error::other("no VmRSS in /proc status"))
    }
}

/// A `redis-server` of the benchmark's own on a free loopback port,
/// without persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Starts Debian's `redis-server` and waits (up to 15 s) until it
    /// accepts connections.
    pub async fn start() -> std::io::Result<RedisServer> {
        RedisServer::launch(&[]).await
    }

    /// Starts a `redis-server` in cluster mode (its cluster state in a
    /// folder of its own), not yet part of a cluster.
    async fn start_clustered() -> std::io::Result<RedisServer> {
        static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir()
            .join(format!("switchboard-bench-redis-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let dir = dir.display().to_string();
        RedisServer::launch(&["--cluster-enabled", "yes", "--dir", &dir]).await
    }

    /// Starts a `redis-server` on a free port with `extra` arguments, and
    /// waits (up to 15 s) until it accepts connections.
    async fn launch(extra: &[&str]) -> std::io::Result<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("redis-server did not listen in 15 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(RedisServer { child, port })
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// CPU time the server used so far.
    pub fn cpu(&self) -> std::io::Result<Duration> {
        let pid = self.child.id().ok_or_else(|| std::io::Error::other("redis exited"))?;
        cpu_of(&format!("/proc/{pid}/stat"))
    }
}

/// The Redis servers of one setup: one, several independent ones (the
/// hubs' `redis.shards`), or a Redis Cluster.
pub struct Redises {
    /// The servers, the first one the seed of a cluster.
    pub servers: Vec<RedisServer>,
    /// Whether they make a Redis Cluster.
    pub cluster: bool,
}

impl Redises {
    /// `n` independent servers.
    pub async fn independent(n: usize) -> std::io::Result<Redises> {
        let mut servers = Vec::new();
        for _ in 0..n {
            servers.push(RedisServer::start().await?);
        }
        Ok(Redises { servers, cluster: false })
    }

    /// A Redis Cluster of `masters` masters, made with `redis-cli --cluster
    /// create`, once it serves every slot.
    pub async fn cluster(masters: usize) -> std::io::Result<Redises> {
        let mut servers = Vec::new();
        for _ in 0..masters {
            servers.push(RedisServer::start_clustered().await?);
        }
        let mut create = std::process::Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for server in &servers {
            create.arg(format!("127.0.0.1:{}", server.port));
        }
        let made = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !made.success() {
            return Err(std::io::Error::other("redis-cli --cluster create failed"));
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ready = servers.iter().all(|server| {
                std::process::Command::new("redis-cli")
                    .args(["-p", &server.port.to_string(), "CLUSTER", "INFO"])
                    .output()
                    .is_ok_and(|out| {
                        String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
                    })
            });
            if ready {
                return Ok(Redises { servers, cluster: true });
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the redis cluster was not ready in 15 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `[redis]` section of a hub's configuration for these servers.
    pub fn toml(&self) -> String {
        let urls: Vec<String> = self.servers.iter().map(|s| format!("\"{}\"", s.url())).collect();
        match (self.cluster, urls.len()) {
            (true, _) => format!("[redis]\nurl = {}\ncluster = true\n", urls[0]),
            (false, 1) => format!("[redis]\nurl = {}\n", urls[0]),
            (false, _) => format!("[redis]\nshards = [{}]\n", urls.join(", ")),
        }
    }

    /// CPU time the servers used so far, together.
    pub fn cpu(&self) -> std::io::Result<Duration> {
        let mut total = Duration::ZERO;
        for server in &self.servers {
            total += server.cpu()?;
        }
        Ok(total)
    }
}

/// CPU time this process (the load generator) used so far.
pub fn own_cpu() -> std::io::Result<Duration> {
    cpu_of("/proc/self/stat")
}

/// User + system time from a `/proc/<pid>/stat` file.
fn cpu_of(path: &str) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |n: usize| fields.get(n).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5): 11 and 12 after `)`.
    // Linux reports them in USER_HZ, 100 per second on every mainstream build.
    Ok(Duration::from_millis((ticks(11) + ticks(12)) * 10))
}
