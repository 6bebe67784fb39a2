//! Who may do what: who a connection is ([`identity`], [`auth`]), whether
//! it may connect at all (`admission.rs`: origins, address lists, rates and
//! connection limits), and the room-name rules ([`patterns`]) that history
//! and permissions are configured with.

pub(crate) mod admission;
pub mod auth;
pub mod identity;
pub mod patterns;
