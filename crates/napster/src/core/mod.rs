//! The sans-IO state machines: the index server ([`server`]) with its inverted index
//! ([`index`]), and the client's server session ([`client`]). They own no socket, clock,
//! disk or thread; slow work (password hashing, durable writes) leaves the server as a
//! [`server::Job`] the caller completes.

pub mod client;
pub mod index;
pub mod server;
