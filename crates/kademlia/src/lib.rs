//! servent-kademlia: the mainline DHT of BitTorrent (BEP 5), built on Kademlia.
//!
//! - [`krpc`]: the wire format, bencoded KRPC messages over UDP, byte for byte as BEP 5
//!   (with BEP 42's `ip` field);
//! - [`table`]: the routing table (k-buckets that split only around our own id, node
//!   states, replacement caches, bucket refresh);
//! - [`node`]: [`Dht`], the sans-IO node core: it answers queries, runs iterative lookups
//!   (α parallel queries converging on the k closest nodes), hands out and checks tokens
//!   from a rotating secret, stores announced peers with expiry, and rate-limits per IP;
//! - [`bep42`]: node ids tied to IP addresses (checked where the address allows);
//! - [`scenario`]: the `kademlia` simulator scenarios;
//! - `client` (feature `runtime`, on by default): the node over a real UDP socket, with the
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

pub mod bep42;
pub mod bep44;
#[cfg(feature = "runtime")]
pub mod client;
pub mod harness;
pub mod krpc;
pub mod node;
pub mod scenario;
pub mod table;

pub use krpc::NodeInfo;
pub use node::{Command, Config, Dht, Event, LookupStats, MutableKey, NodeStats};
pub use table::RoutingTable;

/// The simulator scenarios of this crate (`servent sim run kademlia`, …).
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    scenario::all()
}
