//! servent-bittorrent: BitTorrent — torrent files, a tracker, the peer wire protocol and a
//! swarm engine — as sans-IO cores that run unchanged under the tokio driver and in the
//! simulator.
//!
//! Bottom-up:
//! - [`bencode`]: strict, borrowing bencode (bounded depth and size); Kademlia reuses it;
//! - [`metainfo`]: `.torrent` files (BEP 3/12/19/27), info-hash of the exact info bytes,
//!   paths that can never leave the download folder; [`create`] hashes files into one;
//! - [`tracker`]: HTTP announce/scrape (BEP 3, compact BEP 23) and UDP (BEP 15) codecs;
//!   [`tracker_server::Tracker`] is the tracker core;
//! - [`wire`]: handshake and messages (BEP 3), Fast extension (BEP 6), extension protocol
//!   (BEP 10), peer exchange (BEP 11);
//! - [`picker`]: rarest first, random first pieces, strict priority, endgame;
//! - [`storage`]: multi-file mapping, SHA-1 verification support, crash-safe resume data;
//! - [`client::Client`]: the swarm core for one torrent (peers, trackers, choking);
//! - [`swarm`]: both cores in the simulator, and the `bittorrent-swarm` scenario.
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

/// The bencode codec, now its own crate (servent-bencode); re-exported for old paths.
pub use servent_bencode as bencode;
pub mod client;
pub mod create;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod picker;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod tracker_server;
pub mod webseed;
pub mod wire;

pub use swarm::scenarios;
