//! Flood control: each link's allowance of Pings and Queries per second.

use servent_core::Instant;
use std::time::Duration;

/// A link whose Pings or Queries in one second pass this many times its allowance is closed.
pub const FLOOD_FACTOR: u32 = 10;

/// Per-link counts of Pings and Queries in a one-second window (the flood allowance).
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub(super) window: Option<Instant>,
    pub(super) pings: u32,
    pub(super) queries: u32,
}

/// What a link's allowance says of one more Ping or Query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowance {
    Ok,
    Drop,
    Flood(u32),
}

impl Budget {
    pub(super) fn take(&mut self, now: Instant, ping: bool, limit: u32) -> Allowance {
        let fresh = self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1));
        if fresh {
            *self = Budget {
                window: Some(now),
                pings: 0,
                queries: 0,
            };
        }
        let n = if ping {
            &mut self.pings
        } else {
            &mut self.queries
        };
        *n = n.saturating_add(1);
        if *n <= limit {
            Allowance::Ok
        } else if *n > limit.saturating_mul(FLOOD_FACTOR) {
            Allowance::Flood(*n)
        } else {
            Allowance::Drop
        }
    }
}
