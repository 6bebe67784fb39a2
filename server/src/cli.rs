//! The `switchboard` command line: flags, their `SWITCHBOARD_…` environment
//! variables, and how they layer over a TOML file.
//!
//! Precedence, lowest first: built-in defaults, the TOML file (`--config` /
//! `SWITCHBOARD_CONFIG`), environment variables (every key, as
//! `SWITCHBOARD_<SECTION>__<KEY>`, see [`crate::env`], and the flags' own),
//! command-line flags.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Config;
use crate::error::ConfigError;

/// Command-line flags of `switchboard`. Each has an environment variable.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard", version, about = "Switchboard real-time messaging hub")]
pub struct Cli {
    /// TOML configuration file.
    #[arg(short, long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(short, long, env = "SWITCHBOARD_BIND")]
    pub bind: Option<SocketAddr>,
    /// Listen backlog: connections the kernel queues before they are
    /// accepted (capped by net.core.somaxconn) [default: 4096].
    #[arg(long, env = "SWITCHBOARD_BACKLOG")]
    pub backlog: Option<u32>,
    /// The `from` of messages sent through the HTTP API [default: server].
    #[arg(long, env = "SWITCHBOARD_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Heartbeat ping interval in milliseconds [default: 25000].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Close connections silent for this many milliseconds [default: 60000].
    #[arg(long, env = "SWITCHBOARD_HEARTBEAT_TIMEOUT_MS")]
    pub heartbeat_timeout_ms: Option<u64>,
    /// Largest WebSocket message in bytes [default: 524288].
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most concurrent connections [default: 10000].
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most frames queued per connection before it is a slow consumer [default: 1024].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_MESSAGES")]
    pub outbound_queue_messages: Option<usize>,
    /// Most bytes queued per connection before it is a slow consumer [default: 16777216].
    #[arg(long, env = "SWITCHBOARD_OUTBOUND_QUEUE_BYTES")]
    pub outbound_queue_bytes: Option<usize>,
    /// Where history lives: memory or disk [default: memory].
    #[arg(long, env = "SWITCHBOARD_HISTORY_STORE", value_enum)]
    pub history_store: Option<HistoryStoreArg>,
    /// The disk store's database file [default: switchboard-data/history.redb].
    #[arg(long, env = "SWITCHBOARD_HISTORY_PATH")]
    pub history_path: Option<PathBuf>,
    /// The admin API key (`Authorization: Bearer <key>` on /api/…).
    #[arg(long, env = "SWITCHBOARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// HS256 secret for connection tokens (switches insecure mode off).
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Redis for multi-node mode (`redis://host:6379`): every hub pointed
    /// at the same Redis (and `redis.prefix`) is one hub. None: one node.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Log filter, in `tracing` EnvFilter syntax [default: info].
    #[arg(long, env = "SWITCHBOARD_LOG", default_value = "info")]
    pub log: String,
    /// Log format.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Print the effective configuration (file, environment and flags) as
    /// TOML with secrets masked, and exit.
    #[arg(long)]
    pub print_config: bool,
    /// A helper command instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `switchboard <command>`: helpers for developers, with the same
/// configuration (file, environment, flags) as the hub.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a token for a user, signed with the configured `auth.jwt_secret`
    /// (HS256) and naming the hub's audience and issuer if it has them.
    Token(TokenArgs),
}

/// `switchboard token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user the token names (its `sub`).
    #[arg(long)]
    pub user: String,
    /// How long it is valid: `90s`, `15m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = crate::policy::mint::parse_ttl)]
    pub ttl: Duration,
    /// Room patterns for the rooms claim (rooms whose permissions say
    /// `claim`), comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    pub rooms: Vec<String>,
}

/// `--history-store`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HistoryStoreArg {
    /// In memory.
    Memory,
    /// On disk.
    Disk,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The configuration: the file if any, with flags and variables on top.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.config_with(std::env::vars())
    }

    /// The environment variables of the flags (`SWITCHBOARD_BIND`, …), read
    /// from the flags' own declarations.
    pub fn flag_variables() -> Vec<String> {
        Cli::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    /// [`Cli::config`] with the environment given as `vars`.
    pub fn config_with(
        &self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        let mut config = crate::env::apply(config, vars, &Cli::flag_variables())?;
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(backlog) = self.backlog {
            config.backlog = backlog;
        }
        if let Some(name) = &self.server_name {
            config.server_name = name.clone();
        }
        let set = |slot: &mut u64, value: Option<u64>| {
            if let Some(value) = value {
                *slot = value;
            }
        };
        set(&mut config.heartbeat.interval_ms, self.heartbeat_interval_ms);
        set(&mut config.heartbeat.timeout_ms, self.heartbeat_timeout_ms);
        let limits = &mut config.limits;
        for (slot, value) in [
            (&mut limits.max_message_bytes, self.max_message_bytes),
            (&mut limits.max_connections, self.max_connections),
            (&mut limits.outbound_queue_messages, self.outbound_queue_messages),
            (&mut limits.outbound_queue_bytes, self.outbound_queue_bytes),
        ] {
            if let Some(value) = value {
                *slot = value;
            }
        }
        match self.history_store {
            Some(HistoryStoreArg::Memory) => {
                config.history.store = crate::config::StoreKind::Memory
            }
            Some(HistoryStoreArg::Disk) => config.history.store = crate::config::StoreKind::Disk,
            None => {}
        }
        if let Some(key) = &self.api_key {
            config.api.key = Some(key.clone());
        }
        if let Some(secret) = &self.jwt_secret {
            config.auth.jwt_secret = Some(secret.clone());
        }
        if let Some(url) = &self.redis_url {
            config.redis.url = Some(url.clone());
        }
        if let Some(path) = &self.history_path {
            config.history.path = path.clone();
        }
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `hub.toml` holding `text` in a fresh folder of its own: (folder, file).
    fn config_file(tag: &str, text: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("switchboard-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hub.toml");
        std::fs::write(&file, text).unwrap();
        (dir, file)
    }

    #[test]
    fn no_arguments_means_defaults() {
        let cli = Cli::try_parse_from(["switchboard"]).unwrap();
        if std::env::vars().any(|(k, _)| k.starts_with("SWITCHBOARD_")) {
            return; // the environment of this run sets values on purpose
        }
        assert_eq!(cli.config().unwrap(), Config::default());
    }

    #[test]
    fn flags_override_the_file() {
        let (dir, file) = config_file("cli", "bind = \"127.0.0.1:9000\"\nserver_name = \"hq\"\n");
        let cli = Cli::try_parse_from([
            "switchboard",
            "--config",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:9100",
            "--max-connections",
            "5",
        ])
        .unwrap();
        let config = cli.config().unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:9100", "the flag beats the file");
        assert_eq!(config.server_name, "hq", "the file beats the default");
        assert_eq!(config.limits.max_connections, 5);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn variables_beat_the_file_and_flags_beat_variables() {
        let (dir, file) =
            config_file("env", "[limits]\nmessages_per_sec = 3\nmax_connections = 9\n");
        let cli = Cli::try_parse_from([
            "switchboard",
            "--config",
            file.to_str().unwrap(),
            "--max-connections",
            "5",
        ])
        .unwrap();
        let vars = [
            ("SWITCHBOARD_LIMITS__MESSAGES_PER_SEC".to_owned(), "11".to_owned()),
            ("SWITCHBOARD_LIMITS__MAX_CONNECTIONS".to_owned(), "7".to_owned()),
        ];
        let config = cli.config_with(vars).unwrap();
        assert_eq!(config.limits.messages_per_sec, 11, "the variable beats the file");
        assert_eq!(config.limits.max_connections, 5, "the flag beats the variable");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
