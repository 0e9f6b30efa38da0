//! The sans-IO core: pure functions and small decision machines, no disk, clock, sockets or
//! threads. The driver calls them (on a blocking pool for the CPU-heavy ones).
//!
//! - [`keys`]: key derivation from a capability (read key, storage index, per-file content
//!   keys, manifest key, delete secret);
//! - [`segment`]: one segment through XChaCha20-Poly1305 and Reed-Solomon k-of-n, and back;
//! - [`object`]: sealing and opening the manifest, splitting content into segments;
//! - [`placement`]: n distinct nodes per segment by XOR distance;
//! - [`repair`]: when a segment needs repair, and which shards to rebuild where.

pub mod keys;
pub mod object;
pub mod placement;
pub mod repair;
pub mod segment;

pub use object::{ObjectError, Params};
pub use segment::{SegmentError, decode_segment, encode_segment};
