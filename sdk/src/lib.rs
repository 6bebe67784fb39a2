//! The Switchboard client SDK: rooms, private messages, presence, and acks as
//! futures over one WebSocket that reconnects by itself.
//!
//! One codebase for native apps (tokio-tungstenite) and, through the
//! `switchboard-js` package, browsers (`web_sys::WebSocket`).
//!
//! ```no_run
//! # async fn example() -> switchboard_sdk::Result<()> {
//! use switchboard_sdk::{Client, ReconnectPolicy};
//! use std::time::Duration;
//!
//! let client = Client::builder("ws://127.0.0.1:8080/ws")
//!     .user("alice")
//!     .reconnect(ReconnectPolicy {
//!         min_delay: Duration::from_millis(250),
//!         max_delay: Duration::from_secs(10),
//!         ..ReconnectPolicy::default()
//!     })
//!     .build()?;
//! client.on_disconnected(|d| eprintln!("lost: {} (retrying: {})", d.reason, d.will_reconnect));
//! client.on("chat", |m| println!("[{}] {}: {}", m.room.as_deref().unwrap_or("dm"), m.from, m.data));
//! client.connect().await?;
//! let present = client.join("general").await?;
//! println!("present: {present:?}");
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`] (`client.rs`): the handle; [`ClientBuilder`] (`builder.rs`): its options.
//! - `driver.rs`: the connection state machine (connect, welcome, rejoin,
//!   offline queue, acks, heartbeat, reconnect), identical on every target.
//! - `endpoint.rs`: the hub's URL, checked and completed with the query.
//! - [`backoff`]: [`ReconnectPolicy`] and the full-jitter [`Backoff`].
//! - `handlers.rs`: the event-handler registry; [`event`]: lifecycle events.
//! - `transport/`: the socket per target; `runtime.rs`: spawn and sleep per target;
//!   `codec/`: frames to and from JSON per target (serde's generated code
//!   natively, a smaller field-by-field reader in wasm). These three are the
//!   only places that mention `target_arch`.
//! - [`Error`] (`error.rs`).
//!
//! # Guarantees and limits
//! - Requests resolve on the server's `ack`, fail with its `error`
//!   ([`Error::Server`]), or time out ([`Error::Timeout`]).
//! - Publishes and sends made while offline wait in a bounded queue and go
//!   out in order after the next `welcome` and rejoin; a full queue fails the
//!   call with [`Error::QueueFull`], never silently.
//! - A publish or send in flight when the connection drops is re-sent after
//!   the reconnect with the same id; the hub remembers ids for a window
//!   (default 5 minutes) and answers a repeat without acting twice, so each
//!   is carried out exactly once.
//! - Rooms and the private inbox are streams with offsets: after a reconnect
//!   the client resumes each from the last offset it saw; the hub replays
//!   what was missed before anything live, and the client drops anything it
//!   already had. [`Joined::recovered`] and [`Connected::inbox_recovered`] say
//!   when a gap could not be filled.

// Slicing a `str` by index compiles in a panic path that formats the string
// with `Debug`, and with it core's Unicode printability tables: about 4 KB
// of the browser package, gzipped. The SDK uses `get` instead.
#![deny(clippy::string_slice)]

pub mod backoff;
mod builder;
mod client;
mod codec;
mod driver;
mod endpoint;
mod error;
pub mod event;
mod handlers;
mod runtime;
mod transport;

pub use backoff::{Backoff, ReconnectPolicy};
pub use builder::{ClientBuilder, FutureBound, Heartbeat, MAX_TIMER, TokenProvider};
pub use client::Client;
#[cfg(target_arch = "wasm32")]
pub use codec::js;
pub use driver::UNOPENED_ATTEMPTS;
pub use error::{Error, Result};
pub use event::{
    Connected, Connecting, ConnectionState, Disconnected, History, Joined, Left, MembersPage, Reset,
};
pub use handlers::{Handler, HandlerId};
pub use runtime::{BoxFuture, MaybeSend};
pub use switchboard_protocol::{
    CloseCode, Encoding, ErrorCode, Message, Occupancy, Payload, Position, Presence,
    PresenceAction, RoomInfo,
};
