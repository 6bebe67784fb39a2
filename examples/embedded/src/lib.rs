//! An application that embeds the Switchboard hub: its own routes beside
//! the hub's (nested under `/realtime`), and its own rules through
//! [`Hooks`]:
//! - **validation**: messages longer than 500 characters are refused, and
//!   only members of the `moderators` list may join `mod:*` rooms;
//! - **persistence**: every room message that passes is kept in the
//!   application's store ([`Store`]; a database in a real application),
//!   read back by its own `GET /archive/{room}`;
//! - **an RPC**: clients call `archive.count` to learn how many messages a
//!   room's archive holds;
//! - **service code**: `POST /announce` sends through the hub's in-process
//!   API, as part of the room's stream.
//!
//! Run it with `cargo run -p switchboard-example-embedded`; the tests in
//! `tests/` drive it with the Rust SDK.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use switchboard_server::hooks::{Decision, HookFuture, Hooks, MessageDecision, RpcReply};
use switchboard_server::{AppState, Config, Identity};

/// The application's message store: room → messages, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Store {
    rooms: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

impl Store {
    fn keep(&self, room: &str, message: Value) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.entry(room.to_owned()).or_default().push(message);
    }

    /// A room's kept messages.
    pub fn archive(&self, room: &str) -> Vec<Value> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.get(room).cloned().unwrap_or_default()
    }
}

/// The application's say in the hub.
struct Rules {
    store: Store,
    moderators: Vec<String>,
}

impl Hooks for Rules {
    fn join<'a>(&'a self, who: &'a Identity, room: &'a str) -> HookFuture<'a, Decision> {
        Box::pin(async move {
            if room.starts_with("mod:") && !self.moderators.iter().any(|m| **m == *who.user) {
                Decision::refuse("moderators only")
            } else {
                Decision::Allow
            }
        })
    }

    fn publish<'a>(
        &'a self,
        who: &'a Identity,
        room: &'a str,
        event: &'a str,
        data: &'a Value,
        encoding: Option<switchboard_server::Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            // Text has a length limit; bytes (base64 text here) do not.
            let text = data.as_str().filter(|_| encoding.is_none());
            if text.is_some_and(|text| text.chars().count() > 500) {
                return MessageDecision::refuse("at most 500 characters");
            }
            // Kept before it goes out: what clients see is in the archive.
            // Bytes are kept as the hub gave them: base64 text, said so.
            let mut kept = json!({"from": &*who.user, "event": event, "data": data});
            if let Some(encoding) = encoding {
                kept["encoding"] = json!(encoding);
            }
            self.store.keep(room, kept);
            MessageDecision::Allow
        })
    }

    fn rpc<'a>(
        &'a self,
        _who: &'a Identity,
        method: &'a str,
        data: &'a Value,
    ) -> HookFuture<'a, RpcReply> {
        Box::pin(async move {
            match (method, data["room"].as_str()) {
                ("archive.count", Some(room)) => {
                    RpcReply::Result(json!(self.store.archive(room).len()))
                }
                ("archive.count", None) => RpcReply::refuse_with(1400, "`room` is required"),
                _ => RpcReply::no_handler(method),
            }
        })
    }
}

/// The application: its routes and the hub's, sharing one state.
pub fn app(
    config: Config,
    moderators: Vec<String>,
) -> Result<(axum::Router, AppState, Store), switchboard_server::ConfigError> {
    let hub = AppState::new(config)?;
    let store = Store::default();
    hub.set_hooks(Rules { store: store.clone(), moderators });
    let own = axum::Router::new()
        .route("/archive/{room}", axum::routing::get(archive))
        .route("/announce", axum::routing::post(announce))
        .with_state((hub.clone(), store.clone()));
    let router = own.nest("/realtime", switchboard_server::router(hub.clone()));
    Ok((router, hub, store))
}

/// `GET /archive/{room}`: the application's own copy of a room.
async fn archive(
    State((_, store)): State<(AppState, Store)>,
    Path(room): Path<String>,
) -> Json<Value> {
    Json(json!({"room": room, "messages": store.archive(&room)}))
}

/// `POST /announce {"room", "text"}`: service code publishing through the
/// hub's in-process API.
async fn announce(
    State((hub, _)): State<(AppState, Store)>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let room = body["room"].as_str().unwrap_or_default();
    let published = hub
        .publish(room, "announcement", body["text"].clone())
        .await
        .map_err(|err| (axum::http::StatusCode::BAD_REQUEST, err.to_string()))?;
    Ok(Json(json!({"offset": published.offset})))
}
