//! servent-runtime: what runs servent's sans-IO cores on a real machine.
//!
//! - [`driver`]: the tokio driver. It owns a UDP socket, a TCP listener, one reader and one
//!   writer task per connection, and a timer, and feeds a [`servent_core::Core`] exactly the
//!   inputs the simulator feeds it, in the contract's order.
//! - [`share`]: the shared-file index that Napster, Gnutella and BitTorrent seeding serve
//!   from: scan a folder, search it by keywords with `*` wildcards, hash files on demand, and
//!   refuse every path that would leave the folder.

pub mod driver;
pub mod share;

pub use driver::{DriverError, LocalAddrs, NodeConfig, NodeHandle, spawn};
pub use share::{ShareError, ShareIndex, SharedFile};
