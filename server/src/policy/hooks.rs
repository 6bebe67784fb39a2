//! [`Hooks`]: the application's say in what happens, for Rust code that
//! embeds the hub. Each method has a default that allows, so an
//! application implements only the steps it cares about:
//!
//! | hook | runs | may |
//! |---|---|---|
//! | [`Hooks::connect`] | once the connection's identity is known (token, `user_id`, or `auth` frame), before `welcome`; sees the address, headers and query | refuse: close 4502 with the hook's message; or let it in as another user, joined to initial rooms, with metadata for the later hooks |
//! | [`Hooks::join`] | for a `join` frame, after the permission check | refuse: error 205 (or the hook's code) |
//! | [`Hooks::publish`] | for a `publish` frame, after the checks, before it is stored | refuse, or replace `data` |
//! | [`Hooks::send`] | for a `send` frame (client to client), likewise | refuse, or replace `data` |
//! | [`Hooks::rpc`] | for an `rpc` frame | answer with a result (the ack's `data`), or refuse; without an implementation: error 206 `no_handler` |
//! | [`Hooks::disconnect`] | after the connection left the hub | observe only |
//!
//! A hook runs in the connection's task, so a connection waits for its own
//! hooks and no other; each call is bounded by `hooks.timeout_ms` (default
//! 1000). A hook that panics or runs out of time refuses that one action
//! (error 302 `hook_failed`, or close 1011 at connect) and is logged; the
//! hub and every other connection carry on. Without hooks nothing is
//! called: a publish pays one branch. With hooks, each hooked frame pays one
//! boxed future and whatever the hook itself does.
//!
//! ```
//! use serde_json::{Value, json};
//! use switchboard_server::hooks::{Hooks, HookFuture, MessageDecision};
//! use switchboard_server::Identity;
//! use switchboard_server::Encoding;
//!
//! struct NoShouting;
//!
//! impl Hooks for NoShouting {
//!     fn publish<'a>(&'a self, _who: &'a Identity, _room: &'a str, _event: &'a str, data: &'a Value,
//!         encoding: Option<Encoding>) -> HookFuture<'a, MessageDecision> {
//!         Box::pin(async move {
//!             match data.as_str().filter(|_| encoding.is_none()) {
//!                 Some(text) if text.len() > 280 => MessageDecision::refuse("at most 280 characters"),
//!                 Some(text) => MessageDecision::Replace(json!(text.to_lowercase())),
//!                 None => MessageDecision::Allow,
//!             }
//!         })
//!     }
//! }
//! ```

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use axum::http::HeaderMap;
use futures::FutureExt;
use serde_json::Value;
use switchboard_protocol::{Encoding, ErrorCode};

use crate::policy::auth::Identity;

/// The future a hook returns.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A hook's answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Carry it out.
    Allow,
    /// Refuse it: the client gets an `error` frame with this code (205
    /// `refused` by default; 1000–1999 are the application's own) and message.
    Refuse {
        /// The error code.
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
}

impl Decision {
    /// A refusal with code 205 (`refused`).
    pub fn refuse(message: impl Into<String>) -> Decision {
        Decision::Refuse { code: ErrorCode::REFUSED, message: message.into() }
    }
}

/// A hook's answer to a message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageDecision {
    /// Carry it out as it is.
    Allow,
    /// Carry it out with this `data` instead.
    Replace(Value),
    /// Refuse it, as [`Decision::Refuse`].
    Refuse {
        /// The error code.
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
}

impl MessageDecision {
    /// A refusal with code 205 (`refused`).
    pub fn refuse(message: impl Into<String>) -> MessageDecision {
        MessageDecision::Refuse { code: ErrorCode::REFUSED, message: message.into() }
    }
}

/// A hook's answer to an `rpc`.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcReply {
    /// The result: the `data` of the client's ack.
    Result(Value),
    /// An error: the client's `error` frame.
    Refuse {
        /// The error code (205 `refused`, 206 `no_handler`, or the
        /// application's own, 1000–1999).
        code: ErrorCode,
        /// Why, for the client.
        message: String,
    },
}

impl RpcReply {
    /// A refusal with the application's own `code` (1000–1999).
    pub fn refuse_with(code: u16, message: impl Into<String>) -> RpcReply {
        RpcReply::Refuse { code: ErrorCode(code), message: message.into() }
    }

    /// The answer for a method nobody handles: error 206 `no_handler`.
    pub fn no_handler(method: &str) -> RpcReply {
        RpcReply::Refuse {
            code: ErrorCode::NO_HANDLER,
            message: format!("no handler for the rpc method `{method}`"),
        }
    }
}

/// The connect hook's answer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConnectDecision {
    /// Let it in. `user`, when set, replaces the identity's user (the
    /// application decides who the connection is); the connection joins
    /// `rooms` right after `welcome`, as if it had sent a `join` for each
    /// (permissions and the join hook apply, and its user is announced);
    /// `meta` is attached to the connection ([`Identity::meta`]) for every
    /// later hook to see.
    Allow {
        /// Who the connection is, instead of the identity's user.
        user: Option<String>,
        /// Rooms to join at once.
        rooms: Vec<String>,
        /// The connection's metadata.
        meta: Option<Value>,
    },
    /// Refuse it: close 4502 `refused` with this reason (403 for SSE).
    /// A client does not come back on its own after this.
    Refuse {
        /// Why, for the client.
        message: String,
    },
    /// The hook could not decide now (its backend is down, failing or
    /// late): close 1011 with this reason (503 `hook_failed` for SSE), which
    /// a client treats as passing and retries with its backoff.
    Unavailable {
        /// What failed, for the client and the logs.
        message: String,
    },
}

impl ConnectDecision {
    /// Let it in as it is.
    pub fn allow() -> ConnectDecision {
        ConnectDecision::Allow { user: None, rooms: Vec::new(), meta: None }
    }

    /// Refuse it.
    pub fn refuse(message: impl Into<String>) -> ConnectDecision {
        ConnectDecision::Refuse { message: message.into() }
    }
}

/// What the connect hook sees of a new connection.
#[derive(Debug, Clone)]
pub struct ConnectRequest<'a> {
    /// Who it is, as the token (or `user_id`, or the `auth` frame) says.
    pub identity: &'a Identity,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub address: std::net::IpAddr,
    /// The headers of the upgrade request (of the `GET /sse` request for a
    /// feed): cookies, `User-Agent`, the application's own.
    pub headers: &'a HeaderMap,
    /// The query string's parameters in their order, `token` left out (its
    /// claims are in `identity`): the hub's own (`user_id`, `room`, …) and
    /// any the application adds to the URL.
    pub query: &'a [(String, String)],
}

/// The query parameters a connect hook sees: all of `raw`'s but `token`.
pub(crate) fn hook_query(raw: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .filter(|(name, _)| name != "token")
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The application's part in the hub's steps. Every method allows by
/// default. See the [module docs](self) for when each runs.
pub trait Hooks: Send + Sync + 'static {
    /// A connection is about to start.
    fn connect<'a>(&'a self, request: &'a ConnectRequest<'a>) -> HookFuture<'a, ConnectDecision> {
        let _ = request;
        Box::pin(std::future::ready(ConnectDecision::allow()))
    }

    /// A connection asks to join `room`.
    fn join<'a>(&'a self, who: &'a Identity, room: &'a str) -> HookFuture<'a, Decision> {
        let _ = (who, room);
        Box::pin(std::future::ready(Decision::Allow))
    }

    /// A connection publishes `data` as `event` to `room`. With `encoding`
    /// (`Some(Encoding::Base64)`), the payload is bytes and `data` their
    /// base64 text; data that replaces it must be base64 text too, or the
    /// publish fails with 302 `hook_failed`.
    fn publish<'a>(
        &'a self,
        who: &'a Identity,
        room: &'a str,
        event: &'a str,
        data: &'a Value,
        encoding: Option<Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        let _ = (who, room, event, data, encoding);
        Box::pin(std::future::ready(MessageDecision::Allow))
    }

    /// A connection sends `data` as `event` to the user `to`; `encoding`
    /// as for [`Hooks::publish`].
    fn send<'a>(
        &'a self,
        who: &'a Identity,
        to: &'a str,
        event: &'a str,
        data: &'a Value,
        encoding: Option<Encoding>,
    ) -> HookFuture<'a, MessageDecision> {
        let _ = (who, to, event, data, encoding);
        Box::pin(std::future::ready(MessageDecision::Allow))
    }

    /// A connection calls the application's `method` with `data`.
    fn rpc<'a>(
        &'a self,
        who: &'a Identity,
        method: &'a str,
        data: &'a Value,
    ) -> HookFuture<'a, RpcReply> {
        let _ = (who, data);
        Box::pin(std::future::ready(RpcReply::no_handler(method)))
    }

    /// A connection ended; `reason` says how, as the log does.
    fn disconnect<'a>(&'a self, who: &'a Identity, reason: &'a str) -> HookFuture<'a, ()> {
        let _ = (who, reason);
        Box::pin(std::future::ready(()))
    }
}

/// Why a hook gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookFailure {
    /// It panicked.
    #[error("the {0} hook panicked")]
    Panicked(&'static str),
    /// It ran past `hooks.timeout_ms`.
    #[error("the {0} hook took too long")]
    TimedOut(&'static str),
    /// It answered that it could not decide (a webhook's backend failed).
    #[error("the {0} hook's backend did not answer")]
    Unavailable(&'static str),
}

/// Runs one hook call within `timeout`, catching a panic.
pub(crate) async fn call<T>(
    name: &'static str,
    timeout: Duration,
    hook: HookFuture<'_, T>,
) -> Result<T, HookFailure> {
    match tokio::time::timeout(timeout, AssertUnwindSafe(hook).catch_unwind()).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(_)) => {
            tracing::error!(hook = name, "a hook panicked; the action is refused");
            Err(HookFailure::Panicked(name))
        }
        Err(_) => {
            tracing::warn!(hook = name, ?timeout, "a hook took too long; the action is refused");
            Err(HookFailure::TimedOut(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connect_hook_sees_every_query_parameter_but_the_token() {
        let query = hook_query(Some("user_id=ann&token=secret.jwt&plan=gold%20tier&room=a"));
        let names: Vec<_> = query.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(names, ["user_id=ann", "plan=gold tier", "room=a"]);
        assert!(hook_query(None).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_panics_or_hangs_is_a_failure_not_a_crash() {
        let timeout = Duration::from_millis(100);
        let fine: HookFuture<'_, u8> = Box::pin(async { 7 });
        assert_eq!(call("publish", timeout, fine).await, Ok(7));
        let panics: HookFuture<'_, u8> = Box::pin(async { panic!("application bug") });
        assert_eq!(call("publish", timeout, panics).await, Err(HookFailure::Panicked("publish")));
        let hangs: HookFuture<'_, u8> = Box::pin(std::future::pending());
        assert_eq!(call("join", timeout, hangs).await, Err(HookFailure::TimedOut("join")));
    }
}
