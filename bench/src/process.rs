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
