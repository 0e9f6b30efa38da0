//! The engine's event queue: a calendar queue.
//!
//! Events are kept in buckets of [`WIDTH_US`] microseconds over a horizon of [`BUCKETS`]
//! buckets; events further out wait in a binary heap and move into their bucket as the
//! horizon reaches them. A bucket is sorted once, when it becomes current. With hundreds of
//! thousands of pending events this avoids the cache misses of one big binary heap, and
//! pops stay in exact (time, sequence) order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use servent_core::Instant;

/// Width of a bucket in microseconds.
pub(crate) const WIDTH_US: u64 = 1_000;
/// Number of buckets (the horizon is `WIDTH_US * BUCKETS`).
pub(crate) const BUCKETS: usize = 4_096;

/// (time, sequence, slot): the sequence number makes the order total and deterministic.
pub(crate) type Entry = (Instant, u64, u32);

#[derive(Debug)]
pub(crate) struct CalendarQueue {
    buckets: Vec<Vec<Entry>>,
    /// Absolute number of the current bucket (time / width).
    cur: u64,
    /// Whether the current bucket is sorted (descending, so the next entry is last).
    sorted: bool,
    near: usize,
    far: BinaryHeap<Reverse<Entry>>,
}

impl CalendarQueue {
    pub(crate) fn new() -> CalendarQueue {
        CalendarQueue {
            buckets: (0..BUCKETS).map(|_| Vec::new()).collect(),
            cur: 0,
            sorted: false,
            near: 0,
            far: BinaryHeap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.near + self.far.len()
    }

    fn bucket_of(at: Instant) -> u64 {
        at.as_micros() / WIDTH_US
    }

    fn slot(b: u64) -> usize {
        (b % BUCKETS as u64) as usize
    }

    pub(crate) fn push(&mut self, e: Entry) {
        let b = Self::bucket_of(e.0).max(self.cur);
        if b >= self.cur + BUCKETS as u64 {
            self.far.push(Reverse(e));
            return;
        }
        let bucket = &mut self.buckets[Self::slot(b)];
        if b == self.cur && self.sorted {
            // keep the current bucket sorted descending
            let pos = bucket.partition_point(|x| (x.0, x.1) > (e.0, e.1));
            bucket.insert(pos, e);
        } else {
            bucket.push(e);
        }
        self.near += 1;
    }

    /// Makes the current bucket hold the next entry (sorted); false when empty.
    fn settle(&mut self) -> bool {
        loop {
            if self.near == 0 {
                let Some(Reverse(first)) = self.far.peek() else {
                    return false;
                };
                self.cur = Self::bucket_of(first.0);
                self.sorted = false;
                self.migrate();
                continue;
            }
            let idx = Self::slot(self.cur);
            if !self.buckets[idx].is_empty() {
                if !self.sorted {
                    self.buckets[idx].sort_unstable_by_key(|e| std::cmp::Reverse((e.0, e.1)));
                    self.sorted = true;
                }
                return true;
            }
            self.cur += 1;
            self.sorted = false;
            self.migrate();
        }
    }

    /// Moves far entries that the horizon now covers into their buckets.
    fn migrate(&mut self) {
        let end = self.cur + BUCKETS as u64;
        while let Some(Reverse(e)) = self.far.peek() {
            if Self::bucket_of(e.0) >= end {
                break;
            }
            let Some(Reverse(e)) = self.far.pop() else {
                break;
            };
            let b = Self::bucket_of(e.0).max(self.cur);
            self.buckets[Self::slot(b)].push(e);
            self.near += 1;
        }
    }

    pub(crate) fn peek(&mut self) -> Option<Entry> {
        if !self.settle() {
            return None;
        }
        self.buckets[Self::slot(self.cur)].last().copied()
    }

    pub(crate) fn pop(&mut self) -> Option<Entry> {
        if !self.settle() {
            return None;
        }
        let e = self.buckets[Self::slot(self.cur)].pop();
        if e.is_some() {
            self.near -= 1;
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The queue pops exactly what a binary heap pops, in the same order, with pushes
        /// interleaved (never earlier than the last pop, as in the engine).
        #[test]
        fn pops_in_time_then_sequence_order(ops in proptest::collection::vec((any::<bool>(), 0u64..20_000_000), 1..400)) {
            let mut q = CalendarQueue::new();
            let mut h = BinaryHeap::new();
            let mut seq = 0u64;
            let mut now = 0u64;
            for (pop, dt) in ops {
                if pop {
                    let a = q.pop();
                    let b = h.pop().map(|Reverse(e)| e);
                    prop_assert_eq!(a, b);
                    if let Some(e) = a { now = e.0.as_micros(); }
                } else {
                    seq += 1;
                    // mostly near, sometimes far beyond the horizon, sometimes the same instant
                    let at = Instant::from_micros(now + if dt % 7 == 0 { 0 } else { dt });
                    q.push((at, seq, seq as u32));
                    h.push(Reverse((at, seq, seq as u32)));
                }
                prop_assert_eq!(q.len(), h.len());
            }
            while let Some(Reverse(e)) = h.pop() {
                prop_assert_eq!(q.peek(), Some(e));
                prop_assert_eq!(q.pop(), Some(e));
            }
            prop_assert_eq!(q.pop(), None);
        }
    }
}
