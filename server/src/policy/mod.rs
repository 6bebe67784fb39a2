//! Who may do what: who a connection is ([`identity`], [`auth`]) and from
//! where (`client_addr.rs`: the client's address behind trusted proxies),
//! whether it may connect at all (`admission.rs`: origins, address lists,
//! rates and connection limits), what it may do in which room
//! ([`permissions`]), tokens it would accept, made for development
//! ([`mint`]), and the application's own say ([`hooks`] in Rust,
//! [`webhooks`] over HTTP) and what it hears after the fact (`events.rs`).
//!
//! Policy decides; it carries nothing out. It depends on the
//! configuration and, for the connections a user holds, on the hub.

pub(crate) mod admission;
pub mod auth;
pub(crate) mod client_addr;
pub(crate) mod events;
pub mod hooks;
pub(crate) mod http_client;
pub mod identity;
pub(crate) mod jwks;
pub mod mint;
pub mod permissions;
pub mod webhooks;
