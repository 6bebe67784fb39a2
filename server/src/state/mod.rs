//! [`AppState`]: everything a request or a session needs, cheap to clone;
//! the node's composition root.
//!
//! It owns this node's [`Hub`], its engine (chosen once here: the memory
//! engine on a single node, the Redis engine with `redis.url`; nothing
//! above asks which), identity and admission, the application's hooks,
//! the background tasks, and the shutdown signal with the task tracker
//! that lets shutdown wait for sessions to say goodbye.
//!
//! `server_api.rs` adds the in-process server API (send, publish,
//! broadcast, disconnect, joins, presence queries), `rooms_api.rs` the
//! managed rooms and `connections_api.rs` the connection-level control,
//! for embedding applications; the HTTP handlers wrap them.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) mod connections_api;
pub(crate) mod rooms_api;
pub(crate) mod server_api;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::StoreKind;
use crate::deflate::Compressor;
use crate::engine::store::{DiskStore, HistoryStore, MemoryStore};
use crate::engine::{Engine, Parts};
use crate::error::ConfigError;
use crate::hub::rates::{RateWindow, Totals};
use crate::hub::stats::Stats;
use crate::policy::admission::Admission;
use crate::policy::auth::Authenticator;
use crate::policy::permissions::Permissions;
use crate::{Config, Hub};

/// How often expired ids and idle streams are dropped.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// The close reason sent to every session when the node shuts down.
pub(crate) const SHUTDOWN: &str = "server shutting down";

/// Shared state of one hub node. Clones share everything.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    hub: Arc<Hub>,
    engine: Engine,
    auth: Authenticator,
    permissions: Permissions,
    admission: Admission,
    /// Events after the fact on their way to the application, if configured.
    events: Option<Arc<crate::policy::events::Events>>,
    /// The application's hooks, once set.
    hooks: std::sync::OnceLock<Arc<dyn crate::hooks::Hooks>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    started: Instant,
    /// The counters once a second over the last minute, for `rates`.
    rates: RateWindow,
    maintenance: std::sync::Once,
    /// permessage-deflate's settings and counters; `None` when it is off.
    compressor: Option<Arc<Compressor>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .field("connections", &self.inner.hub.connection_count())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// A hub as the configuration says: a node of a cluster on Redis when
    /// `redis.url` is set (connected lazily: the node starts while Redis is
    /// down, and says so in `/health`), else a single node with the history
    /// store the configuration names.
    pub fn new(config: Config) -> Result<AppState, ConfigError> {
        if config.redis.enabled() {
            if config.history.store == StoreKind::Disk {
                tracing::warn!(
                    "history.store = disk is not used on Redis (redis.url or redis.shards): history is in Redis"
                );
            }
            return AppState::build(config, |config, parts| {
                crate::engine::redis::engine(config, parts)
                    .map_err(|err| ConfigError::Invalid(err.to_string()))
            });
        }
        let store: Arc<dyn HistoryStore> = match config.history.store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Disk => Arc::new(
                DiskStore::open(&config.history.path)
                    .map_err(|e| ConfigError::Store(e.to_string()))?,
            ),
        };
        AppState::with_store(config, store)
    }

    /// A single node whose streams are kept by `store`.
    pub fn with_store(
        config: Config,
        store: Arc<dyn HistoryStore>,
    ) -> Result<AppState, ConfigError> {
        AppState::build(config, |config, parts| {
            Ok(crate::engine::memory::engine(config, store, parts))
        })
    }

    fn build(
        config: Config,
        engine: impl FnOnce(&Config, Parts) -> Result<Engine, ConfigError>,
    ) -> Result<AppState, ConfigError> {
        config.validate()?;
        let admission = Admission::new(&config.limits);
        let permissions = Permissions::new(&config.permissions);
        let hub = Arc::new(Hub::with_policy(crate::hub::PresencePolicy {
            ack_members: config.rooms.join_ack_members,
            large_room: config.rooms.large_room,
        }));
        // One HTTP client (one pool, one read of the system's roots) for
        // the webhooks and the events, built only when either is configured.
        let http = if config.hooks.has_webhooks()
            || config.hooks.events.is_some()
            || config.auth.jwks_url.is_some()
        {
            Some(crate::policy::http_client::client(&config.hooks)?)
        } else {
            None
        };
        let auth = Authenticator::with_client(&config.auth, http.clone())?;
        let webhooks = http
            .clone()
            .and_then(|client| crate::policy::webhooks::Webhooks::new(&config.hooks, client));
        let events = match (config.hooks.events.clone(), http) {
            (Some(events), Some(client)) => Some(crate::policy::events::Events::new(
                events,
                config.hooks.secret.as_deref(),
                client,
            )),
            _ => None,
        };
        let engine = engine(&config, Parts { hub: hub.clone(), events: events.clone() })?;
        // The counters start at zero now: the first sample the rates count
        // from, whenever the sampling task gets to run.
        let compression = &config.compression;
        let compressor = compression
            .enabled
            .then(|| Arc::new(Compressor::new(compression.level, compression.threshold_bytes)));
        let rates = RateWindow::default();
        rates.record(0, Totals::default());
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                hub,
                engine,
                auth,
                permissions,
                admission,
                events,
                hooks: match webhooks {
                    Some(webhooks) => {
                        let hooks: Arc<dyn crate::hooks::Hooks> = Arc::new(webhooks);
                        std::sync::OnceLock::from(hooks)
                    }
                    None => std::sync::OnceLock::new(),
                },
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                started: Instant::now(),
                rates,
                maintenance: std::sync::Once::new(),
                compressor,
            }),
        })
    }

    /// permessage-deflate's settings and counters, when it is on.
    pub(crate) fn compressor(&self) -> Option<&Arc<Compressor>> {
        self.inner.compressor.as_ref()
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This node's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// This node's engine.
    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// How this hub verifies identities.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// What connections may do in which room.
    pub fn permissions(&self) -> &Permissions {
        &self.inner.permissions
    }

    /// Passes `admission`'s gates for a new connection of `user` (when it
    /// is known before the upgrade) from `peer`.
    pub(crate) fn admit(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &axum::http::HeaderMap,
        user: Option<&str>,
    ) -> Result<crate::policy::admission::Ticket, crate::policy::admission::Refused> {
        let stopping = self.is_shutting_down();
        self.inner.admission.admit(&self.inner.hub, stopping, peer, headers, user)
    }

    /// Gives the hub the application's [`Hooks`](crate::hooks::Hooks); set
    /// once, before serving (connections already open see them from their
    /// next request on). Returns false if hooks were set already, or
    /// webhooks are configured (`[hooks.<name>]`): one or the other.
    pub fn set_hooks(&self, hooks: impl crate::hooks::Hooks) -> bool {
        self.inner.hooks.set(Arc::new(hooks)).is_ok()
    }

    /// Where events after the fact go, if anywhere.
    pub(crate) fn events(&self) -> Option<&crate::policy::events::Events> {
        self.inner.events.as_deref()
    }

    /// The application's hooks, if any, and how long a call may take.
    pub(crate) fn hooks(&self) -> Option<(&dyn crate::hooks::Hooks, Duration)> {
        let hooks = self.inner.hooks.get()?;
        Some((&**hooks, Duration::from_millis(self.inner.config.hooks.timeout_ms)))
    }

    /// This node's id in its cluster; `None` on a single node.
    pub fn node_id(&self) -> Option<&str> {
        self.inner.engine.node().id()
    }

    /// Whether Redis answered the node's last request; `None` on a single
    /// node.
    pub fn redis_up(&self) -> Option<bool> {
        self.inner.engine.node().healthy()
    }

    /// Resolves once this node hears every delivery of the others (at once
    /// on a single node; in a cluster, once its Redis subscription is in
    /// place). [`crate::serve`] waits for it before accepting connections,
    /// at most `redis.timeout_ms`.
    pub async fn subscribed(&self) {
        self.start_maintenance();
        self.inner.engine.node().ready().await;
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Whether [`AppState::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    /// Starts a graceful shutdown: new upgrades are refused and every session
    /// closes with 1001 (going away) so clients reconnect elsewhere.
    pub fn shutdown(&self) {
        // The token first: a session registering after the sweep below sees
        // it at its next wake-up.
        self.inner.shutdown.cancel();
        self.inner.hub.close_all(switchboard_protocol::CloseCode::GOING_AWAY, SHUTDOWN);
    }

    /// Waits until every session has ended, at most `shutdown_grace_ms`,
    /// then lets the engine leave (in a cluster: what is left of this node
    /// in Redis goes) and makes the history durable. Call after
    /// [`AppState::shutdown`].
    pub async fn drain(&self) {
        self.inner.tasks.close();
        let grace = Duration::from_millis(self.inner.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!(
                remaining = self.inner.tasks.len(),
                "sessions still open after the shutdown grace period"
            );
        }
        if let Err(err) = self.inner.engine.node().drain().await {
            tracing::warn!(%err, "this node's entries stay in redis until they expire");
        }
        if let Err(err) = self.inner.engine.broker().flush() {
            tracing::error!(%err, "history not flushed");
        }
    }

    /// Starts, once, the node's background tasks: the engine's own, upkeep
    /// every minute (admission's counters, the engine's expired ids and
    /// idle streams), the rates, the events after the fact, large rooms'
    /// counts. Needs a Tokio runtime; [`crate::router`] calls it.
    pub(crate) fn start_maintenance(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.maintenance.call_once(|| {
            self.inner.engine.node().start(self.inner.shutdown.clone());
            // A weak reference: the task must not keep a stopped hub (and its
            // history database, which a restart reopens) alive.
            let weak = Arc::downgrade(&self.inner);
            let shutdown = self.inner.shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(MAINTENANCE_EVERY) => {}
                    }
                    let Some(inner) = weak.upgrade() else { break };
                    inner.admission.sweep();
                    let now = crate::wire::now_ms();
                    if let Err(err) = inner.engine.broker().maintain(now).await {
                        tracing::warn!(%err, "upkeep failed; it runs again in a minute");
                    }
                }
            });
            // The counters once a second, for the rates of the last minute.
            self.every(Duration::from_secs(1), |inner| {
                let counters = &inner.hub.counters;
                let totals = Totals {
                    messages: counters.messages_total(),
                    connections: counters.connections_total(),
                    deliveries: counters.deliveries_total(),
                };
                inner.rates.record(inner.started.elapsed().as_millis() as u64, totals);
            });
            if let Some(events) = &self.inner.events {
                tokio::spawn(events.clone().run(self.inner.shutdown.clone()));
            }
            // The identity provider's keys, fetched now and kept fresh.
            if let Some(keys) = self.inner.auth.key_set() {
                tokio::spawn(keys.clone().run(self.inner.shutdown.clone()));
            }
            // Large rooms' occupancy counts, coalesced over one interval.
            let every = Duration::from_millis(self.inner.config.rooms.occupancy_interval_ms);
            self.every(every, |inner| {
                let inner = inner.clone();
                tokio::spawn(async move {
                    if let Err(err) = inner.engine.presence().send_occupancy().await {
                        tracing::debug!(%err, "occupancy not sent");
                    }
                });
            });
        });
    }

    /// Runs `work` every `period` until shutdown, or until the state is
    /// dropped: the task holds it weakly, so it never keeps a stopped hub
    /// alive.
    fn every(&self, period: Duration, work: impl Fn(&Arc<Inner>) + Send + 'static) {
        let weak = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                work(&inner);
            }
        });
    }

    /// A snapshot of this node's counters.
    pub fn stats(&self) -> Stats {
        let hub = &self.inner.hub;
        Stats {
            connections: hub.connection_count() as u64,
            users: hub.user_count() as u64,
            rooms: hub.room_count() as u64,
            streams: self.inner.engine.broker().stream_count().map(|n| n as u64),
            messages_total: hub.counters.messages_total(),
            deliveries_total: hub.counters.deliveries_total(),
            connections_total: hub.counters.connections_total(),
            slow_consumers_total: hub.counters.slow_consumers_total(),
            uptime_ms: self.uptime().as_millis() as u64,
            rates: self.inner.rates.rates(),
            cluster: None,
        }
    }

    /// [`AppState::stats`] with, in multi-node mode, the cluster's figures.
    pub async fn cluster_stats(&self) -> Result<Stats, crate::engine::EngineError> {
        let mut stats = self.stats();
        stats.cluster = self.inner.engine.node().stats().await?;
        Ok(stats)
    }

    /// Time since this state was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}
