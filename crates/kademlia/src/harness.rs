//! The in-memory test network: real [`Dht`] cores exchanging datagrams in virtual time
//! (the shared [`servent_core::harness`] with DHT nodes).
//!
//! Every datagram takes `latency` to arrive; time jumps to the next delivery or timer.
//! Datagrams to an address where no node lives (a forged source, a node that left) are
//! counted in [`Harness::stray`] and dropped, so a test can measure what a node sent to
//! addresses that never asked for it. [`Harness::inject`] hands a node a datagram that
//! claims to come from any address (a forged source).
//!
//! ```
//! use servent_core::{Id, Rng};
//! use servent_kademlia::harness::Harness;
//! use servent_kademlia::{Command, Config, Dht, Event};
//!
//! let mut h = Harness::new();
//! let a = h.add(Dht::new(Id([1; 20]), Config::default(), Rng::new(1)));
//! let b = h.add(Dht::new(Id([2; 20]), Config::default(), Rng::new(2)));
//! h.command(b, Command::Bootstrap { id: 1, nodes: vec![a] });
//! h.drive_for(std::time::Duration::from_secs(5));
//! assert!(h.events().iter().any(|(n, e)| *n == b && matches!(e, Event::Bootstrapped { nodes: 1, .. })));
//! ```

use crate::core::Dht;

/// Datagrams and bytes sent to addresses where no node lives.
pub use servent_core::harness::Stray;

/// A network of DHT cores in virtual time: [`servent_core::harness::Harness`] over [`Dht`].
pub type Harness = servent_core::harness::Harness<Dht>;
