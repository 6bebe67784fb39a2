//! The HTTP client of the webhooks and the events: one setup for both, so
//! a backend behind `https://` is trusted the same way whichever calls it.
//!
//! TLS is rustls (no OpenSSL), trusting the system's roots (and
//! `SSL_CERT_FILE`) plus the certificates of `hooks.ca_pem`.

use std::time::Duration;

use crate::config::HooksConfig;

/// A client for the backends `config` names. The configuration was
/// validated at start (`ca_pem` holds certificates), so this cannot fail
/// on it; a client that cannot be built at all falls back to reqwest's
/// defaults, with a log line.
pub(crate) fn client(config: &HooksConfig) -> reqwest::Client {
    let mut builder =
        reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(90)).tcp_nodelay(true);
    for der in config.ca_certificates().unwrap_or_default() {
        match reqwest::Certificate::from_der(&der) {
            Ok(cert) => builder = builder.add_root_certificate(cert),
            Err(err) => tracing::error!(%err, "hooks.ca_pem: a certificate is not usable"),
        }
    }
    builder.build().unwrap_or_else(|err| {
        tracing::error!(%err, "the webhooks' HTTP client could not be set up: using the defaults");
        reqwest::Client::new()
    })
}
