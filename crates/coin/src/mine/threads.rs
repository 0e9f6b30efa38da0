//! The threaded miner: the only file of this crate that owns threads
//! (feature `runtime`), so it opts out of the crate's thread rule here.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, Ordering};

use super::{Midstate, Template};
use crate::wire::Block;

/// Nonces a thread scans between looks at the stop flags (a few ms).
const CHUNK: u32 = 1 << 16;

enum Outcome {
    Found(u32),
    Stopped,
    Exhausted,
}

/// Mine `t` on `threads` threads (at least one), each scanning its share of
/// the nonce space; when all 2^32 nonces fail, the coinbase extra nonce is
/// incremented (a new merkle root) and the search starts again. `progress`
/// is told how many headers were hashed, in chunks, from every thread.
/// Returns the block once its header meets its nBits, or `None` when `stop`
/// becomes true (checked every 65 536 nonces per thread) or when nBits is
/// negative or overflows.
pub fn mine(
    mut t: Template,
    threads: usize,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Option<Block> {
    let threads = threads.clamp(1, 1024);
    let mut extra = t.extra_nonce().unwrap_or(0);
    loop {
        let m = Midstate::new(&t.header)?;
        match scan_all(&m, threads, stop, progress) {
            Outcome::Found(nonce) => {
                t.header.nonce = nonce;
                return Some(t.block());
            }
            Outcome::Stopped => return None,
            Outcome::Exhausted => {
                extra = extra.wrapping_add(1);
                t.set_extra_nonce(extra);
            }
        }
    }
}

fn scan_all(
    m: &Midstate,
    threads: usize,
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Outcome {
    let found = AtomicBool::new(false);
    let span = (u64::from(u32::MAX) + 1).div_ceil(threads as u64);
    let results: Vec<Option<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .filter_map(|i| {
                let first = i.checked_mul(span)?;
                let last = first.saturating_add(span - 1).min(u64::from(u32::MAX));
                let (first, last) = (u32::try_from(first).ok()?, u32::try_from(last).ok()?);
                let found = &found;
                Some(s.spawn(move || scan_share(m, first, last, stop, found, progress)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    });
    if let Some(n) = results.into_iter().flatten().min() {
        Outcome::Found(n)
    } else if stop.load(Ordering::Relaxed) {
        Outcome::Stopped
    } else {
        Outcome::Exhausted
    }
}

fn scan_share(
    m: &Midstate,
    first: u32,
    last: u32,
    stop: &AtomicBool,
    found: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Option<u32> {
    let mut start = first;
    loop {
        if stop.load(Ordering::Relaxed) || found.load(Ordering::Relaxed) {
            return None;
        }
        let end = start.saturating_add(CHUNK - 1).min(last);
        if let Some(n) = m.scan(start, end) {
            progress(u64::from(n - start) + 1);
            found.store(true, Ordering::Relaxed);
            return Some(n);
        }
        progress(u64::from(end - start) + 1);
        if end == last {
            return None;
        }
        start = end + 1;
    }
}
