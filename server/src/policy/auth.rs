//! [`Authenticator`]: verifies the tokens connections present, or, in
//! insecure development mode, trusts `?user_id=`.
//!
//! Tokens are JWTs: HS256 with `auth.jwt_secret`, RS256 or ES256 with
//! `auth.jwt_public_key_pem`, and any asymmetric algorithm with the keys of
//! an identity provider's key set (`auth.jwks_url`, see
//! `policy/jwks.rs`), chosen by the token's `kid`. `sub` is the user id and must follow the
//! naming rules; `exp` is required (`auth.require_exp`) and, with `nbf`,
//! checked with `auth.leeway_secs` of clock skew; `aud` and `iss` must match
//! `auth.audience` and `auth.issuer` when those are set (and a token with an
//! `aud` is refused when no audience is); a token whose header names
//! another algorithm (`none` included) is refused. An optional
//! claim (`auth.rooms_claim`, default `rooms`) lists the room patterns the
//! user may enter where a permission says `claim`.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::Value;
use switchboard_protocol::{NameError, validate_name};

use crate::config::AuthConfig;
use crate::error::ConfigError;
use crate::policy::jwks::{KeySet, Lookup, VerifyingKey};

/// Who a connection is, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id every frame from this connection is attributed to.
    pub user: Arc<str>,
    /// Who the token (or `user_id`) named, before a connect hook gave the
    /// connection another `user`: a refreshed token must name this one.
    pub subject: Arc<str>,
    /// Room patterns from the token's rooms claim (`None` without a token).
    pub rooms: Option<Vec<String>>,
    /// When the token expires, in Unix seconds (`None`: never).
    pub expires_at: Option<u64>,
    /// What the connect hook attached to the connection (its role, its
    /// tenant, …): every later hook of the connection sees it, and webhook
    /// bodies carry it as `meta`. Shared, so that copies cost a pointer.
    pub meta: Option<Arc<serde_json::Value>>,
}

impl Identity {
    /// An identity taken on trust (insecure mode, tests).
    pub fn trusted(user: &str) -> Identity {
        let user: Arc<str> = Arc::from(user);
        Identity { subject: user.clone(), user, rooms: None, expires_at: None, meta: None }
    }

    /// Takes what a refreshed token says (its expiry, its rooms claim) and
    /// keeps what the connection's start decided (the user a connect hook
    /// named, its metadata). `Err` when the token names another subject.
    pub fn refresh(&mut self, token: Identity) -> Result<(), AuthError> {
        if token.subject != self.subject {
            return Err(AuthError::OtherUser);
        }
        self.expires_at = token.expires_at;
        self.rooms = token.rooms;
        Ok(())
    }

    /// Whether the rooms claim lets this user into `room`.
    pub fn claims_room(&self, room: &str) -> bool {
        self.rooms.as_ref().is_some_and(|patterns| {
            patterns.iter().any(|p| wildmatch::WildMatch::new(p).matches(room))
        })
    }
}

/// Why a connection was refused. Before the upgrade: HTTP 401 (400 for a
/// missing or malformed `user_id`); after it: close code 4500.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Insecure mode without `user_id`.
    #[error("the query parameter `user_id` is required")]
    MissingUser,
    /// `user_id` breaks the naming rules.
    #[error("invalid `user_id`: {0}")]
    InvalidUser(NameError),
    /// Tokens are required and `user_id` alone was given.
    #[error("this hub requires a token; `user_id` is not accepted")]
    UserIdRefused,
    /// No token arrived (within the deadline, for an `auth` frame).
    #[error("a token is required")]
    MissingToken,
    /// The token's `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// The token's `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature, algorithm or format is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A refreshed token names another user.
    #[error("the new token is for another user")]
    OtherUser,
    /// The token names a key (`kid`) the identity provider's key set does
    /// not hold, even fetched again.
    #[error("the token's signing key `{0}` is not among the identity provider's keys")]
    UnknownKey(String),
    /// The identity provider's key set could not be fetched yet, so no
    /// token signed by it can be checked: a failure of the hub's, answered
    /// 503 (and close code 1011), which clients retry.
    #[error("the identity provider's signing keys are not available yet")]
    KeysUnavailable,
}

impl AuthError {
    /// The machine-readable code of the HTTP error body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingUser | AuthError::InvalidUser(_) => "invalid_identity",
            AuthError::UserIdRefused | AuthError::MissingToken => "token_required",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid
            | AuthError::Invalid(_)
            | AuthError::OtherUser
            | AuthError::UnknownKey(_) => "invalid_token",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Verifies identities for one hub.
pub struct Authenticator {
    secret: Option<DecodingKey>,
    public: Option<Arc<VerifyingKey>>,
    jwks: Option<Arc<KeySet>>,
    insecure: bool,
    rooms_claim: String,
    require_exp: bool,
    audience: Vec<String>,
    issuer: Option<String>,
    leeway_secs: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.secret.is_some())
            .field("public_key", &self.public.is_some())
            .field("jwks", &self.jwks)
            .field("insecure", &self.insecure)
            .finish()
    }
}

impl Authenticator {
    /// Reads the keys of `config`. A key set (`auth.jwks_url`) is fetched
    /// with a client of its own (the hub passes its shared one).
    pub fn new(config: &AuthConfig) -> Result<Authenticator, ConfigError> {
        Authenticator::with_client(config, None)
    }

    /// Reads the keys of `config`; a key set (`auth.jwks_url`) is fetched
    /// with `client` (the hub's one HTTP client, which trusts what the
    /// webhooks trust) or, without one, a client of its own. Nothing is
    /// fetched yet: see [`Authenticator::key_set`].
    pub(crate) fn with_client(
        config: &AuthConfig,
        client: Option<reqwest::Client>,
    ) -> Result<Authenticator, ConfigError> {
        let secret = config.jwt_secret.as_ref().map(|s| DecodingKey::from_secret(s.as_bytes()));
        let public = match &config.jwt_public_key_pem {
            None => None,
            Some(pem) => {
                if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
                    let algorithms = vec![Algorithm::RS256, Algorithm::PS256];
                    Some(Arc::new(VerifyingKey { key, algorithms }))
                } else if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
                    Some(Arc::new(VerifyingKey { key, algorithms: vec![Algorithm::ES256] }))
                } else {
                    return Err(ConfigError::Invalid(
                        "auth.jwt_public_key_pem is neither an RSA nor an EC public key in PEM"
                            .to_owned(),
                    ));
                }
            }
        };
        let jwks = config.jwks_url.as_ref().map(|url| {
            let client = client.unwrap_or_default();
            Arc::new(KeySet::new(
                url.clone(),
                client,
                std::time::Duration::from_secs(config.jwks_refresh_secs),
                std::time::Duration::from_secs(config.jwks_min_interval_secs),
            ))
        });
        Ok(Authenticator {
            secret,
            public,
            jwks,
            insecure: !config.uses_tokens() && config.insecure,
            rooms_claim: config.rooms_claim.clone(),
            require_exp: config.require_exp,
            audience: config.audience.clone(),
            issuer: config.issuer.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// Whether connections must present tokens.
    pub fn uses_tokens(&self) -> bool {
        self.secret.is_some() || self.public.is_some() || self.jwks.is_some()
    }

    /// The identity provider's key set, when `auth.jwks_url` names one:
    /// the hub runs [`KeySet::run`] from its start.
    pub(crate) fn key_set(&self) -> Option<&Arc<KeySet>> {
        self.jwks.as_ref()
    }

    /// Whether `?user_id=` is trusted (development mode).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Checks a user id given on trust.
    pub fn trust(&self, user_id: Option<&str>) -> Result<Identity, AuthError> {
        if self.uses_tokens() {
            return Err(AuthError::UserIdRefused);
        }
        let user = user_id.ok_or(AuthError::MissingUser)?;
        validate_name(user).map_err(AuthError::InvalidUser)?;
        Ok(Identity::trusted(user))
    }

    /// Verifies a token, fetching the identity provider's key set again
    /// first when the token names a key the set does not hold (see
    /// `policy/jwks.rs` for how often that may happen).
    pub async fn authenticate(&self, token: &str) -> Result<Identity, AuthError> {
        let verdict = self.verify(token);
        let Some(jwks) = &self.jwks else { return verdict };
        let refetch = match &verdict {
            Ok(_) | Err(AuthError::Expired | AuthError::NotYetValid) => false,
            Err(AuthError::UnknownKey(_) | AuthError::KeysUnavailable) => true,
            // A PEM key stood in for a `kid` the set does not hold and did
            // not verify it: the provider may have rotated to it.
            Err(_) => decode_header(token)
                .ok()
                .and_then(|header| header.kid)
                .is_some_and(|kid| !matches!(jwks.by_id(&kid), Lookup::Found(_))),
        };
        if refetch {
            jwks.refetch_for_unknown_key().await;
            return self.verify(token);
        }
        verdict
    }

    /// Verifies a token with the keys at hand (the key set as last fetched).
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let secret;
        let public;
        let key = if header.alg == Algorithm::HS256 {
            secret = self.secret.as_ref();
            secret.ok_or_else(|| AuthError::Invalid("algorithm HS256 is not accepted".into()))?
        } else {
            public = self.public_key(header.alg, header.kid.as_deref())?;
            &public.key
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["sub"];
        if self.require_exp {
            required.push("exp");
        }
        if !self.audience.is_empty() {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let claims = decode::<serde_json::Map<String, Value>>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("the token has no `{claim}` claim"))
                }
                ErrorKind::InvalidAudience if self.audience.is_empty() => AuthError::Invalid(
                    "the token names an audience (`aud`) and this hub has none configured \
                     (auth.audience)"
                        .to_owned(),
                ),
                ErrorKind::InvalidAudience => AuthError::Invalid(format!(
                    "the token's audience is not this hub's ({})",
                    self.audience.join(", ")
                )),
                ErrorKind::InvalidIssuer => AuthError::Invalid(format!(
                    "the token's issuer is not {}",
                    self.issuer.as_deref().unwrap_or_default()
                )),
                _ => AuthError::Invalid(e.to_string()),
            })?
            .claims;
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Invalid("`sub` must be a string".into()))?;
        validate_name(user).map_err(|e| AuthError::Invalid(format!("`sub`: {e}")))?;
        let rooms = claims.get(&self.rooms_claim).map(|value| {
            value
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        });
        // A decimal `exp` (PyJWT's `time.time() + 600`) passed the check;
        // read it too, rounded down, or the session would never expire.
        let expires_at = claims
            .get("exp")
            .and_then(|exp| exp.as_u64().or_else(|| exp.as_f64().map(|at| at.max(0.0) as u64)));
        let user: Arc<str> = Arc::from(user);
        Ok(Identity {
            subject: user.clone(),
            user,
            rooms: rooms.or(Some(Vec::new())),
            expires_at,
            meta: None,
        })
    }

    /// The public key that may verify a token signed with `alg` naming
    /// `kid`: the key set's key of that id, else the configured PEM key.
    fn public_key(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<VerifyingKey>, AuthError> {
        let refused = || AuthError::Invalid(format!("algorithm {alg:?} is not accepted"));
        let fits = |key: &Arc<VerifyingKey>| key.algorithms.contains(&alg);
        let from_set = self.jwks.as_ref().map(|jwks| match kid {
            Some(kid) => jwks.by_id(kid),
            None => jwks.only_key_for(alg),
        });
        match from_set {
            Some(Lookup::Found(key)) if fits(&key) => Ok(key),
            Some(Lookup::Found(_)) => Err(AuthError::Invalid(format!(
                "the key `{}` does not sign with {alg:?}",
                kid.unwrap_or_default()
            ))),
            found => match (&self.public, found) {
                (Some(key), _) if fits(key) => Ok(key.clone()),
                (_, Some(Lookup::NotFetched)) => Err(AuthError::KeysUnavailable),
                (_, Some(Lookup::Unknown)) => match kid {
                    Some(kid) => Err(AuthError::UnknownKey(kid.to_owned())),
                    None => Err(AuthError::Invalid(
                        "the token names no key (`kid`), and no single key of the key set fits it"
                            .into(),
                    )),
                },
                _ => Err(refused()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn hub() -> Authenticator {
        let config = AuthConfig { jwt_secret: Some("s3cret".into()), ..AuthConfig::default() };
        Authenticator::new(&config).unwrap()
    }

    fn token(claims: Value, secret: &str) -> String {
        encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn now() -> u64 {
        crate::wire::now_ms() / 1000
    }

    #[test]
    fn a_good_token_names_the_user_and_their_rooms() {
        let exp = now() + 60;
        let id = hub()
            .verify(&token(json!({"sub": "alice", "exp": exp, "rooms": ["private:a*"]}), "s3cret"))
            .unwrap();
        assert_eq!(&*id.user, "alice");
        assert!(id.claims_room("private:abc") && !id.claims_room("private:b"));
        assert_eq!(id.expires_at, Some(exp));
    }

    #[test]
    fn bad_tokens_are_refused_with_their_reason() {
        let hub = hub();
        assert_eq!(
            hub.verify(&token(json!({"sub": "a", "exp": now() - 30}), "s3cret")),
            Err(AuthError::Expired)
        );
        assert_eq!(
            hub.verify(&token(json!({"sub": "a", "exp": now() + 60, "nbf": now() + 30}), "s3cret")),
            Err(AuthError::NotYetValid)
        );
        assert!(matches!(
            hub.verify(&token(json!({"sub": "a"}), "wrong")),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            hub.verify(&token(json!({"name": "a"}), "s3cret")),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(hub.verify("garbage"), Err(AuthError::Invalid(_))));
        // alg: none, hand-made: header {"alg":"none","typ":"JWT"}.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0.";
        assert!(matches!(hub.verify(none), Err(AuthError::Invalid(_))));
        assert!(matches!(
            hub.verify(&token(json!({"sub": "bad\u{7}name", "exp": now() + 60}), "s3cret")),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn rs256_and_es256_tokens_verify_against_the_public_key() {
        for (public, private, algorithm) in [
            (
                include_str!("../../testdata/rsa-public.pem"),
                include_str!("../../testdata/rsa-private.pem"),
                Algorithm::RS256,
            ),
            (
                include_str!("../../testdata/ec-public.pem"),
                include_str!("../../testdata/ec-private.pem"),
                Algorithm::ES256,
            ),
        ] {
            let config =
                AuthConfig { jwt_public_key_pem: Some(public.into()), ..AuthConfig::default() };
            let hub = Authenticator::new(&config).unwrap();
            let key = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
                _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            };
            let claims = json!({"sub": "carol", "exp": now() + 60});
            let signed = encode(&Header::new(algorithm), &claims, &key).unwrap();
            assert_eq!(&*hub.verify(&signed).unwrap().user, "carol", "{algorithm:?}");
            // An HS256 token cannot pass where only a public key is configured,
            // even one "signed" with the public key's text (algorithm confusion).
            let confused = token(json!({"sub": "mallory", "exp": now() + 60}), public);
            assert!(matches!(hub.verify(&confused), Err(AuthError::Invalid(_))), "{algorithm:?}");
        }
        let bad =
            AuthConfig { jwt_public_key_pem: Some("not a key".into()), ..AuthConfig::default() };
        assert!(Authenticator::new(&bad).is_err());
    }

    #[test]
    fn user_id_is_trusted_only_without_keys() {
        assert_eq!(hub().trust(Some("alice")), Err(AuthError::UserIdRefused));
        let insecure = Authenticator::new(&AuthConfig::default()).unwrap();
        assert!(insecure.is_insecure());
        assert_eq!(&*insecure.trust(Some("alice")).unwrap().user, "alice");
        assert_eq!(insecure.trust(None), Err(AuthError::MissingUser));
    }

    fn verdict(config: AuthConfig, claims: Value) -> Result<Identity, AuthError> {
        let config = AuthConfig { jwt_secret: Some("s3cret".into()), ..config };
        Authenticator::new(&config).unwrap().verify(&token(claims, "s3cret"))
    }

    #[test]
    fn expiry_is_required_and_checked_with_a_little_leeway() {
        let default = AuthConfig::default;
        let reason = |r: Result<Identity, AuthError>| match r {
            Err(AuthError::Invalid(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(reason(verdict(default(), json!({"sub": "a"}))), "the token has no `exp` claim");
        let eternal = AuthConfig { require_exp: false, ..default() };
        assert!(verdict(eternal, json!({"sub": "a"})).is_ok());
        assert!(verdict(default(), json!({"sub": "a", "exp": now() - 2})).is_ok(), "5 s leeway");
        let strict = AuthConfig { leeway_secs: 0, ..default() };
        let late = verdict(strict, json!({"sub": "a", "exp": now() - 2}));
        assert_eq!(late.unwrap_err(), AuthError::Expired);
    }

    #[test]
    fn audience_and_issuer_are_checked_when_configured() {
        let hub = || AuthConfig {
            audience: vec!["api://hub".into(), "api://hub2".into()],
            issuer: Some("https://idp/".into()),
            ..AuthConfig::default()
        };
        let exp = now() + 60;
        let ok = json!({"sub": "a", "exp": exp, "aud": "api://hub2", "iss": "https://idp/"});
        assert!(verdict(hub(), ok).is_ok());
        let among =
            json!({"sub": "a", "exp": exp, "aud": ["x", "api://hub"], "iss": "https://idp/"});
        assert!(verdict(hub(), among).is_ok());
        for claims in [
            json!({"sub": "a", "exp": exp, "aud": "x", "iss": "https://idp/"}),
            json!({"sub": "a", "exp": exp, "iss": "https://idp/"}),
            json!({"sub": "a", "exp": exp, "aud": "api://hub", "iss": "https://other/"}),
            json!({"sub": "a", "exp": exp, "aud": "api://hub"}),
        ] {
            assert!(
                matches!(verdict(hub(), claims.clone()), Err(AuthError::Invalid(_))),
                "{claims}"
            );
        }
        // No audience configured: a token meant for one is not for this hub.
        let aimed = json!({"sub": "a", "exp": exp, "aud": "api://hub"});
        match verdict(AuthConfig::default(), aimed) {
            Err(AuthError::Invalid(why)) => assert!(why.contains("auth.audience"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_audience_reads_from_a_string_or_a_list() {
        let one: AuthConfig = toml::from_str(r#"audience = "api://hub""#).unwrap();
        assert_eq!(one.audience, ["api://hub"]);
        let many: AuthConfig = toml::from_str(r#"audience = ["a", "b"]"#).unwrap();
        assert_eq!(many.audience, ["a", "b"]);
    }

    #[test]
    fn a_decimal_exp_still_ends_the_session() {
        let base = now();
        let exp = base as f64 + 600.7;
        let identity = verdict(AuthConfig::default(), json!({"sub": "a", "exp": exp})).unwrap();
        assert_eq!(identity.expires_at, Some(base + 600));
    }

    #[test]
    fn a_refresh_takes_expiry_and_rooms_and_keeps_what_the_start_decided() {
        let base = now();
        let first = json!({"sub": "ann", "exp": base + 60, "rooms": ["a:*"]});
        let mut identity = verdict(AuthConfig::default(), first).unwrap();
        // What a connect hook did.
        identity.user = "member-ann".into();
        identity.meta = Some(Arc::new(json!({"plan": "gold"})));
        let later = json!({"sub": "ann", "exp": base + 600, "rooms": ["b:*"]});
        identity.refresh(verdict(AuthConfig::default(), later).unwrap()).unwrap();
        assert_eq!((&*identity.user, &*identity.subject), ("member-ann", "ann"));
        assert_eq!(identity.meta.as_deref(), Some(&json!({"plan": "gold"})));
        assert_eq!(identity.expires_at, Some(base + 600));
        assert!(identity.claims_room("b:1") && !identity.claims_room("a:1"));
        let other = verdict(AuthConfig::default(), json!({"sub": "bob", "exp": base + 900}));
        assert_eq!(identity.refresh(other.unwrap()), Err(AuthError::OtherUser));
        assert_eq!(identity.expires_at, Some(base + 600), "unchanged");
    }
}
