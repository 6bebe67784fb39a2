//! [`TestRedis`]: the `redis-server`s of a test's own on free loopback
//! ports, without persistence, stopped when dropped. Each test gets its
//! servers to itself, so tests run in parallel without sharing keys, and a
//! test can stop and restart them to see how hubs ride out an outage.
//!
//! The layout is one server; with `SWITCHBOARD_TEST_REDIS_SHARDS=<n>`, n
//! independent servers that the hubs use as `redis.shards`; with
//! `SWITCHBOARD_TEST_REDIS_CLUSTER=1`, a Redis Cluster of three masters
//! made with `redis-cli --cluster create` (`./scripts/test.sh` runs the
//! multi-node tests on each). A test that reads or writes a key itself goes
//! through [`TestRedis::cli`], which sends the command to the server that
//! holds the key.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::TIMEOUT;

/// The Redis servers of one test.
pub struct TestRedis {
    servers: Vec<Server>,
    /// Whether the servers make a Redis Cluster.
    cluster: bool,
}

/// One `redis-server`.
struct Server {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    /// Whether it runs in cluster mode.
    clustered: bool,
}

/// `n` servers on free ports, not started yet.
fn servers(n: usize, clustered: bool) -> Vec<Server> {
    (0..n)
        .map(|_| {
            let port = free_port();
            let dir = std::env::temp_dir()
                .join(format!("switchboard-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a folder for redis");
            Server { port, child: None, dir, clustered }
        })
        .collect()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

impl TestRedis {
    /// Starts the servers of the layout the environment asks for (one
    /// unless `SWITCHBOARD_TEST_REDIS_SHARDS` says more) and waits until
    /// they answer.
    pub async fn start() -> TestRedis {
        if std::env::var("SWITCHBOARD_TEST_REDIS_CLUSTER").is_ok_and(|on| on == "1") {
            return TestRedis::start_cluster().await;
        }
        let shards = std::env::var("SWITCHBOARD_TEST_REDIS_SHARDS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1usize)
            .max(1);
        TestRedis::start_shards(shards).await
    }

    /// Starts `n` independent servers, used as `redis.shards` when more
    /// than one.
    pub async fn start_shards(n: usize) -> TestRedis {
        let mut redis = TestRedis { servers: servers(n, false), cluster: false };
        redis.launch().await;
        redis
    }

    /// Starts a Redis Cluster of three masters, and waits until it serves
    /// every slot.
    pub async fn start_cluster() -> TestRedis {
        let mut redis = TestRedis { servers: servers(3, true), cluster: true };
        redis.launch().await;
        redis
    }

    async fn launch(&mut self) {
        for server in &mut self.servers {
            server.launch().await;
        }
        if !self.cluster {
            return;
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for server in &self.servers {
            create.arg(format!("127.0.0.1:{}", server.port));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli --cluster create runs");
        assert!(
            output.status.success(),
            "cluster created: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !self
            .servers
            .iter()
            .all(|server| server.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(tokio::time::Instant::now() < deadline, "the cluster is ready in time");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// `redis://127.0.0.1:<port>` of each server.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|server| format!("redis://127.0.0.1:{}", server.port)).collect()
    }

    /// Points `config` at these servers: `redis.url`, or `redis.shards`.
    pub fn configure(&self, config: &mut switchboard_server::Config) {
        if self.cluster {
            config.redis.url = self.urls().pop();
            config.redis.cluster = true;
            return;
        }
        match self.servers.len() {
            1 => config.redis.url = self.urls().pop(),
            _ => config.redis.shards = self.urls(),
        }
    }

    /// The command-line flags and environment that point a hub process at
    /// these servers.
    pub fn hub_flags(&self) -> (Vec<String>, Vec<(String, String)>) {
        if self.cluster {
            let cluster = vec![("SWITCHBOARD_REDIS__CLUSTER".to_owned(), "true".to_owned())];
            return (vec!["--redis-url".to_owned(), self.urls().remove(0)], cluster);
        }
        match self.servers.len() {
            1 => (vec!["--redis-url".to_owned(), self.urls().remove(0)], Vec::new()),
            _ => {
                let list = serde_json::to_string(&self.urls()).expect("urls as JSON");
                (Vec::new(), vec![("SWITCHBOARD_REDIS__SHARDS".to_owned(), list)])
            }
        }
    }

    /// Whether the servers make a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Runs one command with `redis-cli` on the server that holds the key
    /// `args[1]` (the first argument after the command's name; for a
    /// command without a key, the first server); its output.
    pub fn cli(&self, args: &[&str]) -> String {
        if self.cluster {
            // redis-cli follows the cluster's redirections itself.
            let mut all = vec!["-c"];
            all.extend_from_slice(args);
            return self.servers[0].cli(&all);
        }
        let shard = match args.get(1) {
            Some(key) if key.contains('{') => {
                switchboard_server::redis_shard_of(key, self.servers.len())
            }
            _ => 0,
        };
        self.servers[shard].cli(args)
    }

    /// Runs one command with `redis-cli` on the `n`th server (counted from
    /// 0 in the order of [`TestRedis::urls`]); its output.
    pub fn cli_on(&self, n: usize, args: &[&str]) -> String {
        self.servers[n].cli(args)
    }

    /// Runs one command with `redis-cli` on every server; their outputs,
    /// joined.
    pub fn cli_all(&self, args: &[&str]) -> String {
        self.servers.iter().map(|server| server.cli(args)).collect()
    }

    /// Cuts every hub's pub/sub connections (a network blip): returns how
    /// many connections were cut. On a cluster, where subscriptions ride
    /// on the hubs' command connections (RESP3), those are cut too.
    pub fn cut_subscriptions(&self) -> u32 {
        let mut cut = self.cli_all(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        if self.cluster {
            cut += &self.cli_all(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        }
        cut.lines().filter_map(|n| n.trim().parse::<u32>().ok()).sum()
    }

    /// Stops the servers at once (SIGKILL): everything they held is gone.
    pub fn kill(&mut self) {
        self.servers.iter_mut().for_each(Server::kill);
    }

    /// Stops the `n`th of independent servers at once (SIGKILL).
    pub fn kill_one(&mut self, n: usize) {
        self.servers[n].kill();
    }

    /// Stops the `n`th of independent servers and starts it again on the
    /// same port, empty, the others untouched.
    pub async fn restart_one(&mut self, n: usize) {
        assert!(!self.cluster, "one server of a cluster is not restarted alone here");
        self.servers[n].kill();
        self.servers[n].launch().await;
    }

    /// Starts them again on the same ports, empty (a cluster made anew).
    pub async fn restart(&mut self) {
        self.kill();
        for server in &self.servers {
            let _ = std::fs::remove_file(server.dir.join("nodes.conf"));
        }
        self.launch().await;
    }
}

impl Server {
    async fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"]);
        if self.clustered {
            command.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]);
        }
        let child = command
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

    fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
