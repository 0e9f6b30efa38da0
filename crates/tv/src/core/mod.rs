//! Sans-IO state machines: the broadcaster's [`chunker`], the peer [`node`] (viewer,
//! supernode or broadcaster), the channel [`tracker`], and the viewer's [`stats`].

pub mod chunker;
pub mod node;
pub mod stats;
pub mod tracker;

pub use chunker::{Chunker, ChunkerConfig, ChunkerStats};
pub use node::{Node, NodeCommand, NodeConfig, NodeEvent};
pub use stats::NodeStats;
pub use tracker::{Tracker, TrackerEvent};
