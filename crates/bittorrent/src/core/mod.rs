//! Sans-IO state machines: no socket, clock, disk, environment, thread or unseeded RNG.
//!
//! - [`client::Client`]: the swarm core for one torrent (peers, trackers, choking, requests,
//!   peer exchange, metadata, web seeds), its sub-machines in `client/`;
//! - [`dht_source`]: the DHT as a peer source: which torrents to look up or announce when,
//!   which found peers go to which client;
//! - [`picker`]: rarest first, random first pieces, strict priority, endgame;
//! - [`metadata`]: fetching and serving the info dictionary (BEP 9);
//! - [`webseed`]: HTTP web seeds (BEP 19): URL, range requests, the response reader;
//! - [`storage`]: the [`storage::Storage`] the client reads and writes through, in memory or
//!   synthetic (the driver supplies files on disk);
//! - [`tracker_server::Tracker`]: the tracker core.

pub mod client;
pub mod dht_source;
pub mod metadata;
pub mod picker;
pub mod storage;
pub mod tracker_server;
pub mod webseed;
