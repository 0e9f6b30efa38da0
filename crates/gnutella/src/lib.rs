//! servent-gnutella: a Gnutella 0.4 and 0.6 servent — the descriptors byte for byte, flooding
//! with loop detection, reverse-path routing of replies, Push for firewalled servents and the
//! HTTP transfer that follows a hit; and (with [`Role`](crate::core::Role)) Gnutella 0.6 leaves and
//! ultrapeers: the three-step handshake with deflate, the Query Routing Protocol on live
//! links, pong caching, HUGE `urn:sha1:` and supernode election.
//!
//! # Model
//! The rooms: [`wire`] (descriptors, the 0.6 handshake's header blocks, QRP messages, the
//! transfer's HTTP heads), [`core`](mod@crate::core) (the sans-IO [`Servent`] and its
//! sub-machines), `driver` (feature `runtime`: tokio, sockets, the shared folder on disk,
//! the control API), [`scenarios`](mod@crate::scenarios) (the simulator's `gnutella-flood` and `gnutella-hybrid`)
//! and [`harness`] (an in-memory network on virtual time).
//!
//! [`Servent`] is a sans-IO core ([`servent_core::Core`]): it owns no socket, clock or
//! thread. It speaks the overlay (handshake, Ping/Pong/Query/QueryHit/Push, and in 0.6
//! roles ROUTE_TABLE_UPDATE, Bye, vendor messages) and decides what an inbound connection is
//! from its first bytes: `GNUTELLA CONNECT/` joins the overlay, `GET ` and `GIV ` are file transfers, which it hands to the driver with
//! [`Event::Handoff`]. The transfer protocol itself is the pure code in [`wire::http`]; the
//! tokio driver (feature `runtime`) reads and writes the files.
//!
//! # Run loop
//! ```
//! use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
//! use servent_gnutella::{Command, Config, Event, Guid, Servent};
//!
//! let cfg = Config::new(Guid([1; 16]), "127.0.0.1:6346".parse().unwrap());
//! let mut node = Servent::new(cfg, Rng::new(7));
//! let now = Instant::ZERO;
//! node.handle_input(now, Input::Command(Command::Connect { id: 1, addr: "127.0.0.2:6346".parse().unwrap() }));
//! // 1. the network first ...
//! while let Some(t) = node.poll_transmit() {
//!     assert!(matches!(t, Transmit::Connect { .. }));
//! }
//! // 2. ... then the user ...
//! while let Some(e) = node.poll_event() { let _: Event = e; }
//! // 3. ... then the timer.
//! let _wake_at: Option<Instant> = node.poll_timeout();
//! ```
//! `now` never goes backwards; randomness (descriptor ids) comes from the caller's seeded
//! [`servent_core::Rng`]. Every queue in the core is bounded.

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;

// The paths the CLI, the fuzz targets, the benches and the tests have always used.
pub use crate::core as servent;
pub use crate::core::{handshake as handshake06, library, qrp, routing};
#[cfg(feature = "runtime")]
pub use driver::{self as node, control};
pub use scenarios::{flood, hybrid};
pub use wire::http;

/// The simulation scenarios of this crate, for `servent sim run NAME`.
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    vec![
        Box::new(scenarios::flood::FloodScenario),
        Box::new(scenarios::hybrid::HybridScenario),
    ]
}

pub use crate::core::library::{Library, SharedFile};
pub use crate::core::{Command, Config, DownReason, Event, HandoffKind, Hit, Servent, Stats};
pub use wire::{Guid, Kind, Message};
