//! Benchmarks of the Switchboard hub, run by hand (never in the test
//! script: figures depend on the machine) and reported in docs/PERFORMANCE.md (the README quotes a summary).
//!
//! # Layout
//! - `src/bin/memory.rs`: resident memory per idle WebSocket connection of
//!   the real `switchboard` binary.
//! - `src/bin/scale.rs`: connect storm, room fill, fan-out, round trips and
//!   private messages, side by side with the Node `ws` room hub
//!   (`bench/node/ws-hub.mjs`) and a Socket.IO 4.8 hub
//!   (`bench/node/socketio-hub.mjs`).
//! - `src/bin/cluster.rs`: room fan-out across nodes on Redis: one node
//!   alone, one node on Redis, two nodes on Redis.
//! - [`process`]: starting a server (or `redis-server`) on a free loopback
//!   port and reading its CPU time and resident memory.
//! - [`receive`]: readers that count what they receive.
//! - [`report`]: progress bars, and tables printed and written.
//! - [`wire`]: the frames each server speaks, written and matched as text.
//! - [`inflate`]: permessage-deflate on the client's side, under tungstenite.
//! - `src/bin/compression.rs`: room fan-out with and without
//!   permessage-deflate, beside the Node `ws` and Socket.IO hubs with theirs.
//! - [`percentiles`]: latency percentiles.
//! - [`chart`]: the SVG chart of the results.

pub mod chart;
pub mod inflate;
pub mod percentiles;
pub mod process;
pub mod receive;
pub mod report;
pub mod wire;
