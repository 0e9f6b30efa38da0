//! servent-bittorrent: BitTorrent — torrent files, a tracker, the peer wire protocol and a
//! swarm engine — as sans-IO cores that run unchanged under the tokio driver and in the
//! simulator.
//!
//! The crate has the same rooms as every protocol crate of servent:
//! - [`wire`]: codecs, no state — peer wire (BEP 3/6/10/11), [`mse`], [`tracker`] (HTTP
//!   BEP 3/23, UDP BEP 15), [`metainfo`] (`.torrent`, BEP 3/12/19/27; paths that can never
//!   leave the download folder), [`magnet`] (BEP 9); [`bencode`] is its own crate, re-exported;
//! - [`core`]: the sans-IO state machines — [`client::Client`] (one torrent: peers, trackers,
//!   choking, requests, PEX, metadata, web seeds), [`picker`], [`metadata`], [`webseed`],
//!   [`core::dht_source`] (the DHT as a peer source: what to look up or announce when),
//!   [`storage`] (the trait and in-memory/synthetic content), [`tracker_server::Tracker`];
//! - `driver` (feature `runtime`, on by default): files on disk (`FileStorage`, resume
//!   data), the disk-job pool, the web-seed fetcher, the DHT peer source's node
//!   (`driver::dht`, servent-kademlia's client) and `create` (hashing content into a
//!   `.torrent` on every core);
//! - [`scenarios`](mod@scenarios): both cores in the simulator ([`swarm`]), the `bittorrent-swarm` scenario;
//! - [`harness`]: clients on an in-memory network and virtual time, disk jobs answered by
//!   the test.
//!
//! The old flat paths (`servent_bittorrent::client`, `::wire`, `::storage`, …) stay valid as
//! re-exports.
//!
//! # The model and the run loop
//! Each core ([`tracker_server::Tracker`], [`client::Client`]) implements
//! [`servent_core::Core`]: the driver hands in inputs with the current time, then drains
//! transmits (network first), then events, then re-arms the timer. No core reads a clock,
//! draws unseeded randomness or opens a socket; content goes through a [`storage::Storage`]
//! the driver supplies. The same cores run in the simulator — here a tracker, one seeder and
//! two leechers, every piece SHA-1 verified:
//!
//! ```
//! use std::time::Duration;
//! use servent_bittorrent::swarm::{SwarmParams, run_swarm};
//!
//! let run = run_swarm(&SwarmParams {
//!     leechers: 2,
//!     content: 256 << 10,
//!     piece_length: 32 << 10,
//!     seeder_up: 1_000_000,
//!     leecher_up: 500_000,
//!     leecher_down: 2_000_000,
//!     seed: 1,
//!     limit: Duration::from_secs(120),
//!     liars: 0,
//!     super_seed: false,
//! });
//! assert_eq!(run.completions.len(), 2);
//! assert!(run.all_verified);
//! ```

/// The bencode codec, its own crate (servent-bencode); re-exported for old paths.
pub use servent_bencode as bencode;

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;

pub use crate::core::{client, metadata, picker, tracker_server, webseed};
pub use scenarios::{scenarios, swarm};
pub use wire::{magnet, metainfo, mse, tracker};

#[cfg(feature = "runtime")]
pub use driver::create;

/// Piece storage: the core's [`Storage`](crate::core::storage::Storage) trait and in-memory
/// content, plus (feature `runtime`) the driver's files on disk.
pub mod storage {
    pub use crate::core::storage::*;
    #[cfg(feature = "runtime")]
    pub use crate::driver::storage::*;
}
