//! servent-runtime: what runs servent's sans-IO cores on a real machine.
//!
//! - [`driver`]: the tokio driver. It owns a UDP socket, a TCP listener, one reader and one
//!   writer task per connection, and a timer, and feeds a [`servent_core::Core`] exactly the
//!   inputs the simulator feeds it, in the contract's order. A core may hand a connection
//!   over to its user ([`spawn_with_handover`], [`NodeHandle::take_connection`]: Gnutella's
//!   HTTP transfers), and the user may read the core's state between inputs
//!   ([`NodeHandle::inspect`]).
//! - [`random`]: OS-seeded randomness for real runs ([`os_rng`]);
//! - [`share`]: the shared-file index that Napster, Gnutella and BitTorrent seeding serve
//!   from: scan a folder, search it by keywords with `*` wildcards, hash files on demand, and
//!   refuse every path that would leave the folder.

pub mod driver;
pub mod random;
pub mod share;

pub use driver::{
    DriverError, DriverStats, HandedOver, HandoverOf, LocalAddrs, NodeConfig, NodeHandle, spawn,
    spawn_with_handover,
};
pub use random::{OsRandomError, os_random, os_rng};
pub use share::{ShareError, ShareIndex, SharedFile};

/// Waits for SIGINT (Ctrl-C) or SIGTERM (a service manager's or `kill`'s stop), whichever
/// comes first: a long-running driver's normal end.
pub async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
