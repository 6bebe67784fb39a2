//! `GET /metrics`: this node's figures for Prometheus, in the OpenMetrics
//! text format (which Prometheus scrapes as it does its own), encoded with
//! `prometheus-client`.
//!
//! Nothing is kept for it between scrapes: each scrape reads the hub's
//! counters (the atomics and small maps the hub already keeps) into a fresh
//! registry, so the message path pays nothing for metrics. Names follow
//! Prometheus conventions: a `switchboard_` prefix, `_total` on counters,
//! base units.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::AppState;

/// The media type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One label set: name and value.
type Labels = Vec<(&'static str, String)>;

/// `GET /metrics` (behind the admin key when one is set).
#[utoipa::path(get, path = "/metrics", tag = "hub", security(("api_key" = [])),
    responses(
        (status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
        (status = 401, description = "The API key is missing or wrong", body = super::ErrorBody),
    ))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let text = render(&state);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// The exposition of this node's figures.
pub(crate) fn render(state: &AppState) -> String {
    // The same snapshot `/api/stats` reports, so the two never disagree.
    let stats = state.stats();
    let counters = &state.hub().counters;
    let mut registry = Registry::with_prefix("switchboard");
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let metric = Gauge::<i64>::default();
        metric.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, metric);
    };
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let metric = Counter::<u64>::default();
        metric.inc_by(value);
        registry.register(name, help, metric);
    };
    gauge(&mut registry, "connections", "Open WebSocket connections", stats.connections);
    gauge(&mut registry, "users", "Distinct users connected", stats.users);
    gauge(&mut registry, "rooms", "Rooms with at least one member", stats.rooms);
    if let Some(streams) = stats.streams {
        gauge(&mut registry, "history_streams", "Streams the history store holds", streams);
    }
    counter(
        &mut registry,
        "connections_accepted",
        "WebSocket connections accepted",
        stats.connections_total,
    );
    counter(
        &mut registry,
        "messages",
        "Messages accepted (room publishes, private sends, API sends and broadcasts)",
        stats.messages_total,
    );
    counter(
        &mut registry,
        "deliveries",
        "Frames queued to connections, one per recipient",
        stats.deliveries_total,
    );
    counter(
        &mut registry,
        "slow_consumers",
        "Connections closed because their outbound queue overflowed",
        stats.slow_consumers_total,
    );
    counter(
        &mut registry,
        "rate_limited_frames",
        "Client frames refused by the per-connection rate limit",
        counters.rate_limited_total(),
    );
    let frames_out = Family::<Labels, Counter>::default();
    let bytes_out = Family::<Labels, Counter>::default();
    for (kind, frames, bytes) in counters.out_by_kind() {
        frames_out.get_or_create(&vec![("kind", kind.to_owned())]).inc_by(frames);
        bytes_out.get_or_create(&vec![("kind", kind.to_owned())]).inc_by(bytes);
    }
    registry.register(
        "frames_out",
        "Frames queued to connections, by kind (message, presence, occupancy)",
        frames_out,
    );
    registry.register_with_unit(
        "sent",
        "Bytes of the frames queued to connections, by kind",
        Unit::Bytes,
        bytes_out,
    );
    if let Some(compressor) = state.compressor() {
        let totals = compressor.totals();
        counter(
            &mut registry,
            "deflate_connections",
            "WebSocket connections that negotiated permessage-deflate",
            totals.connections,
        );
        counter(
            &mut registry,
            "deflate_compressed_frames",
            "Frames compressed, smaller or not (a room's message once, whatever its recipients)",
            totals.compressed,
        );
        counter(
            &mut registry,
            "deflate_inflated_messages",
            "Compressed client messages inflated",
            totals.inflated,
        );
        let payload = Family::<Labels, Counter>::default();
        payload.get_or_create(&vec![("stage", "before".to_owned())]).inc_by(totals.before);
        payload.get_or_create(&vec![("stage", "after".to_owned())]).inc_by(totals.after);
        registry.register_with_unit(
            "deflate_payload",
            "Payload bytes of the messages written to connections that negotiated \
             permessage-deflate, before and after compression",
            Unit::Bytes,
            payload,
        );
    }
    let frames_in = Family::<Labels, Counter>::default();
    for (kind, n) in counters.in_by_type() {
        frames_in.get_or_create(&vec![("type", kind.to_owned())]).inc_by(n);
    }
    registry.register(
        "frames_in",
        "Client frames read, by type (invalid: could not be decoded)",
        frames_in,
    );
    registry.register_with_unit(
        "request_duration",
        "From reading a client request to writing its answer, by request type",
        Unit::Seconds,
        counters.latency.snapshot("type", &crate::hub::latency::KINDS),
    );
    registry.register_with_unit(
        "store_duration",
        "History store operations: append (store and, in multi-node mode, publish) and read",
        Unit::Seconds,
        state.engine().latency.snapshot("op", &crate::hub::latency::STORE_OPS),
    );
    let refused = Family::<Labels, Counter>::default();
    for (code, n) in counters.refusals() {
        refused.get_or_create(&vec![("code", code.to_owned())]).inc_by(n);
    }
    registry.register(
        "connections_refused",
        "WebSocket upgrades refused, by the error code of the answer",
        refused,
    );
    let ended = Family::<Labels, Counter>::default();
    for (how, n) in counters.endings() {
        ended.get_or_create(&vec![("how", how)]).inc_by(n);
    }
    registry.register(
        "disconnects",
        "Sessions ended: close_<code> when the hub closed them, else client_closed, dropped or network_error",
        ended,
    );
    state.engine().node().metrics(&mut registry);
    if let Some(events) = state.events() {
        use std::sync::atomic::Ordering::Relaxed;
        gauge(
            &mut registry,
            "events_queued",
            "Events after the fact waiting for the application",
            events.queued() as u64,
        );
        counter(
            &mut registry,
            "events_delivered",
            "Events after the fact the application accepted",
            events.delivered.load(Relaxed),
        );
        counter(
            &mut registry,
            "events_dropped",
            "Events after the fact dropped from a full queue",
            events.dropped.load(Relaxed),
        );
    }
    let uptime = Gauge::<i64>::default();
    uptime.set(i64::try_from(stats.uptime_ms / 1000).unwrap_or(i64::MAX));
    registry.register_with_unit("uptime", "Time since the hub started", Unit::Seconds, uptime);
    let mut text = String::new();
    if let Err(err) = encode(&mut text, &registry) {
        tracing::error!(%err, "metrics not encoded");
    }
    text
}
