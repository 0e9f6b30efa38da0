//! servent-chord: Chord (Stoica et al., SIGCOMM 2001 / ToN 2003) as a sans-IO core.
//!
//! # Model
//! Identifiers have m bits (1 ≤ m ≤ 160; 160 by default, from SHA-1 of the node's
//! `ip:port` or of the key; small m such as 5 for teaching). A key belongs to its
//! *successor*, the first node whose id is ≥ the key, clockwise. Each [`ChordNode`] keeps
//! - a finger table of m entries, entry i (1-based) starting at (n + 2^(i−1)) mod 2^m and
//!   pointing at the successor of that start;
//! - a successor list of length r, and its predecessor;
//! - a key-value store whose pairs are replicated on the r successors of each key, with
//!   per-key versions, bounded tombstones for deletes, and copies dropped once a node is no
//!   longer among a key's r successors (a lease renewed by the responsible node's pushes).
//!
//! A node is no UDP amplifier: its reply to a source that has not answered one of its
//! requests is at most 3× the request (or 48 bytes); larger replies wait for that source to
//! answer a Ping challenge, and recursive answers go only to a proven origin.
//!
//! `find_successor` walks `closest_preceding_finger` (the table searched from the last entry
//! to the first), iteratively (the originator asks each hop) or recursively (each hop
//! forwards). `stabilize`/`notify`, `fix_fingers` and `check_predecessor` run on timers;
//! a joining node copies its successor's fingers as a first guess; a leaving node hands its
//! keys to its successor and tells its neighbours. The RPC is one UDP datagram per message
//! with retries, documented in [`wire`] and `docs/chord.md`.
//!
//! # The run loop
//! The node owns no socket, clock or thread: the caller passes `now` in (never going
//! backwards) and drains the outputs in order — transmits, then events, then the timer.
//! ```
//! use std::time::Duration;
//! use servent_chord::{ChordNode, Command, Config, Event};
//! use servent_core::{Core, Input, Instant, Ring, Rng, Transmit};
//!
//! let ring = Ring::new(5).unwrap();
//! let addr = "127.0.0.1:4000".parse().unwrap();
//! let mut node = ChordNode::new(Config::new(ring, ring.id(8), addr), Rng::new(1));
//! let mut now = Instant::ZERO;
//! node.create(now); // a ring of one
//! node.handle_input(now, Input::Command(Command::Lookup { id: 7, key: ring.id(3), start: None }));
//! loop {
//!     while let Some(t) = node.poll_transmit() {
//!         if let Transmit::Datagram { to, data } = t { /* send `data` to `to` */ let _ = (to, data); }
//!     }
//!     while let Some(e) = node.poll_event() {
//!         if let Event::LookupDone { id: 7, responsible, .. } = e {
//!             assert_eq!(responsible.id, ring.id(8)); // alone: responsible for everything
//!         }
//!     }
//!     match node.poll_timeout() {
//!         Some(t) if t < Instant::from_secs(2) => { now = t; node.handle_timeout(now); }
//!         _ => break,
//!     }
//! }
//! ```
//! [`harness::Harness`] runs many nodes on a virtual network; `servent-sim` and the tokio
//! driver in `servent-runtime` run the very same core.

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;

/// The old path of the core (`servent_chord::node::*`), kept for callers.
pub mod node {
    pub use crate::core::*;
}
/// The old path of the exact finger model, now a scenario helper.
pub use scenarios::model;

pub use crate::core::{
    ChordNode, Command, Config, Event, FailReason, Limits, LookupMode, NodeStats, key_id, node_id,
};
pub use scenarios::scenarios;
pub use wire::{Body, Item, Message, NodeRef, WireError};
