//! Who may do what: who a connection is ([`identity`], [`auth`]), whether
//! it may connect at all (`admission.rs`: origins, address lists, rates and
//! connection limits), the room-name rules ([`patterns`]) that history
//! and permissions are configured with, and the application's own say
//! ([`hooks`] in Rust, [`webhooks`] over HTTP).

pub(crate) mod admission;
pub mod auth;
pub mod hooks;
pub mod identity;
pub mod patterns;
pub mod webhooks;
