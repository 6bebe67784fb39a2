//! `GET /ws`: everything that happens before a [`Session`] exists.
//!
//! The handler resolves the identity (a token, or `user_id` in insecure
//! mode) and passes the admission gates ([`crate::policy::admission`]), and only then
//! accepts the upgrade, so a refused client costs one HTTP answer and no
//! WebSocket state: 400/401 for identity, 403 for origin or address, 429 for
//! per-user and per-address limits, 503 when the hub is full or stopping.
//! A connection that brings no token is upgraded and must send an `auth`
//! frame within `auth.auth_timeout_ms`, or is closed with 4500.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use futures::{FutureExt, SinkExt, StreamExt};
use switchboard_protocol::{ClientFrame, CloseCode, Position, validate_name};
use tungstenite::Message as WsMessage;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};

use crate::AppState;
use crate::api::ApiError;
use crate::policy::admission::Ticket;
use crate::policy::auth::{AuthError, Identity};
use crate::policy::client_addr::client_ip;
use crate::policy::hooks::{ConnectDecision, ConnectRequest, hook_query};
use crate::policy::identity::{self, ConnectQuery, Resolved};
use crate::session::{Session, Start, truncate_reason};
use crate::transport::upgrade::{Handshake, Pending, WebSocket};

/// The peer's address, when the server was started with connect info
/// ([`crate::serve`] is; an embedding app may not be, and then per-address
/// limits do not apply).
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)))
    }
}

/// Upgrades `GET /ws?…` to a WebSocket session.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Peer(peer): Peer,
    RawQuery(raw_query): RawQuery,
    query: Result<Query<ConnectQuery>, QueryRejection>,
    headers: HeaderMap,
    handshake: Result<Handshake, ApiError>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return refused(&state, ApiError::BadRequest(rejection.body_text())),
    };
    let (batch, binary) = match (query.batch(), query.binary()) {
        (Ok(batch), Ok(binary)) => (batch, binary),
        (Err(why), _) | (_, Err(why)) => return refused(&state, ApiError::BadRequest(why)),
    };
    let resolved = match identity::resolve(&query, &headers, state.auth()).await {
        Ok(resolved) => resolved,
        Err(err) => return refused(&state, ApiError::Auth(err)),
    };
    if let Some(room) = &query.room {
        if let Err(err) = validate_name(room) {
            return refused(&state, ApiError::InvalidName { field: "room", reason: err });
        }
    }
    let handshake = match handshake {
        Ok(handshake) => handshake,
        Err(err) => return refused(&state, err),
    };
    let user = match &resolved {
        Resolved::Known(identity) => Some(identity.user.clone()),
        Resolved::AwaitAuthFrame => None,
    };
    let ticket = match state.admit(peer, &headers, user.as_deref()) {
        Ok(ticket) => ticket,
        Err(err) => return refused(&state, err.into()),
    };
    let limits = &state.config().limits;
    let tasks = state.tasks().clone();
    let inbox_since = match (query.inbox_epoch, query.inbox_offset) {
        (Some(epoch), Some(offset)) => Some(Position { epoch, offset }),
        _ => None,
    };
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|agent| agent.to_str().ok())
        .map(crate::hub::connections::intern_agent);
    let start = Start {
        rooms: query.room.into_iter().collect(),
        inbox_since,
        address: None,
        user_agent,
        batch,
        binary,
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer_bytes)
        .write_buffer_size(limits.write_buffer_bytes)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_message_bytes));
    let (response, pending) = handshake.accept(state.compressor().is_some());
    // A task keeps its future's state for the connection's whole life, and a
    // value moved out of an async fn's arguments still takes its space
    // there: so what the connection starts with is one box, and the socket
    // is boxed too, each held once.
    let address = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |peer| {
        client_ip(peer.ip(), &headers, &state.config().limits.trusted_proxies)
    });
    let mut start = start;
    start.address = Some(address);
    // What the connect hook reads, kept only when there is one.
    let request = state
        .hooks()
        .map(|_| Box::new(HookRequest { headers, query: hook_query(raw_query.as_deref()) }));
    let admitted = Box::new(Admitted { state, resolved, start, config, ticket, address, request });
    tasks.spawn(connection(pending, admitted));
    response
}

/// A refused upgrade: counted by its code (the `/metrics` family
/// `switchboard_connections_refused_total`), then answered.
fn refused(state: &AppState, err: ApiError) -> Response {
    state.hub().counters.refused(err.code());
    err.into_response()
}

/// An upgrade that passed the gates, waiting for its socket.
struct Admitted {
    state: AppState,
    resolved: Resolved,
    start: Start,
    config: WebSocketConfig,
    /// The admission slot, given back when the connection ends.
    ticket: Ticket,
    /// The client's address, for the connect hook.
    address: std::net::IpAddr,
    /// The request's headers and query, for the connect hook.
    request: Option<Box<HookRequest>>,
}

/// What the connect hook sees of the upgrade request besides the address.
struct HookRequest {
    headers: HeaderMap,
    query: Vec<(String, String)>,
}

/// The life of an upgraded connection: authenticates it if the URL did not,
/// then runs its session.
///
/// Not an `async fn`: a task keeps its future's largest state for its whole
/// life, so the setup (the upgrade, the `auth` frame) runs boxed and is
/// freed before the session starts, and the session is held once, inside
/// its own future.
fn connection(pending: Pending, admitted: Box<Admitted>) -> impl Future<Output = ()> + Send {
    Box::pin(establish(pending, admitted)).then(|established| match established {
        Some((session, start)) => Either::Left(session.run(start)),
        None => Either::Right(std::future::ready(())),
    })
}

/// The socket and an identity for it, or `None` when the connection ended
/// (or was refused) before its session could start.
async fn establish(
    pending: Pending,
    admitted: Box<Admitted>,
) -> Option<(Session<Box<WebSocket>>, Start)> {
    let Admitted { state, resolved, mut start, config, ticket, address, request } = *admitted;
    let (negotiated, compresses) = (pending.negotiated(), pending.compresses());
    let mut socket = pending.socket(config, state.compressor().cloned()).await?;
    if let (true, Some(compressor)) = (negotiated, state.compressor()) {
        compressor.negotiated();
    }
    let mut identity = match resolved {
        // The admission gate already counted this user's connections.
        Resolved::Known(identity) => identity,
        Resolved::AwaitAuthFrame => {
            let identity = match authenticate(&mut socket, &state).await {
                Ok(identity) => identity,
                Err((code, reason)) => {
                    refuse(*socket, code, &reason).await;
                    return None;
                }
            };
            // Only now is the user known: the per-user limit applies here.
            if state.hub().connections_of(&identity.user)
                >= state.config().limits.max_connections_per_user
            {
                let reason = "too many connections for this user";
                refuse(*socket, CloseCode::CONNECTION_LIMIT, reason).await;
                return None;
            }
            identity
        }
    };
    if let (Some((hooks, timeout)), Some(seen)) = (state.hooks(), request) {
        let request = ConnectRequest {
            identity: &identity,
            address,
            headers: &seen.headers,
            query: &seen.query,
        };
        let decision =
            crate::policy::hooks::call("connect", timeout, hooks.connect(&request)).await;
        match decision {
            Ok(ConnectDecision::Allow { user, rooms, meta }) => {
                if let Some(user) = user {
                    if let Err(err) = validate_name(&user) {
                        let reason = format!("the connect hook named an invalid user: {err}");
                        refuse(*socket, CloseCode::INTERNAL_ERROR, &reason).await;
                        return None;
                    }
                    identity.user = user.into();
                }
                identity.meta = meta.map(Arc::new);
                start.rooms.extend(rooms);
            }
            Ok(ConnectDecision::Refuse { message }) => {
                refuse(*socket, CloseCode::REFUSED, &message).await;
                return None;
            }
            Ok(ConnectDecision::Unavailable { message }) => {
                refuse(*socket, CloseCode::INTERNAL_ERROR, &message).await;
                return None;
            }
            Err(failure) => {
                refuse(*socket, CloseCode::INTERNAL_ERROR, &failure.to_string()).await;
                return None;
            }
        }
    }
    let compressor = state.compressor().filter(|_| compresses).cloned();
    let session = Session::new(socket, state, identity).holding(ticket);
    let session = match compressor {
        Some(compressor) => session.deflating(compressor),
        None => session,
    };
    let session = if start.binary { session.speaking_binary() } else { session };
    Some((if start.batch { session.batched() } else { session }, start))
}

/// The first message of a connection that must authenticate.
enum First {
    Text(tungstenite::Utf8Bytes),
    Binary,
    /// The connection ended, or failed, first.
    Closed,
}

/// Waits for the first frame, which must be an `auth` frame with a valid token.
async fn authenticate(
    socket: &mut WebSocket,
    state: &AppState,
) -> Result<Identity, (CloseCode, String)> {
    let deadline = Duration::from_millis(state.config().auth.auth_timeout_ms);
    let first = tokio::time::timeout(deadline, async {
        loop {
            match socket.next().await {
                Some(Ok(WsMessage::Text(text))) => return First::Text(text),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(WsMessage::Binary(_))) => return First::Binary,
                _ => return First::Closed,
            }
        }
    })
    .await;
    let unauthorized = |why: String| (CloseCode::UNAUTHORIZED, why);
    let text = match first {
        Err(_) => return Err(unauthorized(AuthError::MissingToken.to_string())),
        Ok(First::Closed) => return Err(unauthorized("closed before authenticating".to_owned())),
        Ok(First::Binary) => {
            let why = "the first frame must be an `auth` frame, as text: not a binary message";
            return Err(unauthorized(why.to_owned()));
        }
        Ok(First::Text(text)) => text,
    };
    match ClientFrame::decode(&text) {
        Ok(ClientFrame::Auth { token, .. }) => {
            state.auth().authenticate(&token).await.map_err(|err| match err {
                // The hub's failure, not the client's: a code it retries.
                AuthError::KeysUnavailable => (CloseCode::INTERNAL_ERROR, err.to_string()),
                err => unauthorized(err.to_string()),
            })
        }
        _ => Err(unauthorized("the first frame must be an `auth` frame with a token".to_owned())),
    }
}

/// Closes a connection that was upgraded but may not go on.
async fn refuse(mut socket: WebSocket, code: CloseCode, reason: &str) {
    let frame = CloseFrame { code: code.0.into(), reason: truncate_reason(reason).into() };
    let _ =
        tokio::time::timeout(Duration::from_secs(2), socket.send(WsMessage::Close(Some(frame))))
            .await;
}
