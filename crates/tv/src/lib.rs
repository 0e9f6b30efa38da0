//! servent-tv: live P2P TV in which every viewer downloads *and forwards* the stream.
//!
//! - [`wire`]: TS packets (with the adaptation field's random_access_indicator), signed
//!   chunks (ed25519; the channel id is the public key), and the peer and tracker messages.
//! - [`core`]: the broadcaster's [`core::Chunker`], the peer [`core::Node`] (mesh pull with
//!   buffer maps, a deadline-then-rarity scheduler, an upload limit, a playout buffer, GOP-cache
//!   start, forgers dropped), and the channel [`core::Tracker`].
//! - `driver` (feature `runtime`): the broadcaster, tracker and viewer processes, the
//!   viewer's HTTP play endpoint.
//! - [`mod@scenarios`]: `tv-mesh` for the simulator.
//!
//! A broadcaster and a viewer meeting at a tracker, in virtual time:
//! ```
//! use std::time::Duration;
//! use ed25519_dalek::SigningKey;
//! use servent_core::Rng;
//! use servent_tv::core::{ChunkerConfig, Node, NodeCommand, NodeConfig, Tracker};
//! use servent_tv::harness::{Station, StationEvent, TvHarness};
//! use servent_tv::core::NodeEvent;
//!
//! let mut h = TvHarness::new();
//! let t: std::net::SocketAddr = "10.0.0.1:7000".parse().unwrap();
//! h.add_at(t, Station::Tracker(Tracker::new(Rng::new(1))));
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let s: std::net::SocketAddr = "10.0.0.2:7000".parse().unwrap();
//! let cfg = NodeConfig::viewer([0; 32], s, Some(t));
//! h.add_at(s, Station::Node(Node::broadcaster(cfg, key.clone(), ChunkerConfig::default(), Rng::new(2))));
//! let v: std::net::SocketAddr = "10.0.0.3:7000".parse().unwrap();
//! let channel = key.verifying_key().to_bytes();
//! h.add_at(v, Station::Node(Node::new(NodeConfig::viewer(channel, v, Some(t)), Rng::new(3))));
//! h.drive_for(Duration::from_secs(3));
//! // One keyframe chunk of two TS packets.
//! let mut ts = vec![0u8; 376];
//! for p in ts.chunks_mut(188) { p[0] = 0x47; p[3] = 0x30; p[4] = 1; p[5] = 0x40; }
//! h.command(s, NodeCommand::Ingest(ts));
//! h.command(s, NodeCommand::EndOfInput);
//! h.drive_for(Duration::from_secs(2));
//! assert!(h.events().iter().any(|(n, e)| *n == v && matches!(e, StationEvent::Node(NodeEvent::Ended))));
//! ```

pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
pub mod harness;
pub mod scenarios;
pub mod wire;

pub use scenarios::scenarios;
