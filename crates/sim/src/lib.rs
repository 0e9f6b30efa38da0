//! servent-sim: a deterministic discrete-event simulator for servent's sans-IO cores.
//!
//! A [`Sim`] holds many nodes, each running a protocol core (anything implementing
//! [`servent_core::Core`]), a virtual clock and a virtual network: per-pair latency drawn
//! from a [`Dist`], per-node up/down bandwidth with queueing, datagram loss, partitions,
//! churn, and TCP-like connections (connect/accept, in-order delivery, refusal by a
//! firewalled node, close, reset when a node dies). Cores see exactly the inputs the tokio
//! driver gives them over real sockets.
//!
//! The same [`SimConfig::seed`] gives the same run, event for event
//! ([`Sim::trace_hash`]). The same engine with two or three nodes is the in-memory harness
//! protocol crates use in their tests.
//!
//! ```
//! use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};
//! use servent_core::Instant;
//! use servent_sim::{NodeOpts, Sim, SimConfig};
//! use std::time::Duration;
//!
//! let mut sim = Sim::new(SimConfig { seed: 7, ..SimConfig::default() });
//! let a = sim.add_node(PingPong::new(Duration::from_secs(2)), NodeOpts::default());
//! let b = sim.add_node(PingPong::new(Duration::from_secs(2)), NodeOpts::default());
//! let to = sim.addr(b);
//! sim.command(a, Ping { id: 1, to, transport: Transport::Datagram });
//! sim.run_until_idle(Instant::from_secs(10));
//! let events = sim.take_events();
//! assert!(events.iter().any(|(_, n, e)| *n == a && matches!(e, PingEvent::Pong { id: 1, .. })));
//! ```

mod dist;
mod engine;
pub mod pingpong;
mod queue;
pub mod scenario;

pub use dist::Dist;
pub use engine::{Churn, ChurnFactory, NodeId, NodeOpts, NodeStats, Sim, SimConfig, SimStats};
pub use scenario::{Plot, Report, Scenario, ScenarioOpts, Series, SimError, Table};

/// The scenarios this crate defines (the example protocol's).
pub fn scenarios() -> Vec<Box<dyn Scenario>> {
    vec![Box::new(pingpong::PingPongScenario)]
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`), for reports.
#[allow(clippy::disallowed_methods)] // a measurement of the simulator process itself
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Percentile `p` (0..=100) of a sorted slice, nearest-rank; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
