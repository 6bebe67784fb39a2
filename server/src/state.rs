//! [`AppState`]: everything a request or a session needs, cheap to clone.
//!
//! It owns this node's [`Hub`], its [`Broker`], the connection slots that
//! enforce `limits.max_connections`, and the shutdown signal with the task
//! tracker that lets shutdown wait for sessions to say goodbye.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::config::{Permissions, StoreKind};
use crate::error::ConfigError;
use crate::hub::ids::IdWindow;
use crate::hub::rates::{RateWindow, Totals};
use crate::hub::stats::Stats;
use crate::hub::streams::Streams;
use crate::policy::admission::Admission;
use crate::policy::auth::Authenticator;
use crate::store::{DiskStore, HistoryStore, MemoryStore};
use crate::{Config, Hub, MemoryBroker};

/// How often expired ids and idle streams are dropped.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);
/// An empty stream untouched this long is dropped (its epoch with it).
const STREAM_IDLE_MS: u64 = 10 * 60 * 1000;

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
    ids: IdWindow,
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
    /// A single-node hub with the in-memory broker and the history store
    /// the configuration names.
    pub fn new(config: Config) -> Result<AppState, ConfigError> {
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

    /// A hub with the given history store and broker.
    pub fn with_backends(
        config: Config,
        store: Arc<dyn HistoryStore>,
        make_broker: impl FnOnce(Arc<Hub>) -> Arc<dyn Broker>,
    ) -> Result<AppState, ConfigError> {
        config.validate()?;
        let auth = Authenticator::new(&config.auth)?;
        let admission = Admission::new(&config.limits);
        let permissions = config.permissions.compile();
        let hub = Arc::new(Hub::with_policy(crate::hub::PresencePolicy {
            ack_members: config.rooms.join_ack_members,
            large_room: config.rooms.large_room,
        }));
        let broker = make_broker(hub.clone());
        let streams = Streams::new(store, config.history.clone());
        let ids = IdWindow::new(
            Duration::from_secs(config.delivery.id_window_secs),
            config.delivery.max_ids_per_user,
        );
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

    pub(crate) fn ids(&self) -> &IdWindow {
        &self.inner.ids
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
        if let Err(err) = self.inner.streams.store().flush() {
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
                        inner.streams.sweep(crate::transport::wire::now_ms(), STREAM_IDLE_MS)
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
            // Large rooms' occupancy counts, coalesced over one interval.
            let every = Duration::from_millis(self.inner.config.rooms.occupancy_interval_ms);
            self.every(every, |inner| {
                inner.hub.send_occupancy();
            });
        });
    }

    /// Runs `work` every `period` until shutdown, or until the state is
    /// dropped: the task holds it weakly, so it never keeps a stopped hub
    /// alive.
    fn every(&self, period: Duration, work: impl Fn(&Inner) + Send + 'static) {
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
            streams: self.inner.streams.store().stream_count().ok().map(|n| n as u64),
            messages_total: hub.counters.messages_total(),
            deliveries_total: hub.counters.deliveries_total(),
            connections_total: hub.counters.connections_total(),
            slow_consumers_total: hub.counters.slow_consumers_total(),
            uptime_ms: self.uptime().as_millis() as u64,
            rates: self.inner.rates.rates(),
        }
    }

    /// Time since this state was created.
    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }
}
