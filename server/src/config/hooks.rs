//! `[hooks]`: how the application's hooks are called, its webhooks, and
//! its events after the fact.

use serde::{Deserialize, Serialize};

/// How the application's hooks ([`crate::hooks`]) are called, and the HTTP
/// webhooks that answer them for a backend in any language (`docs/HOOKS.md`):
///
/// ```toml
/// [hooks]
/// secret = "shared-with-the-backend"   # X-Switchboard-Signature: sha256=<HMAC of "<timestamp>.<body>">
///
/// [hooks.publish]
/// url = "http://app.internal/hooks/publish"
/// rooms = ["chat:*"]                   # only these rooms; every room when empty
/// on_error = "refuse"                  # or "allow" while the backend is down
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// How long one hook call may take before its action is refused with
    /// error 302 `hook_failed` (close 1011 at connect), default 1000 ms.
    pub timeout_ms: u64,
    /// A secret shared with the webhook backend: each request then carries
    /// `X-Switchboard-Timestamp: <Unix seconds>` and
    /// `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
    pub secret: Option<String>,
    /// Certificates (PEM, one or several, typically a private CA) trusted
    /// for `https://` webhooks and events besides the system's roots;
    /// blocks of other kinds (a key) are ignored. Checked at start.
    pub ca_pem: Option<String>,
    /// Webhook for connections, before `welcome`.
    pub connect: Option<WebhookConfig>,
    /// Webhook for joins.
    pub join: Option<WebhookConfig>,
    /// Webhook for client publishes.
    pub publish: Option<WebhookConfig>,
    /// Webhook for client-to-client sends.
    pub send: Option<WebhookConfig>,
    /// Webhook answering client `rpc` calls.
    pub rpc: Option<WebhookConfig>,
    /// Webhook told of ended connections (its answer is not awaited for
    /// anything).
    pub disconnect: Option<WebhookConfig>,
    /// Events after the fact (messages published and sent, users online
    /// and offline), delivered in batches with retries.
    pub events: Option<EventsConfig>,
}

/// Where events after the fact go, and how many wait while the backend is
/// down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `http://…` or `https://…`: receives `POST {"events": [...]}`,
    /// signed like the hooks.
    pub url: String,
    /// Which events: `published`, `sent`, `online`, `offline` (default all).
    pub kinds: Vec<String>,
    /// Events held while the backend is down (default 10,000); past it the
    /// oldest are dropped, logged and counted.
    pub queue: usize,
    /// Bytes of events (serialized) held while the backend is down
    /// (default 64 MiB); past it the oldest are dropped, logged and
    /// counted, and an event larger than this alone is dropped.
    pub queue_bytes: usize,
    /// Most events in one request (default 100).
    pub batch: usize,
    /// One request's timeout, in milliseconds (default 2000).
    pub timeout_ms: u64,
    /// The longest wait between retries, in milliseconds (default 30,000).
    pub retry_max_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: String::new(),
            kinds: ["published", "sent", "online", "offline"].map(str::to_owned).to_vec(),
            queue: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            batch: 100,
            timeout_ms: 2_000,
            retry_max_ms: 30_000,
        }
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            timeout_ms: 1_000,
            secret: None,
            ca_pem: None,
            connect: None,
            join: None,
            publish: None,
            send: None,
            rpc: None,
            disconnect: None,
            events: None,
        }
    }
}

impl HooksConfig {
    /// The certificates of `ca_pem` (DER), or why it holds none.
    pub fn ca_certificates(&self) -> Result<Vec<Vec<u8>>, String> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let Some(pem) = &self.ca_pem else { return Ok(Vec::new()) };
        let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|cert| cert.map(|cert| cert.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| format!("unreadable PEM: {err}"))?;
        if certs.is_empty() {
            return Err("no certificate in the PEM".to_owned());
        }
        // Parsed as a trust anchor now, so a block that is PEM but no
        // certificate is refused at start rather than at the first call.
        let mut roots = rustls::RootCertStore::empty();
        for cert in &certs {
            roots
                .add(CertificateDer::from(cert.as_slice()))
                .map_err(|err| format!("not a usable certificate: {err}"))?;
        }
        Ok(certs)
    }

    /// Whether any webhook is configured.
    pub fn has_webhooks(&self) -> bool {
        [&self.connect, &self.join, &self.publish, &self.send, &self.rpc, &self.disconnect]
            .iter()
            .any(|hook| hook.is_some())
    }
}

/// One webhook: where the hub POSTs, for which rooms, and what a backend
/// that fails means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://…`, or `https://…` for a backend beyond the private network
    /// (verified against the system's roots and `hooks.ca_pem`).
    pub url: String,
    /// For `join` and `publish`: only rooms matching these patterns go to
    /// the backend, the others are allowed; every room when empty.
    pub rooms: Vec<String>,
    /// What a backend that is down, answers an error status or does not
    /// answer in time means: `refuse` the action (error 302, the default)
    /// or `allow` it.
    pub on_error: OnError,
    /// How long the backend may take, in milliseconds (default 800; must be
    /// below `hooks.timeout_ms`).
    pub timeout_ms: u64,
    /// Requests to this backend in flight at once (default 256); more wait,
    /// within the timeout.
    pub max_in_flight: usize,
    /// For `connect`: the request headers passed on in the body's
    /// `headers`, by name (case does not matter); none by default, so that
    /// cookies and credentials reach the backend only when listed.
    pub headers: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            rooms: Vec::new(),
            on_error: OnError::Refuse,
            timeout_ms: 800,
            max_in_flight: 256,
            headers: Vec::new(),
        }
    }
}

/// What a failed webhook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Refuse the action (error 302 `hook_failed`; close 1011 at connect).
    Refuse,
    /// Carry the action out as if the backend had allowed it.
    Allow,
}
