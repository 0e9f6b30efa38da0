//! Codecs: bytes <-> messages, strict limits, no state.
//!
//! - [`peer`] (re-exported here): handshake and messages (BEP 3), Fast extension (BEP 6),
//!   extension protocol (BEP 10), peer exchange (BEP 11);
//! - [`mse`]: Message Stream Encryption (the obfuscated handshake and RC4);
//! - [`tracker`]: HTTP announce/scrape (BEP 3, compact BEP 23) and UDP (BEP 15);
//! - [`metainfo`]: `.torrent` files (BEP 3/12/19/27) and the info-hash;
//! - [`magnet`]: magnet links (BEP 9).

pub mod magnet;
pub mod metainfo;
pub mod mse;
pub mod peer;
pub mod tracker;

pub use peer::*;
