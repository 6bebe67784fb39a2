//! [`KeySet`]: the signing keys an identity provider publishes as a JWKS
//! document (`auth.jwks_url`), kept in memory and fetched again as the
//! provider rotates them.
//!
//! The set is fetched at start and every `auth.jwks_refresh_secs`; a token
//! that names a `kid` the set does not hold makes the hub fetch it again
//! before refusing, at most once per `auth.jwks_min_interval_secs`, so that
//! a client sending made-up key ids cannot turn the hub into a load on the
//! provider. A fetched set replaces the old one whole: a key the provider
//! withdrew stops verifying tokens at the next fetch.
//!
//! Only signing keys are kept: a key marked `"use": "enc"`, a symmetric
//! (`oct`) key and a key type this hub cannot read are skipped (and logged),
//! never a reason to drop the rest of the set.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The largest JWKS document read (providers publish a few keys: a few KiB).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a failed periodic fetch is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(15);

/// One verification key and the algorithms it may verify.
pub(crate) struct VerifyingKey {
    /// The key.
    pub(crate) key: DecodingKey,
    /// The `alg` values a token signed with it may name.
    pub(crate) algorithms: Vec<Algorithm>,
}

/// Why a fetch of the key set failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwksError {
    /// The provider could not be reached, or did not answer in time.
    #[error("the key set could not be fetched: {0}")]
    Unreachable(String),
    /// The provider answered with an error status.
    #[error("the key set URL answered {0}")]
    Status(u16),
    /// The document is larger than any key set.
    #[error("the key set document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// The document is not a JWKS (`{"keys": [...]}`).
    #[error("the key set document is not a JWKS: {0}")]
    Malformed(String),
    /// The document holds no key this hub can verify signatures with.
    #[error("the key set holds no signing key this hub can use")]
    NoUsableKey,
}

/// What a lookup by `kid` found.
pub(crate) enum Lookup {
    /// This key.
    Found(Arc<VerifyingKey>),
    /// The set was fetched and does not hold it.
    Unknown,
    /// No fetch has succeeded yet: nothing can be said about any key.
    NotFetched,
}

/// The keys as last fetched.
#[derive(Default)]
struct Keys {
    by_id: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid`, for tokens that name none.
    unnamed: Vec<Arc<VerifyingKey>>,
    fetched: bool,
}

/// An identity provider's signing keys, fetched from `url`.
pub(crate) struct KeySet {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    min_interval: Duration,
    keys: RwLock<Keys>,
    /// When the last fetch started: looked at first, without waiting, so
    /// that tokens with made-up key ids never queue up behind a fetch.
    last_fetch: std::sync::Mutex<Option<Instant>>,
    /// Held while fetching, so that the requests that meet an unknown
    /// `kid` together cause one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("url", &self.url).finish_non_exhaustive()
    }
}

impl KeySet {
    /// A key set that is fetched from `url` with `client`; nothing is
    /// fetched until [`KeySet::run`] or a lookup asks.
    pub(crate) fn new(
        url: String,
        client: reqwest::Client,
        refresh: Duration,
        min_interval: Duration,
    ) -> KeySet {
        KeySet {
            url,
            client,
            refresh,
            min_interval,
            keys: RwLock::default(),
            last_fetch: std::sync::Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The key named `kid`.
    pub(crate) fn by_id(&self, kid: &str) -> Lookup {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        match keys.by_id.get(kid) {
            Some(key) => Lookup::Found(key.clone()),
            None if keys.fetched => Lookup::Unknown,
            None => Lookup::NotFetched,
        }
    }

    /// For a token that names no `kid`: the one key of the set that may
    /// verify `alg`, when exactly one may (a provider with a single key
    /// often leaves `kid` out).
    pub(crate) fn only_key_for(&self, alg: Algorithm) -> Lookup {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let mut fitting =
            keys.by_id.values().chain(&keys.unnamed).filter(|key| key.algorithms.contains(&alg));
        match (fitting.next(), fitting.next()) {
            (Some(key), None) => Lookup::Found(key.clone()),
            _ if keys.fetched => Lookup::Unknown,
            _ => Lookup::NotFetched,
        }
    }

    /// Fetches the set again because a token named a key it does not hold,
    /// unless a fetch started less than the minimum interval ago. Returns
    /// whether a fetch ran (and succeeded).
    pub(crate) async fn refetch_for_unknown_key(&self) -> bool {
        if !due(self.last_fetch(), Instant::now(), self.min_interval) {
            return false;
        }
        // Due: wait for a fetch already under way (bounded by its timeout),
        // then look again.
        let _fetching = self.fetching.lock().await;
        let now = Instant::now();
        if !due(self.last_fetch(), now, self.min_interval) {
            return false;
        }
        self.started_fetch(now);
        match self.fetch().await {
            Ok(count) => {
                tracing::info!(url = %self.url, keys = count, "signing keys fetched for an unknown key id");
                true
            }
            Err(err) => {
                tracing::warn!(url = %self.url, %err, "signing keys not fetched");
                false
            }
        }
    }

    /// Fetches the set now, whenever the last fetch was. Returns how many
    /// keys it holds.
    pub(crate) async fn refresh(&self) -> Result<usize, JwksError> {
        let _fetching = self.fetching.lock().await;
        self.started_fetch(Instant::now());
        self.fetch().await
    }

    fn last_fetch(&self) -> Option<Instant> {
        *self.last_fetch.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn started_fetch(&self, at: Instant) {
        *self.last_fetch.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(at);
    }

    /// Fetches the set at once, then every refresh interval (sooner after
    /// a failure), until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let wait = match self.refresh().await {
                Ok(count) => {
                    tracing::debug!(url = %self.url, keys = count, "signing keys fetched");
                    self.refresh
                }
                Err(err) => {
                    tracing::error!(url = %self.url, %err, "signing keys not fetched; tokens signed by the identity provider cannot be verified until they are");
                    RETRY_AFTER_FAILURE.min(self.refresh)
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn fetch(&self) -> Result<usize, JwksError> {
        let unreachable = |err: reqwest::Error| JwksError::Unreachable(err.to_string());
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status().as_u16()));
        }
        if response.content_length().is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64) {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse(&body)?;
        let count = keys.by_id.len() + keys.unnamed.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(count)
    }
}

/// Whether a fetch caused by an unknown key id may run at `now`, the last
/// having started at `last`.
fn due(last: Option<Instant>, now: Instant, min_interval: Duration) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= min_interval)
}

/// The signing keys of a JWKS document.
fn parse(document: &[u8]) -> Result<Keys, JwksError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(document).map_err(|err| JwksError::Malformed(err.to_string()))?;
    let mut keys = Keys { fetched: true, ..Keys::default() };
    for value in document.keys {
        let kid = value.get("kid").and_then(|kid| kid.as_str()).unwrap_or("").to_owned();
        let key = match serde_json::from_value::<Jwk>(value) {
            Ok(jwk) => verifying_key(&jwk),
            Err(err) => Err(err.to_string()),
        };
        match key {
            Ok(key) if kid.is_empty() => keys.unnamed.push(Arc::new(key)),
            Ok(key) => {
                keys.by_id.insert(kid, Arc::new(key));
            }
            Err(why) => tracing::debug!(%kid, %why, "a key of the key set is skipped"),
        }
    }
    if keys.by_id.is_empty() && keys.unnamed.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

/// A JWK as a verification key, with the algorithms it may verify: the
/// one its `alg` names, or those its key type allows.
fn verifying_key(jwk: &Jwk) -> Result<VerifyingKey, String> {
    if jwk.common.public_key_use.as_ref().is_some_and(|usage| *usage != PublicKeyUse::Signature) {
        return Err("not a signing key".to_owned());
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("an unsupported curve".to_owned()),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // A shared secret has no place in a published key set.
        _ => return Err("not a public signing key".to_owned()),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type,
        Some(named) => {
            let named = named.to_string().parse::<Algorithm>().map_err(|err| err.to_string())?;
            if !by_type.contains(&named) {
                return Err(format!("`alg` {named:?} does not fit the key type"));
            }
            vec![named]
        }
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|err| err.to_string())?;
    Ok(VerifyingKey { key, algorithms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const DOCUMENT: &str = include_str!("../../testdata/jwks.json");

    #[test]
    fn signing_keys_are_kept_and_the_rest_skipped() {
        let keys = parse(DOCUMENT.as_bytes()).unwrap();
        let mut ids: Vec<_> = keys.by_id.keys().cloned().collect();
        ids.sort();
        // `enc-1` (encryption), `secret-1` (oct) and `odd-1` (unknown kty)
        // are skipped without losing the others.
        assert_eq!(ids, ["ec-1", "rsa-1"]);
        assert_eq!(keys.by_id["rsa-1"].algorithms, [Algorithm::RS256], "its `alg` narrows it");
        assert_eq!(keys.by_id["ec-1"].algorithms, [Algorithm::ES256]);
        assert!(matches!(parse(b"{\"keys\":[]}"), Err(JwksError::NoUsableKey)));
        assert!(matches!(parse(b"<html>"), Err(JwksError::Malformed(_))));
    }

    /// A JWKS endpoint on loopback that counts its fetches and serves
    /// whatever document the test sets.
    async fn provider(document: &str) -> (String, Arc<AtomicUsize>, Arc<RwLock<String>>) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(RwLock::new(document.to_owned()));
        let (count, text) = (fetches.clone(), served.clone());
        let app = axum::Router::new().route(
            "/jwks.json",
            axum::routing::get(move || {
                count.fetch_add(1, Ordering::SeqCst);
                let body = text.read().unwrap().clone();
                async move { body }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, fetches, served)
    }

    #[tokio::test]
    async fn unknown_key_ids_fetch_again_at_most_once_per_interval() {
        let (url, fetches, served) = provider(DOCUMENT).await;
        let keys = KeySet::new(
            url,
            reqwest::Client::new(),
            Duration::from_secs(300),
            Duration::from_secs(60),
        );
        assert!(matches!(keys.by_id("rsa-1"), Lookup::NotFetched));
        assert_eq!(keys.refresh().await, Ok(2));
        assert!(matches!(keys.by_id("rsa-1"), Lookup::Found(_)));
        assert!(matches!(keys.by_id("made-up"), Lookup::Unknown));
        // Within the interval of the last fetch, a made-up key id costs the
        // provider nothing, however many tokens name one.
        for _ in 0..5 {
            assert!(!keys.refetch_for_unknown_key().await);
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // The provider rotates: the new set replaces the old one whole.
        let rotated = DOCUMENT.replace("\"rsa-1\"", "\"rsa-2\"");
        *served.write().unwrap() = rotated;
        assert_eq!(keys.refresh().await, Ok(2));
        assert!(matches!(keys.by_id("rsa-2"), Lookup::Found(_)));
        assert!(matches!(keys.by_id("rsa-1"), Lookup::Unknown), "withdrawn");
    }

    #[test]
    fn the_interval_counts_from_the_last_fetch() {
        let minute = Duration::from_secs(60);
        let start = Instant::now();
        assert!(due(None, start, minute), "the first fetch is always due");
        assert!(!due(Some(start), start + Duration::from_secs(59), minute));
        assert!(due(Some(start), start + minute, minute));
        assert!(due(Some(start), start, Duration::ZERO), "no interval: every unknown id fetches");
    }

    #[tokio::test]
    async fn a_provider_that_fails_is_an_error_and_keeps_the_last_keys() {
        let (url, _fetches, served) = provider(DOCUMENT).await;
        let keys =
            KeySet::new(url, reqwest::Client::new(), Duration::from_secs(300), Duration::ZERO);
        keys.refresh().await.unwrap();
        *served.write().unwrap() = "not json".into();
        assert!(matches!(keys.refresh().await, Err(JwksError::Malformed(_))));
        assert!(matches!(keys.by_id("ec-1"), Lookup::Found(_)), "the last good set stays");
        let nowhere = KeySet::new(
            "http://127.0.0.1:9/jwks.json".into(),
            reqwest::Client::new(),
            Duration::from_secs(300),
            Duration::ZERO,
        );
        assert!(matches!(nowhere.refresh().await, Err(JwksError::Unreachable(_))));
        assert!(matches!(nowhere.by_id("ec-1"), Lookup::NotFetched));
    }
}
