//! The HTTP client of the webhooks and the events: one client for both
//! (one connection pool, one read of the system's roots), so a backend
//! behind `https://` is trusted the same way whichever calls it.
//!
//! TLS is rustls (no OpenSSL). It trusts the system's roots, which
//! `SSL_CERT_FILE` or `SSL_CERT_DIR` replace when set (rustls-native-certs),
//! plus the certificates of `hooks.ca_pem`.

use std::time::Duration;

use crate::config::HooksConfig;
use crate::error::ConfigError;

/// A client for the backends `config` names, or why none can be built
/// (the hub does not start then: a webhook that can never be called is a
/// configuration error, not a runtime surprise).
pub(crate) fn client(config: &HooksConfig) -> Result<reqwest::Client, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("hooks: {what}"));
    let mut builder =
        reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(90)).tcp_nodelay(true);
    for der in config.ca_certificates().map_err(|err| invalid(format!("ca_pem: {err}")))? {
        let cert = reqwest::Certificate::from_der(&der)
            .map_err(|err| invalid(format!("ca_pem: {err}")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build().map_err(|err| invalid(format!("the HTTP client cannot be set up: {err}")))
}
