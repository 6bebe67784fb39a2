//! Benchmarks of the Switchboard hub, run by hand (never in the test
//! script: figures depend on the machine) and reported in the README.
//!
//! # Layout
//! - `src/bin/memory.rs`: resident memory per idle WebSocket connection of
//!   the real `switchboard` binary.
//! - `src/bin/scale.rs`: a connect storm and a room fill, side by side with
//!   the Node `ws` room hub in `bench/node/ws-hub.mjs`.
//! - [`process`]: starting the binary on a free loopback port and reading
//!   its resident memory.
//!
//! The roadmap's side-by-side suite (fan-out throughput and memory against
//! Node `ws` and Socket.IO) grows here.

pub mod process;
