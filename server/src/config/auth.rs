//! `[auth]` and `[api]`: how connections prove who they are, and who may
//! use the admin API.

use serde::{Deserialize, Serialize};

/// How connections prove who they are.
///
/// With `jwt_secret`, `jwt_public_key_pem` and/or `jwks_url` set, every
/// connection needs a JWT (HS256 with the secret; RS256 or ES256 with the
/// public key; any asymmetric algorithm of the identity provider's key set)
/// whose `sub` is the user id, and `?user_id=` is refused. Without either, the hub
/// trusts `?user_id=` only when `insecure` is true (the default, for
/// development: the hub then warns at start and `/health` says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Trust `?user_id=` when no key is configured (default true).
    pub insecure: bool,
    /// The shared secret for HS256 tokens.
    pub jwt_secret: Option<String>,
    /// A PEM public key (RSA or EC) for RS256 or ES256 tokens.
    pub jwt_public_key_pem: Option<String>,
    /// Where the identity provider publishes its signing keys as a JWKS
    /// document (`https://…/.well-known/jwks.json`; env
    /// `SWITCHBOARD_AUTH__JWKS_URL`). Fetched at start and every
    /// `jwks_refresh_secs`; a token whose `kid` is not in the set fetches it
    /// again, at most once per `jwks_min_interval_secs`.
    pub jwks_url: Option<String>,
    /// How often the key set is fetched again, in seconds (default 300).
    pub jwks_refresh_secs: u64,
    /// The least time between two fetches caused by tokens with an unknown
    /// `kid`, in seconds (default 60), so that forged tokens cannot make the
    /// hub hammer the identity provider.
    pub jwks_min_interval_secs: u64,
    /// How long a connection without a token in its URL or headers has to
    /// send an `auth` frame, in milliseconds (default 5000); then it is
    /// closed with 4500.
    pub auth_timeout_ms: u64,
    /// The token claim listing the room patterns a user may enter when a
    /// permission says `claim` (default `rooms`).
    pub rooms_claim: String,
    /// How long before a token expires the hub asks for a new one, in
    /// milliseconds (default 30000).
    pub refresh_before_ms: u64,
    /// Refuse tokens without `exp` (default true). Set false only for a
    /// deployment that means to hand out tokens that never expire.
    pub require_exp: bool,
    /// The audiences this hub answers to (a string or a list; env
    /// `SWITCHBOARD_AUTH__AUDIENCE`). When set, a token's `aud` (a string or
    /// an array) must name one of them, and a token without `aud` is
    /// refused. When empty (the default), a token that carries `aud` is
    /// refused: it was minted for a service this hub does not claim to be.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// The issuer a token's `iss` must equal, when set (env
    /// `SWITCHBOARD_AUTH__ISSUER`); a token without `iss` is then refused.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (default 5, as
    /// identity providers' own libraries allow).
    pub leeway_secs: u64,
}

/// A string or a list of strings, read as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            insecure: true,
            jwt_secret: None,
            jwt_public_key_pem: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
            jwks_min_interval_secs: 60,
            auth_timeout_ms: 5_000,
            rooms_claim: "rooms".to_owned(),
            refresh_before_ms: 30_000,
            require_exp: true,
            audience: Vec::new(),
            issuer: None,
            leeway_secs: 5,
        }
    }
}

impl AuthConfig {
    /// Whether tokens are required.
    pub fn uses_tokens(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key_pem.is_some() || self.jwks_url.is_some()
    }
}

/// The HTTP admin API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// When set, every `/api/…` request needs `Authorization: Bearer <key>`
    /// (401 otherwise). `/health` stays open. The binary refuses to listen
    /// on a non-loopback address without one.
    pub key: Option<String>,
    /// A second address serving only `GET /metrics`, without the key (for
    /// a Prometheus on a private network, e.g. `127.0.0.1:9100`). `/metrics`
    /// on the main address stays behind the key.
    pub metrics_bind: Option<std::net::SocketAddr>,
}
