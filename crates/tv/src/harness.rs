//! The in-memory test network of servent-tv: real trackers and nodes on
//! [`servent_core::harness::Harness`], in virtual time.

use servent_core::harness::{Harness, map_input};
use servent_core::{Core, Input, Instant, Transmit};

use crate::core::{Node, NodeCommand, NodeEvent, Tracker, TrackerEvent};

/// A tracker or a node, so that both live in one harness.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Station {
    /// A channel tracker.
    Tracker(Tracker),
    /// A broadcaster or viewer.
    Node(Node),
}

/// What a station reports.
#[derive(Debug, Clone)]
pub enum StationEvent {
    /// From a tracker.
    Tracker(TrackerEvent),
    /// From a node.
    Node(NodeEvent),
}

impl Station {
    /// The node, if it is one.
    pub fn node(&self) -> Option<&Node> {
        match self {
            Station::Node(n) => Some(n),
            Station::Tracker(_) => None,
        }
    }

    /// The tracker, if it is one.
    pub fn tracker(&self) -> Option<&Tracker> {
        match self {
            Station::Tracker(t) => Some(t),
            Station::Node(_) => None,
        }
    }
}

impl Core for Station {
    type Command = NodeCommand;
    type Event = StationEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, NodeCommand>) {
        match self {
            Station::Node(n) => n.handle_input(now, input),
            Station::Tracker(t) => {
                if let Some(i) = map_input(input, |_| None) {
                    t.handle_input(now, i);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Station::Node(n) => n.handle_timeout(now),
            Station::Tracker(t) => t.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Station::Node(n) => n.poll_transmit(),
            Station::Tracker(t) => t.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<StationEvent> {
        match self {
            Station::Node(n) => n.poll_event().map(StationEvent::Node),
            Station::Tracker(t) => t.poll_event().map(StationEvent::Tracker),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Station::Node(n) => n.poll_timeout(),
            Station::Tracker(t) => t.poll_timeout(),
        }
    }
}

/// A harness of stations.
pub type TvHarness = Harness<Station>;
