//! `Webhooks`: the [`Hooks`] answered by an HTTP backend in any
//! language, from `[hooks.<name>]` in the configuration (what Centrifugo
//! calls proxies).
//!
//! For each configured hook the hub POSTs a JSON body describing the event
//! and acts on the JSON reply (`docs/HOOKS.md` has every body and reply):
//!
//! | reply | means |
//! |---|---|
//! | `{}` (or any object without the keys below) | allow (`connect`: with `"user"` and `"rooms"` to name the user and join rooms) |
//! | `{"refuse": {"code": 1403, "message": "…"}}` | refuse (code optional: 205 `refused`) |
//! | `{"data": …}` | publish/send: go out with this data instead; rpc: the result |
//!
//! Requests go through one keep-alive client, at most `max_in_flight` at a
//! time per hook, each bounded by the hook's `timeout_ms`. A backend that
//! is down, answers a non-2xx status or unreadable JSON, or is late, means
//! what its `on_error` says: `refuse` (error 302 `hook_failed`, close 1011
//! at connect) or `allow`. With `hooks.secret`, every request carries
//! `X-Switchboard-Timestamp: <Unix seconds>` and
//! `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`,
//! so the backend can tell the hub's calls from anyone else's, and, by
//! refusing a timestamp older than its window (five minutes in the docs'
//! example), a request captured once cannot be sent again later.

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard_protocol::{Encoding, ErrorCode};
use tokio::sync::Semaphore;

use crate::binary::with_encoding;
use crate::config::{HooksConfig, OnError, WebhookConfig};
use crate::patterns::RoomPatterns;
use crate::policy::auth::Identity;
use crate::policy::hooks::{
    ConnectDecision, ConnectRequest, Decision, HookFuture, Hooks, MessageDecision, RpcReply,
};

/// The header that carries the request's signature.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
/// The header that carries when the request was signed (Unix seconds),
/// covered by the signature.
pub const TIMESTAMP_HEADER: &str = "x-switchboard-timestamp";

/// One configured webhook.
struct Endpoint {
    url: String,
    /// `None`: every room.
    rooms: Option<RoomPatterns<()>>,
    on_error: OnError,
    timeout: Duration,
    permits: Semaphore,
    /// For `connect`: the request headers passed on.
    headers: Vec<String>,
}

impl Endpoint {
    fn new(config: &WebhookConfig) -> Endpoint {
        let rooms = (!config.rooms.is_empty())
            .then(|| RoomPatterns::new(config.rooms.iter().map(|pattern| (pattern, ()))));
        Endpoint {
            url: config.url.clone(),
            rooms,
            on_error: config.on_error,
            timeout: Duration::from_millis(config.timeout_ms),
            permits: Semaphore::new(config.max_in_flight),
            headers: config.headers.clone(),
        }
    }

    fn covers(&self, room: &str) -> bool {
        self.rooms.as_ref().is_none_or(|rooms| rooms.first(room).is_some())
    }
}

/// Why a webhook gave no usable answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the backend did not answer within {0} ms")]
    Late(u128),
    #[error("the backend answered HTTP {0}")]
    Status(u16),
    #[error("the backend could not be reached: {0}")]
    Unreachable(String),
    #[error("the backend's answer is not a JSON object")]
    Unreadable,
}

/// What a backend answered, read.
enum Reply {
    /// Allow; the reply object, for the connect hook's `user` and `rooms`.
    Allow(serde_json::Map<String, Value>),
    Refuse {
        code: ErrorCode,
        message: String,
    },
    Data(Value),
}

/// The webhooks the configuration names.
pub(crate) struct Webhooks {
    client: reqwest::Client,
    secret: Option<Vec<u8>>,
    connect: Option<Endpoint>,
    join: Option<Endpoint>,
    publish: Option<Endpoint>,
    send: Option<Endpoint>,
    rpc: Option<Endpoint>,
    disconnect: Option<Endpoint>,
}

impl Webhooks {
    /// The webhooks of `config`, or `None` when it names none.
    pub(crate) fn new(config: &HooksConfig, client: reqwest::Client) -> Option<Webhooks> {
        if !config.has_webhooks() {
            return None;
        }
        let endpoint = |hook: &Option<WebhookConfig>| hook.as_ref().map(Endpoint::new);
        Some(Webhooks {
            client,
            secret: config.secret.as_ref().map(|s| s.as_bytes().to_vec()),
            connect: endpoint(&config.connect),
            join: endpoint(&config.join),
            publish: endpoint(&config.publish),
            send: endpoint(&config.send),
            rpc: endpoint(&config.rpc),
            disconnect: endpoint(&config.disconnect),
        })
    }

    /// POSTs `body` to `endpoint` and reads its reply.
    async fn call(&self, endpoint: &Endpoint, body: Value) -> Result<Reply, CallError> {
        let late = || CallError::Late(endpoint.timeout.as_millis());
        let request = async {
            let _permit = endpoint.permits.acquire().await.map_err(|_| late())?;
            let body = body.to_string();
            let mut request = self
                .client
                .post(&endpoint.url)
                .header("content-type", "application/json")
                .timeout(endpoint.timeout);
            if let Some(secret) = &self.secret {
                for (name, value) in signed_headers(secret, body.as_bytes()) {
                    request = request.header(name, value);
                }
            }
            let response = request
                .body(body)
                .send()
                .await
                .map_err(|err| CallError::Unreachable(err.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(CallError::Status(response.status().as_u16()));
            }
            let reply: Value = response.json().await.map_err(|_| CallError::Unreadable)?;
            read_reply(reply)
        };
        tokio::time::timeout(endpoint.timeout, request).await.map_err(|_| late())?
    }

    /// A decision from a backend's reply, or from `on_error` when it failed.
    async fn decide(&self, name: &str, endpoint: &Endpoint, body: Value) -> MessageDecision {
        match self.call(endpoint, body).await {
            Ok(Reply::Allow(_)) => MessageDecision::Allow,
            Ok(Reply::Data(data)) => MessageDecision::Replace(data),
            Ok(Reply::Refuse { code, message }) => MessageDecision::Refuse { code, message },
            Err(err) => {
                tracing::warn!(hook = name, url = %endpoint.url, %err, on_error = ?endpoint.on_error, "webhook failed");
                match endpoint.on_error {
                    OnError::Allow => MessageDecision::Allow,
                    OnError::Refuse => MessageDecision::Refuse {
                        code: ErrorCode::HOOK_FAILED,
                        message: format!("the {name} webhook failed: {err}"),
                    },
                }
            }
        }
    }
}

/// The headers that sign a request of `body` now: the timestamp and the
/// signature over both.
pub fn signed_headers(secret: &[u8], body: &[u8]) -> [(&'static str, String); 2] {
    let timestamp = (crate::wire::now_ms() / 1000).to_string();
    let signature = signature(secret, &timestamp, body);
    [(TIMESTAMP_HEADER, timestamp), (SIGNATURE_HEADER, signature)]
}

/// `sha256=<hex>` of the HMAC-SHA256, with `secret`, of `<timestamp>.<body>`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    hmac_hex(secret, &[timestamp.as_bytes(), b".", body])
}

/// `sha256=<hex>` of the HMAC-SHA256 of `parts`, one after the other.
fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    let mut text = String::with_capacity(7 + 64);
    text.push_str("sha256=");
    for byte in digest {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// Reads a backend's reply object.
fn read_reply(reply: Value) -> Result<Reply, CallError> {
    let Value::Object(mut reply) = reply else { return Err(CallError::Unreadable) };
    if let Some(refuse) = reply.remove("refuse") {
        let code = refuse["code"].as_u64().and_then(|c| u16::try_from(c).ok());
        let message = refuse["message"].as_str().unwrap_or("refused by the application");
        return Ok(Reply::Refuse {
            code: code.map_or(ErrorCode::REFUSED, ErrorCode),
            message: message.to_owned(),
        });
    }
    Ok(match reply.remove("data") {
        Some(data) => Reply::Data(data),
        None => Reply::Allow(reply),
    })
}

/// `body` with the connection's metadata under `meta`, when it has some.
fn with_meta(mut body: Value, who: &Identity) -> Value {
    if let (Some(meta), Value::Object(fields)) = (&who.meta, &mut body) {
        fields.insert("meta".to_owned(), (**meta).clone());
    }
    body
}

/// A message decision as a plain decision (join, connect: no data).
fn plain(decision: MessageDecision) -> Decision {
    match decision {
        MessageDecision::Allow | MessageDecision::Replace(_) => Decision::Allow,
        MessageDecision::Refuse { code, message } => Decision::Refuse { code, message },
    }
}

impl Hooks for Webhooks {
    fn connect<'a>(&'a self, request: &'a ConnectRequest<'a>) -> HookFuture<'a, ConnectDecision> {
        Box::pin(async move {
            let Some(endpoint) = &self.connect else { return ConnectDecision::allow() };
            let headers: serde_json::Map<String, Value> = endpoint
                .headers
                .iter()
                .filter_map(|name| {
                    let value = request.headers.get(name.as_str())?.to_str().ok()?;
                    Some((name.to_ascii_lowercase(), Value::from(value)))
                })
                .collect();
            let query: serde_json::Map<String, Value> = request
                .query
                .iter()
                .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
                .collect();
            let body = json!({
                "hook": "connect",
                "user": &*request.identity.user,
                "address": request.address.to_string(),
                "headers": headers,
                "query": query,
            });
            match self.call(endpoint, body).await {
                Ok(Reply::Allow(mut reply)) => ConnectDecision::Allow {
                    meta: reply.remove("meta").filter(|meta| !meta.is_null()),
                    user: reply.get("user").and_then(Value::as_str).map(str::to_owned),
                    rooms: reply
                        .get("rooms")
                        .and_then(Value::as_array)
                        .map(|rooms| {
                            rooms.iter().filter_map(Value::as_str).map(str::to_owned).collect()
                        })
                        .unwrap_or_default(),
                },
                Ok(Reply::Data(_)) => ConnectDecision::allow(),
                Ok(Reply::Refuse { message, .. }) => ConnectDecision::Refuse { message },
                Err(err) => {
                    tracing::warn!(url = %endpoint.url, %err, "connect webhook failed");
                    match endpoint.on_error {
                        OnError::Allow => ConnectDecision::allow(),
                        // Not a refusal: the backend said nothing, and the
                        // client may try again (1011, not 4502).
                        OnError::Refuse => ConnectDecision::Unavailable {
                            message: format!("the connect webhook failed: {err}"),
                        },
                    }
                }
            }
        })
    }

    fn join<'a>(&'a self, who: &'a Identity, room: &'a str) -> HookFuture<'a, Decision> {
        Box::pin(async move {
            let Some(endpoint) = self.join.as_ref().filter(|e| e.covers(room)) else {
                return Decision::Allow;
            };
            let body = with_meta(json!({"hook": "join", "user": &*who.user, "room": room}), who);
            plain(self.decide("join", endpoint, body).await)
        })
    }

    fn publish<'a>(
        &'a self,
        who: &'a Identity,
        room: &'a str,
        event: &'a str,
        data: &'a Value,
        encoding: Option<Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            let Some(endpoint) = self.publish.as_ref().filter(|e| e.covers(room)) else {
                return MessageDecision::Allow;
            };
            let body = with_meta(
                with_encoding(
                    json!({
                        "hook": "publish", "user": &*who.user, "room": room, "event": event,
                        "data": data,
                    }),
                    encoding,
                ),
                who,
            );
            self.decide("publish", endpoint, body).await
        })
    }

    fn send<'a>(
        &'a self,
        who: &'a Identity,
        to: &'a str,
        event: &'a str,
        data: &'a Value,
        encoding: Option<Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        Box::pin(async move {
            let Some(endpoint) = &self.send else { return MessageDecision::Allow };
            let body = with_meta(
                with_encoding(
                    json!({
                        "hook": "send", "user": &*who.user, "to": to, "event": event, "data": data,
                    }),
                    encoding,
                ),
                who,
            );
            self.decide("send", endpoint, body).await
        })
    }

    fn rpc<'a>(
        &'a self,
        who: &'a Identity,
        method: &'a str,
        data: &'a Value,
    ) -> HookFuture<'a, RpcReply> {
        Box::pin(async move {
            let Some(endpoint) = &self.rpc else { return RpcReply::no_handler(method) };
            let body = with_meta(
                json!({"hook": "rpc", "user": &*who.user, "method": method, "data": data}),
                who,
            );
            match self.decide("rpc", endpoint, body).await {
                MessageDecision::Replace(data) => RpcReply::Result(data),
                MessageDecision::Allow => RpcReply::Result(Value::Null),
                MessageDecision::Refuse { code, message } => RpcReply::Refuse { code, message },
            }
        })
    }

    fn disconnect<'a>(&'a self, who: &'a Identity, reason: &'a str) -> HookFuture<'a, ()> {
        Box::pin(async move {
            let Some(endpoint) = &self.disconnect else { return };
            let body =
                with_meta(json!({"hook": "disconnect", "user": &*who.user, "reason": reason}), who);
            if let Err(err) = self.call(endpoint, body).await {
                tracing::debug!(url = %endpoint.url, %err, "disconnect webhook failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231, test case 2.
        let test_case = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(hmac_hex(b"Jefe", &[b"what do ya ", b"want for nothing?"]), test_case);
        assert_eq!(signature(b"k", "1700000000", b"{}"), hmac_hex(b"k", &[b"1700000000.{}"]));
        // Another time, another signature: a captured request cannot be
        // sent again under a fresh timestamp.
        assert_ne!(signature(b"k", "1700000000", b"{}"), signature(b"k", "1700000301", b"{}"));
    }

    #[test]
    fn replies_read_as_allow_refuse_or_data() {
        assert!(matches!(read_reply(json!({})), Ok(Reply::Allow(_))));
        assert!(matches!(
            read_reply(json!({"refuse": {"code": 1403, "message": "no"}})),
            Ok(Reply::Refuse { code: ErrorCode(1403), message }) if message == "no"
        ));
        assert!(matches!(
            read_reply(json!({"refuse": {}})),
            Ok(Reply::Refuse { code: ErrorCode::REFUSED, .. })
        ));
        assert!(matches!(read_reply(json!({"data": [1]})), Ok(Reply::Data(d)) if d == json!([1])));
        assert!(matches!(read_reply(json!("allow")), Err(CallError::Unreadable)));
    }
}
