//! servent-store: P2P cloud storage in the manner of Wuala and Tahoe-LAFS. Content is
//! split into segments, each encrypted on the client with a key derived per file
//! (XChaCha20-Poly1305), erasure-coded k-of-n (Reed-Solomon, `reed-solomon-simd`, default
//! 4-of-8), and its shards placed on n distinct storage nodes found through the Kademlia
//! DHT (closest by XOR distance to the segment). The manifest (hashes, shard locations) is
//! stored encrypted under the storage index of a capability string: whoever holds the
//! capability can read, nobody else can.
//!
//! - [`wire`]: the shard protocol, the manifest and capability encodings;
//! - [`core`]: keys, segment encode/decode, manifest sealing, placement, repair decisions;
//! - [`mod@scenarios`]: the `store-durability` simulator scenario;
//! - [`driver`] (feature `runtime`): the storage node, the client and the S3 gateway.
//!
//! One segment through the core and back:
//!
//! ```
//! use servent_store::core::{keys, segment};
//!
//! let read = keys::read_key(&[7; 32]);
//! let key = keys::file_key(&read, 0);
//! let enc = segment::encode_segment(&key, 0, 0, b"hello", 4, 8).unwrap();
//! // any 4 of the 8 shards will do
//! let mut have: Vec<Option<Vec<u8>>> = enc.shards.iter().cloned().map(Some).collect();
//! for lost in [0, 2, 5, 7] {
//!     have[lost] = None;
//! }
//! let plain = segment::decode_segment(
//!     &key, 0, 0, 4, 8, enc.cipher_len as usize, enc.shard_size as usize, &enc.hashes, &have,
//! ).unwrap();
//! assert_eq!(plain, b"hello");
//! ```
//!
//! Design notes and deviations are in `docs/store.md`.

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod scenarios;
pub mod wire;

pub use crate::core::Params;
pub use crate::wire::{Cap, CapError, Manifest};

/// The simulator scenarios of this crate (`servent sim run store-durability`).
pub fn scenarios() -> Vec<Box<dyn servent_sim::Scenario>> {
    scenarios::all()
}
