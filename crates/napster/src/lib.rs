//! servent-napster: Napster's centralized peer-to-peer model on the OpenNap protocol.
//!
//! Clients log in to one index server, upload the list of files they share, search the
//! server's index, get a provider list, and fetch files directly from each other.
//!
//! - [`wire`]: the client–server messages, byte for byte (4-byte little-endian header,
//!   ASCII payloads with quoted file names), as two typed enums; [`wire::transfer`]: the
//!   client-to-client data-port exchange (`GET` / `SEND`, resume by offset);
//! - [`core`](mod@crate::core): the sans-IO state machines — the index server
//!   ([`server`]) with its inverted index ([`index`]), and the client's session
//!   ([`client`]);
//! - [`work`]: the slow work the server hands out as jobs (argon2, durable writes);
//! - `driver` (feature `runtime`, also reachable as `net`): tokio, sockets, the SQLite
//!   store, blocking threads for the jobs, the data-port transfers;
//! - [`harness`]: one server and many clients in memory, on virtual time;
//! - [`mod@scenarios`]: the `napster` scenario for the simulator.
//!
//! # The run loop
//! The server core owns no socket, clock or database; a driver runs it:
//! ```
//! use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
//! use servent_napster::server::{Server, ServerCommand, ServerConfig};
//! use servent_napster::wire::{ClientMsg, LinkType, ServerMsg};
//!
//! let mut server = Server::new(ServerConfig::for_tests(), Rng::new(7));
//! let conn = ConnId::inbound(1);
//! let now = Instant::ZERO;
//! server.handle_input(now, Input::Connected { conn, peer: "127.0.0.1:5000".parse().unwrap() });
//! let mut bytes = Vec::new();
//! ClientMsg::Login {
//!     nick: "lefty".into(), password: "pw".into(), port: 6699,
//!     client: "nap v0.8".into(), link: LinkType::CABLE,
//! }.encode(&mut bytes).unwrap();
//! server.handle_input(now, Input::Received { conn, data: &bytes });
//! // The password hash and the account's durable write leave the core as jobs; a driver
//! // runs them on blocking threads and feeds each result back. Here: inline.
//! while let Some((id, job)) = server.poll_job() {
//!     let result = job.run(&mut servent_napster::server::Volatile);
//!     server.handle_input(now, Input::Command(ServerCommand::Complete { id, result }));
//! }
//! // 1. the network first
//! let Some(Transmit::Send { data, .. }) = server.poll_transmit() else { panic!() };
//! assert_eq!(&data[2..4], &3u16.to_le_bytes()); // login ack
//! // 2. then the events (an account to store, a login), 3. then the timer
//! while let Some(event) = server.poll_event() { let _ = event; }
//! let _wake_at = server.poll_timeout();
//! ```
//! With the `runtime` feature (default), `driver` runs the server over tokio with its
//! accounts and bans in SQLite (jobs on blocking threads: `work` does them), and offers the client operations the `servent napster`
//! subcommands use.

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;
pub mod work;

// The paths the CLI, the fuzz targets and the benches have always used.
pub use crate::core::{client, index, server};
#[cfg(feature = "runtime")]
pub use driver::{self as net, store};
pub use scenarios as sim;
pub use wire::transfer;

/// The simulator scenarios of this crate (`servent sim run napster`).
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    vec![Box::new(scenarios::NapsterScenario)]
}
