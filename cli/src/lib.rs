//! `switchboard-cli`: a hub from a terminal, on the Rust SDK (so it
//! reconnects, rejoins and recovers like any client).
//!
//! ```text
//! switchboard-cli sub general             # print general's messages, one JSON line each
//! switchboard-cli pub general chat '{"text":"hi"}'
//! switchboard-cli send bob dm '"psst"'    # a private message to every connection of bob
//! ```
//!
//! `--url` (default `ws://127.0.0.1:8080/ws`), and either `--user` on a hub
//! in development mode or `--token` (`switchboard token --user alice`
//! prints one) on a hub that requires tokens; or `SWITCHBOARD_CLI_URL`,
//! `SWITCHBOARD_CLI_USER`, `SWITCHBOARD_CLI_TOKEN` (the hub leaves
//! `SWITCHBOARD_CLI_…` variables alone). `DATA` is JSON, or else taken
//! as a string. Messages go to stdout; what the command is doing, to stderr.

use clap::{Parser, Subcommand};
use serde_json::Value;
use switchboard_sdk::{Client, Message};

/// A terminal client for a Switchboard hub: its command line.
#[derive(Debug, Parser)]
#[command(name = "switchboard-cli", version)]
pub struct Cli {
    /// The hub's WebSocket URL.
    #[arg(long, env = "SWITCHBOARD_CLI_URL", default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Who to connect as, on a hub without tokens (development mode).
    #[arg(long, env = "SWITCHBOARD_CLI_USER", default_value = "cli")]
    user: String,
    /// A token, for a hub that requires them (it names the user).
    #[arg(long, env = "SWITCHBOARD_CLI_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Action,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Action {
    /// Join rooms and print every message they receive as a JSON line, until
    /// interrupted (private messages to this user too).
    Sub {
        /// The rooms.
        #[arg(required = true)]
        rooms: Vec<String>,
    },
    /// Publish one message to a room (joining it first; a hub may require
    /// that) once the hub has acknowledged it.
    Pub {
        /// The room.
        room: String,
        /// The event name.
        event: String,
        /// The data: JSON, or else a string.
        data: String,
    },
    /// Send one private message to every connection of a user and print how
    /// many were reached (0: it waits in their inbox).
    Send {
        /// The user.
        user: String,
        /// The event name.
        event: String,
        /// The data: JSON, or else a string.
        data: String,
    },
}

/// JSON when it parses as JSON, the text as a string otherwise.
fn data(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// Connects as `cli` says and carries out its action.
pub async fn run(cli: Cli) -> switchboard_sdk::Result<()> {
    let mut builder = Client::builder(&cli.url);
    builder = match cli.token {
        Some(token) => builder.token(token),
        None => builder.user(cli.user),
    };
    let client = builder.build()?;
    client.on_any(|message: &Message| match serde_json::to_string(message) {
        Ok(line) => println!("{line}"),
        Err(err) => eprintln!("switchboard-cli: a message could not be printed: {err}"),
    });
    client.connect().await?;
    let outcome = match cli.command {
        Action::Sub { rooms } => {
            for room in &rooms {
                client.join(room).await?;
            }
            eprintln!("subscribed to {}", rooms.join(", "));
            // Runs until interrupted; the SDK reconnects and recovers meanwhile.
            let _ = tokio::signal::ctrl_c().await;
            Ok(())
        }
        Action::Pub { room, event, data: text } => {
            client.join(&room).await?;
            client.publish_to_others(&room, &event, data(&text)).await?;
            eprintln!("published to {room}");
            Ok(())
        }
        Action::Send { user, event, data: text } => {
            let reached = client.send(&user, &event, data(&text)).await?;
            println!("{}", serde_json::json!({ "to": user, "reached": reached }));
            Ok(())
        }
    };
    client.close().await;
    outcome
}
