//! [`AppState`]: everything a request or a session needs, cheap to clone.
//!
//! `server_api.rs` adds the in-process server API (send, publish,
//! broadcast, disconnect, presence queries) for embedding applications.
//!
//! It owns this node's [`Hub`], its [`Broker`], its streams and request
//! ids (in this process, or in Redis in multi-node mode), the connection
//! slots that enforce `limits.max_connections`, the background tasks, and
//! the shutdown signal with the task tracker that lets shutdown wait for
//! sessions to say goodbye.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) mod connections_api;
pub(crate) mod rooms_api;
pub(crate) mod server_api;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, RedisBroker};
use crate::cluster::Cluster;
use crate::cluster::subscriber::Subscriber;
use crate::config::{Permissions, StoreKind};
use crate::error::ConfigError;
use crate::hub::ids::{IdWindow, RequestIds};
use crate::hub::rates::{RateWindow, Totals};
use crate::hub::stats::Stats;
use crate::hub::streams::Streams;
use crate::policy::admission::Admission;
use crate::policy::auth::Authenticator;
use crate::store::{DiskStore, HistoryStore, MemoryStore};
use crate::{Config, Hub, MemoryBroker};

/// How often expired ids and idle streams are dropped.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Shared state of one hub node. Clones share everything.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    hub: Arc<Hub>,
    broker: Arc<dyn Broker>,
    auth: Authenticator,
    permissions: Permissions,
    admission: Admission,
    streams: Streams,
    ids: RequestIds,
    /// The node's link to Redis in multi-node mode.
    cluster: Option<Arc<Cluster>>,
    /// Set when a presence count failed to reach Redis: the next heartbeat
    /// rewrites this node's entries.
    presence_stale: std::sync::atomic::AtomicBool,
    /// Cancelled once the node's Redis subscription is in place.
    subscribed: CancellationToken,
    /// Events after the fact on their way to the application, if configured.
    events: Option<Arc<crate::hub::events::Events>>,
    catalog: crate::hub::catalog::Catalog,
    /// The application's hooks, once set.
    hooks: std::sync::OnceLock<Arc<dyn crate::hooks::Hooks>>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    started: Instant,
    /// The counters once a second over the last minute, for `rates`.
    rates: RateWindow,
    maintenance: std::sync::Once,
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
    /// `redis.url` is set, else a single node with the in-memory broker and
    /// the history store the configuration names.
    pub fn new(config: Config) -> Result<AppState, ConfigError> {
        if config.redis.url.is_some() {
            return AppState::clustered(config);
        }
        let store: Arc<dyn HistoryStore> = match config.history.store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Disk => Arc::new(
                DiskStore::open(&config.history.path)
                    .map_err(|e| ConfigError::Store(e.to_string()))?,
            ),
        };
        AppState::with_backends(config, store, |hub| Arc::new(MemoryBroker::new(hub)))
    }

    /// A hub whose deliveries go through the broker that `make_broker` builds
    /// around this node's hub, with the in-memory history store.
    pub fn with_broker(
        config: Config,
        make_broker: impl FnOnce(Arc<Hub>) -> Arc<dyn Broker>,
    ) -> Result<AppState, ConfigError> {
        AppState::with_backends(config, Arc::new(MemoryStore::new()), make_broker)
    }

    /// A single-node hub with the given history store and broker.
    pub fn with_backends(
        config: Config,
        store: Arc<dyn HistoryStore>,
        make_broker: impl FnOnce(Arc<Hub>) -> Arc<dyn Broker>,
    ) -> Result<AppState, ConfigError> {
        let history = config.history.clone();
        let ids = IdWindow::new(
            Duration::from_secs(config.delivery.id_window_secs),
            config.delivery.max_ids_per_user,
        );
        AppState::build(config, None, move |hub| {
            (make_broker(hub), Streams::local(store, history), RequestIds::Local(ids))
        })
    }

    /// A node of a cluster: streams, fan-out, presence and request ids in
    /// the Redis at `redis.url`. Connects lazily: the node starts while
    /// Redis is down, and says so in `/health`.
    fn clustered(config: Config) -> Result<AppState, ConfigError> {
        if config.history.store == StoreKind::Disk {
            tracing::warn!("history.store = disk is not used with redis.url: history is in Redis");
        }
        let cluster =
            Arc::new(Cluster::new(&config.redis).map_err(|e| ConfigError::Invalid(e.to_string()))?);
        let history = config.history.clone();
        let window = Duration::from_secs(config.delivery.id_window_secs);
        let shared = cluster.clone();
        AppState::build(config, Some(cluster), move |hub| {
            let broker: Arc<dyn Broker> = Arc::new(RedisBroker::new(shared.clone()));
            let streams = Streams::cluster(shared, hub, history, window);
            (broker, streams, RequestIds::Cluster)
        })
    }

    fn build(
        config: Config,
        cluster: Option<Arc<Cluster>>,
        backends: impl FnOnce(Arc<Hub>) -> (Arc<dyn Broker>, Streams, RequestIds),
    ) -> Result<AppState, ConfigError> {
        config.validate()?;
        let auth = Authenticator::new(&config.auth)?;
        let admission = Admission::new(&config.limits);
        let permissions = config.permissions.compile();
        let hub = Arc::new(Hub::with_policy(crate::hub::PresencePolicy {
            ack_members: config.rooms.join_ack_members,
            large_room: config.rooms.large_room,
        }));
        let webhooks = crate::policy::webhooks::Webhooks::new(&config.hooks);
        let events =
            config.hooks.events.clone().map(|events| {
                crate::hub::events::Events::new(events, config.hooks.secret.as_deref())
            });
        let (broker, streams, ids) = backends(hub.clone());
        let catalog = crate::hub::catalog::Catalog::new(&config.rooms, cluster.clone());
        let slots = Arc::new(Semaphore::new(config.limits.max_connections));
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                hub,
                broker,
                auth,
                permissions,
                admission,
                streams,
                ids,
                cluster,
                presence_stale: std::sync::atomic::AtomicBool::new(false),
                subscribed: CancellationToken::new(),
                events,
                catalog,
                hooks: match webhooks {
                    Some(webhooks) => {
                        let hooks: Arc<dyn crate::hooks::Hooks> = Arc::new(webhooks);
                        std::sync::OnceLock::from(hooks)
                    }
                    None => std::sync::OnceLock::new(),
                },
                slots,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                started: Instant::now(),
                rates: RateWindow::default(),
                maintenance: std::sync::Once::new(),
            }),
        })
    }

    /// The configuration this node runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This node's hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    pub(crate) fn broker(&self) -> &dyn Broker {
        &*self.inner.broker
    }

    /// How this hub verifies identities.
    pub fn auth(&self) -> &Authenticator {
        &self.inner.auth
    }

    /// What connections may do in which room.
    pub fn permissions(&self) -> &Permissions {
        &self.inner.permissions
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub(crate) fn streams(&self) -> &Streams {
        &self.inner.streams
    }

    pub(crate) fn ids(&self) -> &RequestIds {
        &self.inner.ids
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// Gives the hub the application's [`Hooks`](crate::hooks::Hooks); set
    /// once, before serving (connections already open see them from their
    /// next request on). Returns false if hooks were set already, or
    /// webhooks are configured (`[hooks.<name>]`): one or the other.
    pub fn set_hooks(&self, hooks: impl crate::hooks::Hooks) -> bool {
        self.inner.hooks.set(Arc::new(hooks)).is_ok()
    }

    /// The managed rooms.
    pub(crate) fn catalog(&self) -> &crate::hub::catalog::Catalog {
        &self.inner.catalog
    }

    /// Where events after the fact go, if anywhere.
    pub(crate) fn events(&self) -> Option<&crate::hub::events::Events> {
        self.inner.events.as_deref()
    }

    /// The application's hooks, if any, and how long a call may take.
    pub(crate) fn hooks(&self) -> Option<(&dyn crate::hooks::Hooks, Duration)> {
        let hooks = self.inner.hooks.get()?;
        Some((&**hooks, Duration::from_millis(self.inner.config.hooks.timeout_ms)))
    }

    /// Marks this node's cluster presence as needing a rewrite.
    pub(crate) fn presence_stale(&self) {
        self.inner.presence_stale.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's id in its cluster; `None` on a single node.
    pub fn node_id(&self) -> Option<&str> {
        self.inner.cluster.as_deref().map(|cluster| cluster.node.as_str())
    }

    /// Whether Redis answered the node's last request; `None` on a single
    /// node.
    pub fn redis_up(&self) -> Option<bool> {
        self.inner.cluster.as_deref().map(Cluster::is_up)
    }

    /// Resolves once this node's Redis subscription is in place (at once on
    /// a single node): from then on it hears every delivery of the cluster.
    /// [`crate::serve`] waits for it before accepting connections, at most
    /// `redis.timeout_ms`.
    pub async fn subscribed(&self) {
        if self.inner.cluster.is_some() {
            self.start_maintenance();
            self.inner.subscribed.cancelled().await;
        }
    }

    pub(crate) fn slots(&self) -> &Arc<Semaphore> {
        &self.inner.slots
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
        self.inner
            .hub
            .close_all(switchboard_protocol::CloseCode::GOING_AWAY, crate::session::SHUTDOWN);
    }

    /// Waits until every session has ended, at most `shutdown_grace_ms`,
    /// then makes the history durable. Call after [`AppState::shutdown`].
    pub async fn drain(&self) {
        self.inner.tasks.close();
        let grace = Duration::from_millis(self.inner.config.shutdown_grace_ms);
        if tokio::time::timeout(grace, self.inner.tasks.wait()).await.is_err() {
            tracing::warn!(
                remaining = self.inner.tasks.len(),
                "sessions still open after the shutdown grace period"
            );
        }
        if let Some(cluster) = &self.inner.cluster {
            // Sessions counted themselves out as they closed; what is left
            // of this node (its heartbeat, its figures) goes now rather
            // than when the survivors notice it stopped.
            if let Err(err) = cluster.bury(&cluster.node).await {
                tracing::warn!(%err, "this node's entries stay in redis until they expire");
            }
        }
        if let Err(err) = self.inner.streams.flush() {
            tracing::error!(%err, "history not flushed");
        }
    }

    /// Starts, once, the background task that forgets expired request ids
    /// and idle empty streams every minute, until shutdown. Needs a Tokio
    /// runtime; [`crate::router`] calls it.
    pub(crate) fn start_maintenance(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.maintenance.call_once(|| {
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
                    inner.ids.sweep();
                    inner.admission.sweep();
                    // A disk store's sweep is one write transaction over
                    // every stream: keep it off the async workers.
                    let sweep = move || {
                        inner
                            .streams
                            .sweep(crate::transport::wire::now_ms(), crate::store::STREAM_IDLE_MS)
                    };
                    let _ = tokio::task::spawn_blocking(sweep).await;
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
            if let Some(cluster) = &self.inner.cluster {
                self.start_cluster(cluster.clone());
            }
            if let Some(events) = &self.inner.events {
                tokio::spawn(events.clone().run(self.inner.shutdown.clone()));
            }
            // Large rooms' occupancy counts, coalesced over one interval.
            let every = Duration::from_millis(self.inner.config.rooms.occupancy_interval_ms);
            let clustered = self.inner.cluster.is_some();
            self.every(every, move |inner| {
                if clustered {
                    // The cluster's count, sent to every node's members.
                    let state = AppState { inner: inner.clone() };
                    tokio::spawn(async move { crate::hub::presence::send_occupancy(&state).await });
                } else {
                    inner.hub.send_occupancy();
                }
            });
        });
    }

    /// The node's subscription to the cluster's deliveries, and its
    /// heartbeat: alive, its figures, dead nodes buried and their users'
    /// leaves announced, its own presence rewritten when Redis lost it.
    fn start_cluster(&self, cluster: Arc<Cluster>) {
        let subscriber = Subscriber {
            cluster: cluster.clone(),
            hub: Arc::downgrade(&self.inner.hub),
            rules: self.inner.streams.rules().clone(),
        };
        let (shutdown, ready) = (self.inner.shutdown.clone(), self.inner.subscribed.clone());
        tokio::spawn(subscriber.run(shutdown, ready));
        let weak = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        let every = cluster.node_ttl / 3;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let Some(inner) = weak.upgrade() else { break };
                let state = AppState { inner };
                state.heartbeat(&cluster, first).await;
                first = false;
            }
        });
    }

    /// One heartbeat of a node of a cluster.
    async fn heartbeat(&self, cluster: &Cluster, first: bool) {
        let figures = serde_json::json!({
            "connections": self.inner.hub.connection_count(),
            "users": self.inner.hub.user_count(),
            "rooms": self.inner.hub.room_count(),
            "messages_total": self.inner.hub.counters.messages_total(),
            "deliveries_total": self.inner.hub.counters.deliveries_total(),
        })
        .to_string();
        let Ok(beat) = cluster.heartbeat(&figures).await else { return };
        let stale = self.inner.presence_stale.swap(false, std::sync::atomic::Ordering::Relaxed);
        if (beat.was_unknown && !first) || stale {
            tracing::info!("rewriting this node's presence in redis");
            if let Err(err) = crate::hub::presence::resync(self).await {
                tracing::warn!(%err, "presence not rewritten; trying again at the next heartbeat");
                self.presence_stale();
            }
            let _ = cluster.heartbeat(&figures).await;
        }
        for node in beat.dead {
            match cluster.bury(&node).await {
                Ok(left) => {
                    tracing::info!(%node, users = left.len(), "a node stopped beating: its presence is removed");
                    for (room, user) in left {
                        if let Some(room) = room {
                            crate::hub::operations::announce(
                                self,
                                &room,
                                &user,
                                switchboard_protocol::PresenceAction::Leave,
                            )
                            .await;
                        }
                    }
                }
                Err(err) => tracing::warn!(%node, %err, "dead node not removed"),
            }
        }
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
            streams: self.inner.streams.stream_count().map(|n| n as u64),
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
    pub async fn cluster_stats(&self) -> Result<Stats, crate::store::StoreError> {
        let mut stats = self.stats();
        if let Some(cluster) = &self.inner.cluster {
            stats.cluster = Some(cluster.stats().await?);
        }
        Ok(stats)
    }

    /// Time since this state was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}
