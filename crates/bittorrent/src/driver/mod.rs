#![allow(clippy::disallowed_methods, clippy::disallowed_types)]
//! The driver side (feature `runtime`): what touches the disk and the machine's cores.
//!
//! - [`storage::FileStorage`]: the torrent's files under a download folder, with crash-safe
//!   resume data — the [`crate::storage::Storage`] real runs hand the client;
//! - [`disk`]: [`disk::DiskPool`] completes the client core's disk jobs on blocking threads;
//! - [`dht`]: the DHT peer source's node and task, scheduled by
//!   [`crate::core::dht_source`], with its state file;
//! - [`webseed`]: the BEP 19 fetcher, whole pieces over HTTP handed to the client core;
//! - [`session`]: one torrent on the peer port — [`session::Session`] starts its client
//!   core, completes its disk jobs, runs its web seeds and DHT registration and stops it;
//!   [`session::MetadataFetch`] gets a magnet link's info dictionary first;
//! - [`create`]: hashing files on disk into a `.torrent`, on every core.

pub mod create;
pub mod dht;
pub mod disk;
pub mod session;
pub mod storage;
pub mod webseed;
