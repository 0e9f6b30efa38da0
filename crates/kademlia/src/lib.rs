//! servent-kademlia: the mainline DHT of BitTorrent (BEP 5), built on Kademlia.
//!
//! - [`wire`] ([`krpc`]): the wire format, bencoded KRPC messages over UDP, byte for byte as
//!   BEP 5 (with BEP 42's `ip` field and BEP 44's get/put), strict limits, no state;
//! - [`core`]: [`Dht`], the sans-IO node core, one sub-machine per file: answering queries
//!   (`answer`), iterative lookups (`lookup`: α parallel queries converging on the k closest
//!   nodes), announced-peer and BEP 44 storage with expiry (`storage`), tokens from a
//!   rotating secret, per-IP rate limits, our own id (`own_id`, BEP 42), and the routing
//!   table ([`table`]: k-buckets that split only around our own id, node states,
//!   replacement caches, bucket refresh);
//! - [`bep42`]: node ids tied to IP addresses; [`bep44`]: arbitrary data items;
//! - [`mod@scenarios`]: the `kademlia` simulator scenarios; [`harness`]: the in-memory test
//!   network;
//! - [`driver`] (feature `runtime`, on by default): the node over a real UDP socket, with the
//!   routing table saved on shutdown and loaded on start, and one-shot lookup/announce.
//!
//! The core owns no socket, no clock and no thread: time comes in as `now`, randomness
//! from the caller's seeded [`servent_core::Rng`]. Run loop, as every driver does it:
//!
//! ```
//! use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
//! use servent_kademlia::{Command, Config, Dht, Event};
//!
//! let mut a = Dht::new(Id([1; 20]), Config::default(), Rng::new(1));
//! let mut b = Dht::new(Id([2; 20]), Config::default(), Rng::new(2));
//! let (a_addr, b_addr) = ("127.0.0.1:6881".parse().unwrap(), "127.0.0.2:6881".parse().unwrap());
//! let now = Instant::ZERO;
//! a.handle_input(now, Input::Command(Command::Ping { id: 7, addr: b_addr }));
//! // 1. the network first
//! while let Some(Transmit::Datagram { to, data }) = a.poll_transmit() {
//!     assert_eq!(to, b_addr);
//!     b.handle_input(now, Input::Datagram { from: a_addr, data: &data });
//!     while let Some(Transmit::Datagram { data, .. }) = b.poll_transmit() {
//!         a.handle_input(now, Input::Datagram { from: b_addr, data: &data });
//!     }
//! }
//! // 2. then the user
//! assert!(matches!(a.poll_event(), Some(Event::Pong { id: 7, .. })));
//! // 3. then the timer
//! assert!(a.poll_timeout().is_some());
//! ```
//!
//! Spec choices and deviations are in `docs/kademlia.md`.

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;

/// The old path of the core (`servent_kademlia::node::*`), kept for callers.
pub mod node {
    pub use crate::core::*;
}
/// The old path of the UDP driver (`servent_kademlia::client::*`), kept for callers.
#[cfg(feature = "runtime")]
pub mod client {
    pub use crate::driver::*;
}
/// The old path of the scenarios (`servent_kademlia::scenario::*`), kept for callers.
pub mod scenario {
    pub use crate::scenarios::*;
}

pub use crate::core::{
    Command, Config, Dht, Event, LookupStats, MutableKey, NodeStats, bep42, bep44, table,
};
pub use table::RoutingTable;
pub use wire::krpc;
pub use wire::krpc::NodeInfo;

/// The simulator scenarios of this crate (`servent sim run kademlia`, …).
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    scenarios::all()
}
