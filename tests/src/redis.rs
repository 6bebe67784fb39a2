//! [`TestRedis`]: a `redis-server` of a test's own on a free loopback port,
//! without persistence, stopped when dropped. Each test gets a server to
//! itself, so tests run in parallel without sharing keys, and a test can
//! stop and restart its server to see how hubs ride out an outage.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::TIMEOUT;

/// A Redis server for one test.
pub struct TestRedis {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl TestRedis {
    /// Starts a server and waits until it answers.
    pub async fn start() -> TestRedis {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("switchboard-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for redis");
        let mut redis = TestRedis { port, child: None, dir };
        redis.launch().await;
        redis
    }

    async fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (./scripts/test.sh installs Debian's redis-server)");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(tokio::time::Instant::now() < deadline, "redis-server answers in time");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command with `redis-cli`; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Stops the server at once (SIGKILL): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
