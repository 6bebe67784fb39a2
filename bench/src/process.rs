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
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
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
