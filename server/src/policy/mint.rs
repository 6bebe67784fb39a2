//! Tokens the hub itself would accept, for development and scripts:
//! `switchboard token --user alice` signs one with the configured HS256
//! secret (`auth.jwt_secret`), naming the hub's audience and issuer when it
//! requires them, so that trying a hub with tokens on needs no identity
//! provider. Production tokens come from the application's backend, which
//! holds the same secret (or the private key of `jwt_public_key_pem`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value, json};
use switchboard_protocol::validate_name;

use crate::config::AuthConfig;

/// What a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Its `sub`: the user it names.
    pub user: String,
    /// How long it is valid from now.
    pub ttl: Duration,
    /// Room patterns for the `auth.rooms_claim` claim, if any.
    pub rooms: Vec<String>,
}

/// Why no token was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Only a shared secret can sign here: with a public key or a key set
    /// the private half lives with the identity provider.
    #[error(
        "no auth.jwt_secret is configured (SWITCHBOARD_AUTH__JWT_SECRET or --jwt-secret): \
         this command signs HS256 tokens with it; hubs on a public key or a key set take \
         tokens from their identity provider"
    )]
    NoSecret,
    /// The user is not a valid name.
    #[error("--user: {0}")]
    InvalidUser(String),
    /// The lifetime is not a whole number with a unit.
    #[error("--ttl must be a whole number with s, m, h or d after it (90s, 15m, 1h, 7d)")]
    UnreadableTtl,
    /// The lifetime is zero or past what a token can say.
    #[error("--ttl must be between 1 second and 10 years")]
    InvalidTtl,
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

/// A signed HS256 token for `request`, valid from `now`, that a hub with
/// `config` accepts.
pub fn mint(
    config: &AuthConfig,
    request: &TokenRequest,
    now: SystemTime,
) -> Result<String, MintError> {
    let secret = config.jwt_secret.as_deref().ok_or(MintError::NoSecret)?;
    validate_name(&request.user).map_err(|e| MintError::InvalidUser(e.to_string()))?;
    if request.ttl < Duration::from_secs(1) || request.ttl > Duration::from_secs(10 * 365 * 86_400)
    {
        return Err(MintError::InvalidTtl);
    }
    let issued = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(request.user));
    claims.insert("iat".into(), json!(issued));
    claims.insert("exp".into(), json!(issued + request.ttl.as_secs()));
    if let Some(audience) = config.audience.first() {
        claims.insert("aud".into(), json!(audience));
    }
    if let Some(issuer) = &config.issuer {
        claims.insert("iss".into(), json!(issuer));
    }
    if !request.rooms.is_empty() {
        claims.insert(config.rooms_claim.clone(), json!(request.rooms));
    }
    jsonwebtoken::encode(
        &Header::default(),
        &Value::Object(claims),
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| MintError::Sign(e.to_string()))
}

/// Reads a lifetime: a whole number with `s`, `m`, `h` or `d` after it
/// (`90s`, `15m`, `1h`, `7d`), or seconds alone.
pub fn parse_ttl(text: &str) -> Result<Duration, MintError> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, unit)) if unit.is_ascii_alphabetic() => {
            (text.get(..at).unwrap_or_default(), unit)
        }
        _ => (text, 's'),
    };
    // `u64::from_str` would take a leading `+`; a lifetime is digits only.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MintError::UnreadableTtl);
    }
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return Err(MintError::UnreadableTtl),
    };
    let count: u64 = digits.parse().map_err(|_| MintError::InvalidTtl)?;
    count.checked_mul(seconds).map(Duration::from_secs).ok_or(MintError::InvalidTtl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::auth::Authenticator;

    fn config() -> AuthConfig {
        AuthConfig { jwt_secret: Some("s3cret".into()), ..AuthConfig::default() }
    }

    fn request(user: &str) -> TokenRequest {
        TokenRequest { user: user.into(), ttl: Duration::from_secs(3600), rooms: Vec::new() }
    }

    #[test]
    fn a_minted_token_is_accepted_by_the_same_configuration() {
        let mut config = config();
        config.audience = vec!["api://hub".into()];
        config.issuer = Some("https://idp/".into());
        let mut wanted = request("alice");
        wanted.rooms = vec!["private:a*".into()];
        let token = mint(&config, &wanted, SystemTime::now()).unwrap();
        let identity = Authenticator::new(&config).unwrap().verify(&token).unwrap();
        assert_eq!(&*identity.user, "alice");
        assert!(identity.claims_room("private:alice"));
        assert!(!identity.claims_room("private:bob"));
    }

    #[test]
    fn an_expired_token_is_refused_and_other_secrets_do_not_verify() {
        let long_ago = SystemTime::now() - Duration::from_secs(7200);
        let token = mint(&config(), &request("alice"), long_ago).unwrap();
        assert!(Authenticator::new(&config()).unwrap().verify(&token).is_err());

        let token = mint(&config(), &request("alice"), SystemTime::now()).unwrap();
        let other = AuthConfig { jwt_secret: Some("other".into()), ..AuthConfig::default() };
        assert!(Authenticator::new(&other).unwrap().verify(&token).is_err());
    }

    #[test]
    fn what_cannot_be_minted_says_why() {
        let now = SystemTime::now();
        assert_eq!(mint(&AuthConfig::default(), &request("alice"), now), Err(MintError::NoSecret));
        assert!(matches!(
            mint(&config(), &request("bad\u{7}name"), now),
            Err(MintError::InvalidUser(_))
        ));
        let mut zero = request("alice");
        zero.ttl = Duration::ZERO;
        assert_eq!(mint(&config(), &zero, now), Err(MintError::InvalidTtl));
    }

    #[test]
    fn lifetimes_read_with_their_unit() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_ttl("120"), Ok(Duration::from_secs(120)));
        for unreadable in ["", "h", "1w", "-1h", "+5m", "1.5h", "1 h"] {
            assert_eq!(parse_ttl(unreadable), Err(MintError::UnreadableTtl), "{unreadable}");
        }
        assert_eq!(parse_ttl("99999999999999999999d"), Err(MintError::InvalidTtl));
    }
}
