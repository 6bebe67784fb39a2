//! The Switchboard hub: a WebSocket messaging server with users that hold
//! several connections, rooms with presence, private messages, broadcasts and
//! an HTTP admin API.
//!
//! Run it with the `switchboard` binary, or embed it in an axum application:
//!
//! ```no_run
//! use switchboard_server::{AppState, Config};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let state = AppState::new(Config::default())?;
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .nest("/realtime", switchboard_server::router(state.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app)
//!     .with_graceful_shutdown(async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         state.shutdown(); // sessions close with 1001
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! The folders name the layers, outermost first; each imports only those
//! below it (docs/ARCHITECTURE.md draws them):
//! - [`run`] / [`serve`] / [`bind`]: serve a listener until a shutdown
//!   future resolves; [`router`]: the routes as a nestable axum `Router`.
//! - `transport/`: bytes to frames. The listener and accept loop
//!   (`listen.rs`), the WebSocket handshake (`upgrade.rs`), reads through a
//!   per-thread buffer so idle connections hold none (`pooled_read.rs`),
//!   `GET /ws` and what happens before a session exists (`ws.rs`),
//!   Server-Sent Events (`sse.rs`). Transports only frame.
//! - [`api`]: the HTTP admin API, its [`ApiError`], the address gate.
//! - `session/`: one connection whatever its transport (`connection.rs`:
//!   its rooms, its positions in each stream, joins that undo themselves),
//!   the WebSocket state machine (`mod.rs`), what each request frame does
//!   (`requests.rs`, `membership.rs`) and when its token needs attention.
//! - [`AppState`] (`state/`): the node's composition root (which engine
//!   runs is chosen there, once), its tasks and shutdown, and the
//!   in-process API for embedding applications (`server_api.rs`:
//!   [`AppState::send`], [`AppState::publish`], [`AppState::broadcast`],
//!   [`AppState::disconnect`], joins and presence queries; `rooms_api.rs`,
//!   `connections_api.rs`).
//! - [`policy`]: who may do what. Identity and tokens, admission (origins,
//!   address lists, connection limits), [`permissions`](policy::permissions),
//!   the application's [`hooks`] and [`webhooks`], events after the fact.
//! - `engine/`: everything that spans nodes, behind four traits (`Broker`:
//!   a stream's life; `Presence`; `Catalog`; `Node`), with a memory engine
//!   (one node, history in a [`HistoryStore`]: [`store`]) and a Redis
//!   engine (`redis.url`, `redis.shards`, `redis.cluster`). Nothing else
//!   speaks Redis or asks which engine runs.
//! - `hub/`: this node's registry and fan-out ([`Hub`]): rooms and their
//!   membership (`room.rs`), each connection's bounded queue
//!   (`outbound.rs`), what a delivery is (`delivery.rs`), counters
//!   (`stats.rs`), their rates (`rates.rs`) and latencies (`latency.rs`).
//! - At the bottom, plain data: streams (`stream.rs`), frame encoding
//!   (`wire.rs`), binary payloads and their envelopes (`binary.rs`), room-name [`patterns`], [`config`] with [`cli`] and
//!   [`env`](mod@env), errors.
//!
//! The wire protocol lives in the `switchboard-protocol` crate and is
//! documented in `docs/PROTOCOL.md`.

pub mod api;
mod binary;
pub mod cli;
pub mod config;
mod deflate;
mod engine;
pub mod env;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod hub;
pub mod patterns;
pub mod policy;
mod session;
mod state;
mod stream;
mod transport;
mod wire;
mod write_through;

/// History per stream for a single node: the [`HistoryStore`] trait the
/// memory engine keeps streams in, and its two stores.
pub mod store {
    pub use crate::engine::store::{
        DiskStore, HistoryStore, MemoryStore, Replay, StoreError, Stored, StreamKey, Writer,
    };
}

pub use api::ApiError;
pub use binary::Payload;
pub use config::Config;
pub use engine::EngineError;
pub use engine::catalog::{ManagedRoom, RoomError};
pub use error::{ConfigError, Error, Result};
pub use hub::connections::{ConnectionSummary, Transport};
pub use hub::stats::{ClusterStats, Rates, Stats};
pub use hub::{Delivery, DeliveryKind, Hub, ManagedFields, RoomDetail, RoomSummary, Target};
pub use policy::auth::{self, AuthError, Authenticator, Identity};
pub use policy::{hooks, identity, webhooks};
pub use state::AppState;
pub use state::connections_api::{ConnectionsPage, SessionReach};
pub use state::server_api::{Members, Published, SendStatus, Sent, ServerError};
pub use store::{HistoryStore, MemoryStore, StreamKey};
pub use switchboard_protocol::{CloseCode, Encoding, RoomInfo};
pub use transport::listen::bind;

/// Which of `redis.shards` (counted from 0, of `shards` in all) holds the
/// Redis key `key`: the one its tag (between its first `{` and the next
/// `}`) hashes to. For operators and tests that look at a key themselves;
/// the key layout is in `docs/SCALING.md`.
pub fn redis_shard_of(key: &str, shards: usize) -> usize {
    engine::redis::shards::shard_of(engine::redis::shards::tag_of(key), shards)
}

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::future::Future;
use tokio::net::TcpListener;

/// The hub's routes, ready to serve or to nest in another axum app:
/// `GET /ws`, `GET /health`, `GET /api/stats`, `GET /api/online`,
/// `POST /api/send`, `POST /api/broadcast`, `POST /api/disconnect`, `GET|POST /api/rooms`,
/// `GET|PATCH|DELETE /api/rooms/{room}`,
/// `GET /api/rooms/{room}/history`, `GET /api/rooms/{room}/members`,
/// `POST /api/rooms/{room}/join`, `POST /api/rooms/{room}/leave`, `GET /api/connections`,
/// `POST /api/connections/{session}/send|disconnect`, `GET /metrics`,
/// and the operator's page at `GET /admin`.
pub fn router(state: AppState) -> Router {
    state.start_maintenance();
    let body_limit = state.config().limits.max_message_bytes;
    // The admin API needs the API key when one is configured.
    let api = Router::new()
        .route("/api/stats", get(api::stats))
        .route("/api/online", get(api::online))
        .route("/api/send", post(api::send))
        .route("/api/broadcast", post(api::broadcast))
        .route("/api/disconnect", post(api::disconnect))
        .route("/api/rooms", get(api::rooms::rooms).post(api::rooms::create_room))
        .route(
            "/api/rooms/{room}",
            get(api::rooms::room).patch(api::rooms::update_room).delete(api::rooms::delete_room),
        )
        .route("/api/rooms/{room}/history", get(api::rooms::history))
        .route("/api/rooms/{room}/members", get(api::rooms::members))
        .route("/api/connections", get(api::connections::list))
        .route("/api/connections/{session}/send", post(api::connections::send))
        .route("/api/connections/{session}/disconnect", post(api::connections::disconnect))
        .route("/api/rooms/{room}/join", post(api::rooms::join))
        .route("/api/rooms/{room}/leave", post(api::rooms::leave))
        .route("/metrics", get(api::metrics))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), api::require_key));
    Router::new()
        .route("/ws", get(transport::ws::upgrade))
        .route("/sse", get(transport::sse::events))
        .route("/health", get(api::health))
        .route("/api/openapi.json", get(api::openapi::document))
        .route("/admin", get(api::admin::page))
        .route("/admin/", get(api::admin::slash))
        .route("/admin/admin.js", get(api::admin::script))
        .route("/admin/admin.css", get(api::admin::style))
        .merge(api)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Outermost: a denied address reaches no route at all.
        .layer(axum::middleware::from_fn_with_state(state.clone(), api::address_gate))
        .with_state(state)
}

/// Serves `GET /metrics` alone on `address` (`api.metrics_bind`), without
/// the admin key, until the node shuts down.
async fn serve_metrics(state: AppState, address: std::net::SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "metrics listening");
    let app = Router::new().route("/metrics", get(api::metrics)).with_state(state.clone());
    let stopped = state.shutdown_token().clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "the metrics listener failed");
        }
    });
    Ok(())
}

/// Serves a single-node hub on `listener` until `shutdown` resolves, then
/// closes every session with 1001 and waits for them (at most
/// `shutdown_grace_ms`).
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    serve(listener, AppState::new(config)?, shutdown).await
}

/// Like [`run`], with a state built by the caller (for example with another broker).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "switchboard listening");
    if state.auth().is_insecure() {
        tracing::warn!(
            "INSECURE: auth.insecure is on and no token key is configured, so any client can \
             connect as any user with ?user_id=. Set auth.jwt_secret, auth.jwt_public_key_pem or auth.jwks_url \
             before exposing this hub."
        );
    }
    let config = state.config();
    let header_timeout = std::time::Duration::from_millis(config.limits.handshake_timeout_ms);
    let grace = std::time::Duration::from_millis(config.shutdown_grace_ms);
    // Accepting before this node hears the others' deliveries (a cluster's
    // subscription) could let a connection miss a message published in
    // between; a single node is ready at once. Without Redis a node serves
    // anyway, and says so in /health.
    let wait = std::time::Duration::from_millis(config.redis.timeout_ms.saturating_mul(3));
    match (tokio::time::timeout(wait, state.subscribed()).await, state.node_id()) {
        (Err(_), _) => {
            tracing::warn!("serving before the redis subscription is in place: redis unreachable")
        }
        (Ok(()), Some(node)) => tracing::info!(node, "joined the cluster"),
        (Ok(()), None) => {}
    }
    if let Some(address) = config.api.metrics_bind {
        serve_metrics(state.clone(), address).await?;
    }
    let stopper = state.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down");
        stopper.shutdown();
    };
    transport::listen::serve(listener, router(state.clone()), header_timeout, grace, shutdown)
        .await?;
    state.shutdown();
    state.drain().await;
    tracing::info!("stopped");
    Ok(())
}
