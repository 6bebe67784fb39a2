//! [`HubProcess`]: the real `switchboard` binary in a process of its own,
//! for what only a process can show: a node killed with SIGKILL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::TIMEOUT;

/// A `switchboard` process on a loopback port, killed when dropped.
pub struct HubProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
}

/// The `switchboard` binary that `cargo test --workspace` built beside
/// this test's executable.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let binary = dir.join("switchboard");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo build -p switchboard-server, or cargo test --workspace)",
        binary.display()
    );
    binary
}

impl HubProcess {
    /// Starts `switchboard` with `args` on a free port and waits until its
    /// `/health` answers.
    pub async fn start(args: &[&str]) -> HubProcess {
        HubProcess::start_with(args, &[]).await
    }

    /// Starts the `switchboard` binary on `redis` (its layout's flags and
    /// variables) with `vars`, and waits until it answers.
    pub async fn start_on_redis(redis: &crate::TestRedis, vars: &[(&str, &str)]) -> HubProcess {
        let (flags, env) = redis.hub_flags();
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        let mut all = vars.to_vec();
        all.extend(env.iter().map(|(name, value)| (name.as_str(), value.as_str())));
        HubProcess::start_with(&args, &all).await
    }

    /// Starts the `switchboard` binary with `args` and `vars`, and waits
    /// until it answers.
    pub async fn start_with(args: &[&str], vars: &[(&str, &str)]) -> HubProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut command = Command::new(binary());
        // The test harness's own variables would be read as settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_TEST_") {
                command.env_remove(name);
            }
        }
        let child = command
            .args(["--bind", &addr.to_string(), "--log", "warn"])
            .args(args)
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            // Its logs only when asked for, like the in-process hubs'.
            .stderr(if std::env::var_os("SWITCHBOARD_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("switchboard starts");
        let hub = HubProcess { addr, child: Some(child) };
        let health = format!("http://{addr}/health");
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Ok(response) = crate::http().get(&health).send().await {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "switchboard answers in time");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        hub
    }

    /// The WebSocket endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// An HTTP URL on this hub.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Kills it with SIGKILL: no goodbye to anyone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
