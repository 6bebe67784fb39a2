//! `GET /api/openapi.json`: the HTTP API as an OpenAPI 3.1 document,
//! generated with `utoipa` from the handlers' own annotations and types, so
//! it cannot drift from what the handlers accept and answer. Served without
//! the key: it describes the API, it grants nothing. `./scripts/test.sh`
//! fuzzes a live hub with it (schemathesis).

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::rooms::{
    CreateRoom, Deleted, History, Members, MembershipRequest, Ordered, RoomPatch, Rooms,
};
use super::{
    BroadcastRequest, Delivered, DisconnectRequest, Disconnected, ErrorBody, ErrorDetail, Health,
    Online, RedisHealth, SendAnswer, SendRequest,
};
use crate::hub::stats::{ClusterStats, Rates, Stats};
use crate::hub::{ManagedFields, RoomDetail, RoomSummary};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard HTTP API",
        description = "The hub's admin API: health, figures, who is online, rooms (managed rooms included), \
                       sending and broadcasting as the server, server-side joins, disconnects. \
                       Every `/api/…` route and `/metrics` need `Authorization: Bearer <api.key>` when a key is configured. \
                       Errors answer `{\"error\":{\"code\",\"message\"}}`. The WebSocket protocol (`GET /ws`) and \
                       Server-Sent Events (`GET /sse`) are described in docs/PROTOCOL.md.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::health, super::stats, super::online, super::send, super::broadcast, super::disconnect,
        super::rooms::rooms, super::rooms::create_room, super::rooms::room,
        super::rooms::update_room, super::rooms::delete_room, super::rooms::members,
        super::rooms::history, super::rooms::join, super::rooms::leave, super::metrics::metrics,
        super::connections::list, super::connections::send, super::connections::disconnect,
    ),
    components(schemas(
        super::Name, Health, RedisHealth, Stats, Rates, ClusterStats, Online, SendRequest, SendAnswer,
        BroadcastRequest, Delivered, DisconnectRequest, Disconnected, Rooms, RoomSummary,
        RoomDetail, ManagedFields, CreateRoom, RoomPatch, Deleted, Members, History,
        MembershipRequest, Ordered, ErrorBody, ErrorDetail, switchboard_protocol::Message,
        super::connections::Connections, super::connections::SessionSend,
        super::connections::SessionDisconnect, super::connections::Reached,
        crate::hub::connections::ConnectionSummary, crate::hub::connections::Transport,
    )),
    modifiers(&BearerKey),
    tags(
        (name = "hub", description = "Health and figures"),
        (name = "users", description = "Who is online; disconnecting"),
        (name = "messages", description = "Sending and broadcasting as the server"),
        (name = "rooms", description = "Rooms, managed rooms, members, history, server-side joins"),
    )
)]
pub(crate) struct ApiDoc;

/// Declares the `api_key` bearer scheme the paths refer to.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("`api.key`, when one is configured"))
            .build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// `GET /api/openapi.json`.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
