//! A block's script checks on several threads (feature `runtime`): the
//! driver-side companion of [`UtxoView::connect_block_with`]. The only
//! other file of this crate that owns threads is the miner's, so this one
//! opts out of the crate's thread rule at its top.
//!
//! [`UtxoView::connect_block_with`]: crate::core::block::UtxoView::connect_block_with
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use secp256k1::{Secp256k1, VerifyOnly};

use crate::Params;
use crate::core::block::{
    BlockError, Connected, ScriptCheck, UtxoView, check_block, run_script_checks,
};
use crate::core::script::Flags;
use crate::wire::Block;

/// Checks a thread takes at a time (most inputs of a block are cheap, a
/// few carry signatures: small batches keep the threads even).
const BATCH: usize = 16;

/// Run `checks` on `threads` threads (at least one). Same result as
/// [`run_script_checks`] on one thread: the total of ECDSA verifications,
/// or the error of the first failing check in list order (checks after a
/// known failure are skipped, those before it all run).
pub fn run_script_checks_parallel(
    checks: &[ScriptCheck<'_>],
    threads: usize,
    secp: &Secp256k1<VerifyOnly>,
) -> Result<usize, BlockError> {
    let threads = threads
        .clamp(1, 256)
        .min(checks.len().div_ceil(BATCH).max(1));
    if threads == 1 {
        return run_script_checks(checks, secp);
    }
    let next = AtomicUsize::new(0);
    let first_fail = AtomicUsize::new(usize::MAX);
    let failure: Mutex<Option<(usize, BlockError)>> = Mutex::new(None);
    let work = || {
        let mut sigs = 0;
        loop {
            let start = next.fetch_add(BATCH, Ordering::Relaxed);
            if start >= checks.len() {
                return sigs;
            }
            for (i, c) in checks.iter().enumerate().skip(start).take(BATCH) {
                if i >= first_fail.load(Ordering::Relaxed) {
                    return sigs;
                }
                match c.run(secp) {
                    Ok(n) => sigs += n,
                    Err(e) => {
                        first_fail.fetch_min(i, Ordering::Relaxed);
                        let mut f = failure.lock().unwrap_or_else(|p| p.into_inner());
                        if f.as_ref().is_none_or(|(at, _)| i < *at) {
                            *f = Some((i, e));
                        }
                        return sigs;
                    }
                }
            }
        }
    };
    let total: usize = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = work();
        mine + others
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .sum::<usize>()
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(total),
    }
}

/// `check_block` then `connect_block` of `b` at `height`, with the same
/// result (on error the view is unchanged), on `threads` threads:
/// `check_block` runs on a second thread while this one connects the
/// block's values, and the script checks, which start only once
/// `check_block` has passed, are shared by `threads` threads.
#[allow(clippy::too_many_arguments)]
pub fn validate_block(
    view: &mut UtxoView,
    b: &Block,
    height: u32,
    params: &Params,
    flags: Flags,
    now: i64,
    threads: usize,
    secp: &Secp256k1<VerifyOnly>,
) -> Result<Connected, BlockError> {
    if threads <= 1 {
        check_block(b, params, now)?;
        return view.connect_block_with(b, height, params, flags, |c| run_script_checks(c, secp));
    }
    std::thread::scope(|s| {
        let mut context_free = Some(s.spawn(|| check_block(b, params, now)));
        let mut join = || {
            context_free.take().map_or(Ok(()), |h| {
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        };
        let r = view.connect_block_with(b, height, params, flags, |checks| {
            join()?;
            run_script_checks_parallel(checks, threads, secp)
        });
        // `check_block` comes first, as in the serial order.
        join()?;
        r
    })
}
