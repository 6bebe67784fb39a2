//! [`ClientBuilder`]: every client option, with defaults.

use std::time::Duration;

use crate::backoff::ReconnectPolicy;
use crate::client::Client;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::runtime::{BoxFuture, MaybeSend};
use crate::transport::Connector;

/// The longest timer the client accepts: browsers' timers take at most
/// 2^31 − 1 ms (about 24.8 days), and one rule for every target keeps the
/// options portable.
pub const MAX_TIMER: Duration = Duration::from_millis(i32::MAX as u64);

/// Application-level heartbeat: the client pings every `interval` and drops
/// the connection (then reconnects) after `timeout` without hearing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// How often to ping (default 25 s).
    pub interval: Duration,
    /// Silence after which the connection is considered dead (default 60 s).
    pub timeout: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat { interval: Duration::from_secs(25), timeout: Duration::from_secs(60) }
    }
}

/// Supplies connection tokens: called before every connection attempt and
/// when the hub warns that the current token is about to expire.
pub trait TokenProvider: MaybeSend {
    /// A fresh token, or why none could be had.
    fn token(&self) -> BoxFuture<Result<String, String>>;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + MaybeSend,
    Fut: std::future::Future<Output = Result<String, String>> + FutureBound + 'static,
{
    fn token(&self) -> BoxFuture<Result<String, String>> {
        Box::pin(self())
    }
}

/// `Send` natively, nothing on wasm32: what a token future must be.
#[cfg(not(target_arch = "wasm32"))]
pub trait FutureBound: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> FutureBound for T {}
/// `Send` natively, nothing on wasm32: what a token future must be.
#[cfg(target_arch = "wasm32")]
pub trait FutureBound {}
#[cfg(target_arch = "wasm32")]
impl<T> FutureBound for T {}

/// Where tokens come from.
#[derive(Clone)]
pub(crate) enum Tokens {
    /// No tokens: identity from `user` (a hub in insecure mode).
    None,
    /// One token for the client's lifetime.
    Fixed(String),
    /// Asked before each attempt and on refresh.
    Provider(std::sync::Arc<dyn TokenProvider>),
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tokens::None => "None",
            Tokens::Fixed(_) => "Fixed(…)",
            Tokens::Provider(_) => "Provider(…)",
        })
    }
}

/// The resolved options a client runs with.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Where the hub is: the URL first, then the fallbacks, tried in turn.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) reconnect: ReconnectPolicy,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) welcome_timeout: Duration,
    pub(crate) offline_queue: usize,
    pub(crate) tokens: Tokens,
    pub(crate) connector: Connector,
}

/// Configures a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    fallbacks: Vec<String>,
    user: Option<String>,
    headers: Vec<(String, String)>,
    reconnect: ReconnectPolicy,
    heartbeat: Option<Heartbeat>,
    request_timeout: Duration,
    connect_timeout: Duration,
    welcome_timeout: Duration,
    offline_queue: usize,
    tokens: Tokens,
    /// Set natively by `tls_config` (`transport/native.rs`) too.
    pub(crate) connector: Connector,
}

impl ClientBuilder {
    pub(crate) fn new(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            fallbacks: Vec::new(),
            user: None,
            headers: Vec::new(),
            reconnect: ReconnectPolicy::default(),
            heartbeat: Some(Heartbeat::default()),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            welcome_timeout: Duration::from_secs(10),
            offline_queue: 1_024,
            tokens: Tokens::None,
            connector: Connector::default(),
        }
    }

    /// Authenticates with this JWT (sent in the first frame, so it never
    /// appears in URLs or logs). The hub names the user from its `sub`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.tokens = Tokens::Fixed(token.into());
        self
    }

    /// Authenticates with tokens from `provider`, asked before every
    /// connection attempt and again when the hub says the current token is
    /// about to expire, so long-lived connections are never dropped for it.
    /// Each call is bounded by the request timeout (a provider that does not
    /// answer in time counts as a failed attempt) and is abandoned by
    /// `disconnect()` and `close()`.
    pub fn token_provider(mut self, provider: impl TokenProvider + 'static) -> Self {
        self.tokens = Tokens::Provider(std::sync::Arc::new(provider));
        self
    }

    /// Other URLs of the same hub (its other nodes), tried in turn after the
    /// first when a connection attempt fails: an attempt that cannot open or
    /// gets no `welcome` moves to the next URL, wrapping around, while a
    /// connection that was up and is lost tries its own URL again first.
    /// Behind a load balancer one URL is enough. Each is checked like the
    /// first.
    pub fn fallbacks(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.fallbacks = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The user id to connect as (sent as `user_id` while the hub runs without auth).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Adds a header to the upgrade request: natively, and in Node.js, Deno
    /// and Bun through switchboard-js. Browsers cannot, and ignore it with a
    /// warning.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The reconnect policy (default: on, 500 ms to 30 s, unlimited attempts).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The heartbeat, or `None` to rely on the server's alone (default 25 s / 60 s).
    pub fn heartbeat(mut self, heartbeat: Option<Heartbeat>) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// How long a request waits for its answer (default 10 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long one connection attempt may take from the start (TCP, TLS,
    /// the upgrade and the server's `welcome`) before it is abandoned and
    /// the next URL tried (default 20 s). A token provider's wait does not
    /// count: the request timeout bounds it.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an open connection waits for the server's `welcome`
    /// (default 10 s), within the connect timeout.
    pub fn welcome_timeout(mut self, timeout: Duration) -> Self {
        self.welcome_timeout = timeout;
        self
    }

    /// Trusts the root certificates in this PEM document for `wss://`, on
    /// top of the platform's (which include `SSL_CERT_FILE`): a hub with a
    /// private CA. Browsers decide trust themselves and ignore it; natively
    /// [`ClientBuilder::tls_config`] replaces the whole TLS setup instead.
    pub fn add_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connector.add_roots_pem(pem.into());
        self
    }

    /// How many requests may wait to be sent (default 1024): while offline,
    /// and while connected behind the hub's rate or a socket that is not
    /// taking more; past it they fail with [`Error::QueueFull`].
    pub fn offline_queue(mut self, capacity: usize) -> Self {
        self.offline_queue = capacity;
        self
    }

    /// Builds the client and starts its driver task, not yet connected. Natively
    /// this must run inside a Tokio runtime.
    pub fn build(self) -> Result<Client> {
        if let Some(user) = &self.user {
            switchboard_protocol::validate_name(user)
                .map_err(|reason| Error::InvalidName { field: "user", reason })?;
        }
        // With tokens the hub takes the user from the token and refuses `user_id`.
        let user = match self.tokens {
            Tokens::None => self.user.as_deref(),
            _ => None,
        };
        let endpoints = std::iter::once(&self.url)
            .chain(&self.fallbacks)
            .map(|url| Endpoint::new(url, user))
            .collect::<Result<Vec<_>>>()?;
        self.check()?;
        Client::start(Options {
            endpoints,
            headers: self.headers,
            reconnect: self.reconnect,
            heartbeat: self.heartbeat,
            request_timeout: self.request_timeout,
            connect_timeout: self.connect_timeout,
            welcome_timeout: self.welcome_timeout,
            offline_queue: self.offline_queue,
            tokens: self.tokens,
            connector: self.connector,
        })
    }

    /// Every option in range, refused with [`Error::InvalidOptions`]
    /// otherwise, before anything starts.
    fn check(&self) -> Result<()> {
        let invalid = |why: &str| Err(Error::InvalidOptions(why.to_owned()));
        let reconnect = &self.reconnect;
        let timers = [
            self.request_timeout,
            self.connect_timeout,
            self.welcome_timeout,
            reconnect.min_delay,
            reconnect.max_delay,
            self.heartbeat.as_ref().map_or(Duration::ZERO, |h| h.timeout),
        ];
        if timers.iter().any(|timer| *timer > MAX_TIMER) {
            return invalid("timeouts and delays must be at most 2147483647 ms (about 24.8 days)");
        }
        if timers[..3].iter().any(Duration::is_zero) {
            return invalid("the request, connect and welcome timeouts must be positive");
        }
        if reconnect.min_delay > reconnect.max_delay {
            return invalid("the reconnect min delay is above its max delay");
        }
        if let Some(heartbeat) = &self.heartbeat {
            if heartbeat.interval.is_zero() || heartbeat.timeout < heartbeat.interval {
                return invalid("the heartbeat interval must be positive and at most the timeout");
            }
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        self.connector.check()
    }
}

/// A header name is an HTTP token and its value visible ASCII, spaces or
/// tabs: what the runtime would refuse at every attempt is refused here.
fn check_header(name: &str, value: &str) -> Result<()> {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(Error::InvalidOptions(format!("header name `{name}` is not an HTTP token")));
    }
    if !value.bytes().all(|c| c == b'\t' || (b' '..=b'~').contains(&c)) {
        return Err(Error::InvalidOptions(format!(
            "header {name}: the value must be visible ASCII, spaces or tabs"
        )));
    }
    Ok(())
}
