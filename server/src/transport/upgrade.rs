//! The WebSocket handshake (RFC 6455 §4.2) done by the hub itself:
//! [`Handshake`] checks the request, [`Handshake::accept`] answers `101`, and
//! [`Pending::socket`] is the socket once hyper hands the connection over.
//!
//! The hub does this rather than use axum's `WebSocketUpgrade` so that it
//! chooses what sits between the TCP stream and tungstenite: a
//! [`PooledRead`], which keeps no read buffer per connection while the
//! connection is idle. It also keeps the connection's task to exactly the
//! session's own future.
//!
//! It also negotiates permessage-deflate ([`crate::deflate::offer`]): the
//! answer names the extension when the hub compresses and the client
//! offered it, and the socket then reads through [`Inflating`].
//!
//! Only the HTTP/1.1 upgrade is served (the listener does not enable HTTP/2's
//! extended CONNECT). A request that is not a valid upgrade is refused with
//! `426 not_websocket` and a message naming what is wrong.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

use super::pooled_read::PooledRead;
use crate::api::ApiError;
use crate::deflate::Compressor;
use crate::deflate::inflating::Inflating;
use crate::deflate::offer::{self, Agreement};

/// An upgraded connection as the session sees it.
pub(crate) type WebSocket = WebSocketStream<Inflating<PooledRead<TokioIo<Upgraded>>>>;

/// A request that asked for a WebSocket and may be upgraded.
pub(crate) struct Handshake {
    accept_key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The client's permessage-deflate offer the hub would accept.
    deflate: Option<Agreement>,
}

impl<S: Send + Sync> FromRequestParts<S> for Handshake {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |why: &str| Err(ApiError::NotWebSocket(why.to_owned()));
        if parts.version != Version::HTTP_11 {
            return refuse("WebSocket upgrades need HTTP/1.1");
        }
        if parts.method != Method::GET {
            return refuse("a WebSocket upgrade must be a GET request");
        }
        if !has_token(&parts.headers, header::CONNECTION, "upgrade") {
            return refuse("`Connection` must include `upgrade`");
        }
        if !has_token(&parts.headers, header::UPGRADE, "websocket") {
            return refuse("`Upgrade` must be `websocket`");
        }
        if !has_token(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return refuse("`Sec-WebSocket-Version` must be 13");
        }
        let Some(key) = parts.headers.get(header::SEC_WEBSOCKET_KEY) else {
            return refuse("`Sec-WebSocket-Key` is missing");
        };
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        let Ok(accept_key) = HeaderValue::from_str(&accept) else {
            return refuse("`Sec-WebSocket-Key` is not valid");
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return refuse("this connection cannot be upgraded");
        };
        let deflate = offer::negotiate(parts.headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS));
        Ok(Handshake { accept_key, on_upgrade, deflate })
    }
}

impl Handshake {
    /// The `101 Switching Protocols` answer, and the socket it will bring once
    /// hyper has written it and hands the connection over; `compression`:
    /// whether the hub accepts permessage-deflate.
    pub(crate) fn accept(self, compression: bool) -> (Response, Pending) {
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, self.accept_key);
        let deflate = self.deflate.filter(|_| compression);
        if let Some(agreement) = &deflate {
            headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, agreement.header());
        }
        (response, Pending { on_upgrade: self.on_upgrade, deflate })
    }
}

/// An accepted upgrade whose socket hyper has not handed over yet.
pub(crate) struct Pending {
    on_upgrade: OnUpgrade,
    deflate: Option<Agreement>,
}

impl Pending {
    /// Whether the client and the hub agreed on permessage-deflate.
    pub(crate) fn negotiated(&self) -> bool {
        self.deflate.is_some()
    }

    /// Whether the hub may compress what it sends on this connection: the
    /// client accepted permessage-deflate and allows a full window.
    pub(crate) fn compresses(&self) -> bool {
        self.deflate.as_ref().is_some_and(Agreement::compresses)
    }

    /// Waits for the socket and wraps it; `None` if the client went away
    /// before the upgrade completed. `compressor` counts what is inflated.
    pub(crate) async fn socket(
        self,
        config: WebSocketConfig,
        compressor: Option<Arc<Compressor>>,
    ) -> Option<Box<WebSocket>> {
        let upgraded = self.on_upgrade.await.ok()?;
        let io = PooledRead::new(TokioIo::new(upgraded));
        // Compressed messages inflate to at most the largest message.
        let limit = self.deflate.map(|_| config.max_message_size.unwrap_or(usize::MAX));
        let mut io = Inflating::new(io, limit);
        if let (Some(_), Some(compressor)) = (limit, compressor) {
            io = io.counting(compressor);
        }
        Some(Box::new(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await))
    }
}

/// Whether a comma-separated header holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|value| value.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn upgrade_request() -> axum::http::request::Builder {
        Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    async fn check(request: Request<()>) -> Result<Handshake, String> {
        let (mut parts, ()) = request.into_parts();
        Handshake::from_request_parts(&mut parts, &()).await.map_err(|err| {
            assert_eq!(err.code(), "not_websocket");
            err.to_string()
        })
    }

    #[tokio::test]
    async fn a_valid_upgrade_is_answered_with_the_rfc_accept_key() {
        let mut request = upgrade_request().body(()).unwrap();
        // hyper puts this in every request of an upgradable connection.
        request.extensions_mut().insert(hyper::upgrade::on(Request::new(())));
        let (response, _pending) = check(request).await.unwrap().accept(true);
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        // The example key and answer of RFC 6455 §1.3.
        assert_eq!(response.headers()["sec-websocket-accept"], "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(response.headers()["upgrade"], "websocket");
    }

    #[tokio::test]
    async fn a_deflate_offer_is_answered_only_when_the_hub_compresses() {
        for (offer, compression, answered, compresses) in [
            (Some("permessage-deflate; client_max_window_bits"), true, true, true),
            (Some("permessage-deflate; client_max_window_bits"), false, false, false),
            (Some("permessage-deflate; server_max_window_bits=10"), true, true, false),
            (Some("permessage-deflate; bogus"), true, false, false),
            (None, true, false, false),
        ] {
            let mut request = upgrade_request();
            if let Some(offer) = offer {
                request = request.header("sec-websocket-extensions", offer);
            }
            let mut request = request.body(()).unwrap();
            request.extensions_mut().insert(hyper::upgrade::on(Request::new(())));
            let (response, pending) = check(request).await.unwrap().accept(compression);
            let header = response.headers().get("sec-websocket-extensions");
            assert_eq!(header.is_some(), answered, "{offer:?}, compression {compression}");
            assert_eq!(pending.negotiated(), answered);
            assert_eq!(pending.compresses(), compresses);
        }
    }

    #[tokio::test]
    async fn each_missing_piece_of_the_handshake_is_named() {
        let cases = [
            (upgrade_request().method("POST"), "GET"),
            (upgrade_request().header("connection", "close"), "Connection"),
            (upgrade_request().header("upgrade", "h2c"), "Upgrade"),
            (upgrade_request().header("sec-websocket-version", "8"), "Version"),
        ];
        for (request, named) in cases {
            // The builder appends a header set twice: keep only the last value.
            let request = request.body(()).unwrap();
            let mut bad = Request::builder().method(request.method().clone()).uri("/ws");
            for name in ["connection", "upgrade", "sec-websocket-version", "sec-websocket-key"] {
                if let Some(value) = request.headers().get_all(name).iter().next_back() {
                    bad = bad.header(name, value);
                }
            }
            let why = check(bad.body(()).unwrap()).await.err().unwrap();
            assert!(why.contains(named), "{why:?} should name {named}");
        }
        let no_key = Request::get("/ws")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13");
        let why = check(no_key.body(()).unwrap()).await.err().unwrap();
        assert!(why.contains("Sec-WebSocket-Key"), "{why}");
        let not_upgradable = upgrade_request().body(()).unwrap();
        let why = check(not_upgradable).await.err().unwrap();
        assert!(why.contains("cannot be upgraded"), "{why}");
    }
}
