//! `switchboard-js`: the Switchboard client for browsers.
//!
//! The Rust SDK (`switchboard-sdk`) compiled to WebAssembly and exported to
//! JavaScript with wasm-bindgen; `wasm-pack` packages it for npm. The same
//! client state machine, reconnect policy, rejoin and offline queue run here
//! as in native apps: this crate only translates between JavaScript values
//! and the SDK's types.
//!
//! ```js
//! import { Client } from "switchboard-js"; // loads the module; no init()
//! const client = new Client("ws://127.0.0.1:8080/ws", { userId: "alice" });
//! const off = client.on("chat", (message) => console.log(message.from, message.data));
//! await client.connect();
//! await client.join("general");
//! await client.publish("general", "chat", { text: "hello" });
//! ```
//!
//! # Layout
//! - `client.rs`: the exported `Client` class.
//! - `options.rs`: the constructor's options object.
//! - `callbacks.rs`: JavaScript callbacks, their unsubscribe functions, and
//!   reporting callbacks that throw.
//! - `convert.rs`: SDK values to plain JavaScript objects and back, as JSON
//!   text written field by field (`switchboard_sdk::js`).
//! - `error.rs`: `SwitchboardError`, the `Error` every Promise rejects with.
//! - `typescript.rs`: the precise TypeScript declarations.
//!
//! Everything is compiled for `wasm32` only; on other targets this crate is empty.

#![cfg(target_arch = "wasm32")]
// Slicing a `str` by index costs the package about 4 KB gzipped (a panic
// path with Unicode tables): `get` instead, as in the SDK.
#![deny(clippy::string_slice)]

mod callbacks;
mod client;
mod convert;
mod error;
mod options;
mod typescript;

pub use client::Client;

// Talc instead of the standard library's dlmalloc: the same job in a few
// kilobytes less of the package, and faster (Talc's own wasm benchmarks).
// Single-threaded: the module runs on one JavaScript thread.
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();
