//! servent-gnutella: a Gnutella 0.4 and 0.6 servent — the descriptors byte for byte, flooding
//! with loop detection, reverse-path routing of replies, Push for firewalled servents and the
//! HTTP transfer that follows a hit; and (with [`servent::Role`]) Gnutella 0.6 leaves and
//! ultrapeers: the three-step handshake with deflate, the Query Routing Protocol on live
//! links, pong caching, HUGE `urn:sha1:` and supernode election.
//!
//! # Model
//! [`Servent`] is a sans-IO core ([`servent_core::Core`]): it owns no socket, clock or
//! thread. It speaks the overlay (handshake, Ping/Pong/Query/QueryHit/Push, and in 0.6
//! roles ROUTE_TABLE_UPDATE, Bye, vendor messages) and decides what an inbound connection is
//! from its first bytes: `GNUTELLA CONNECT/` joins the overlay, `GET ` and `GIV ` are file transfers, which it hands to the driver with
//! [`Event::Handoff`]. The transfer protocol itself is the pure code in [`http`]; the
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

#[cfg(feature = "runtime")]
#[path = "driver/control.rs"]
pub mod control;
#[path = "scenarios/flood.rs"]
pub mod flood;
#[path = "core/handshake.rs"]
pub mod handshake06;
pub mod harness;
#[path = "wire/http.rs"]
pub mod http;
#[path = "scenarios/hybrid.rs"]
pub mod hybrid;
#[path = "core/library.rs"]
pub mod library;
#[cfg(feature = "runtime")]
#[path = "driver/mod.rs"]
pub mod node;
#[path = "core/qrp.rs"]
pub mod qrp;
#[path = "core/routing.rs"]
pub mod routing;
#[path = "core/mod.rs"]
pub mod servent;
#[path = "wire/mod.rs"]
pub mod wire;

/// The simulation scenarios of this crate, for `servent sim run NAME`.
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    vec![
        Box::new(flood::FloodScenario),
        Box::new(hybrid::HybridScenario),
    ]
}

pub use library::{Library, SharedFile};
pub use servent::{Command, Config, DownReason, Event, HandoffKind, Hit, Servent, Stats};
pub use wire::{Guid, Kind, Message};
