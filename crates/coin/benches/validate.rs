//! Whole validation of mainnet block 367 891 (999 994 bytes, 20 817
//! inputs, 824 signature checks) against the bare time of its 824
//! `secp256k1` verifications on one thread, the floor. Interleaved rounds:
//!   floor     the 824 (message, signature, key) triples, verified in a loop;
//!   whole-1   `check_block` + `connect_block` (scripts on this thread);
//!   whole-2   `parallel::validate_block` on 2 threads: `check_block` beside
//!             the connect loop, then the script checks on both threads.
//! Each round validates against a fresh copy of the spent outputs (copied
//! outside the timing). Prints one CSV line per round and measurement:
//! `round,what,wall_s,cpu_s`, where `cpu_s` is this (the calling) thread's
//! time on a CPU (/proc/thread-self/schedstat, ns): on a shared machine it
//! is what the work costs, and for whole-2 it is the critical path (the
//! caller validates, then takes batches of checks like the other thread,
//! so the two finish within one batch of each other).
//! `scripts/bench/coin-validate` takes the medians.
//!
//!     cargo bench -p servent-coin --features runtime --bench validate -- 15
// A benchmark reads the clock, its data files and its arguments.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

#[path = "../tests/support/data.rs"]
mod data;

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use secp256k1::ecdsa::Signature;
use secp256k1::{Message, PublicKey, Secp256k1, VerifyOnly};
use servent_coin::Params;
use servent_coin::core::block::{check_block, script_flags};
use servent_coin::core::script::{SignatureChecker, TxChecker, verify_script};
use servent_coin::parallel::validate_block;

const HEIGHT: u32 = 367_891;

/// A checker that keeps what it handed to libsecp256k1.
struct Recorder<'a> {
    inner: TxChecker<'a>,
    seen: &'a mut Vec<(Message, Signature, PublicKey)>,
}

impl SignatureChecker for Recorder<'_> {
    fn check_ecdsa(&mut self, sig: &[u8], pubkey: &[u8], script_code: &[u8]) -> bool {
        if let Some(parts) = self.inner.ecdsa_inputs(sig, pubkey, script_code) {
            self.seen.push(parts);
        }
        self.inner.check_ecdsa(sig, pubkey, script_code)
    }
    fn check_lock_time(&self, lock_time: i64) -> bool {
        self.inner.check_lock_time(lock_time)
    }
    fn check_sequence(&self, sequence: i64) -> bool {
        self.inner.check_sequence(sequence)
    }
}

/// This thread's time on a CPU so far, in seconds.
fn thread_cpu() -> Result<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").context("schedstat")?;
    let ns: u64 = s
        .split_whitespace()
        .next()
        .context("schedstat field")?
        .parse()
        .context("schedstat ns")?;
    Ok(ns as f64 / 1e9)
}

fn floor(triples: &[(Message, Signature, PublicKey)], secp: &Secp256k1<VerifyOnly>) -> usize {
    triples
        .iter()
        .filter(|(m, s, k)| secp.verify_ecdsa(black_box(m), s, k).is_ok())
        .count()
}

fn main() -> Result<()> {
    let rounds: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(15), |a| a.parse())
        .context("ROUNDS")?;
    let (block, _, view) = data::block_367891();
    let p = Params::mainnet();
    let flags = script_flags(&p, HEIGHT, block.header.time);
    let now = i64::from(block.header.time);
    let secp = Secp256k1::verification_only();

    // The floor's inputs, recorded from one validation.
    let mut triples = Vec::new();
    let mut v = view.clone();
    v.connect_block_with(&block, HEIGHT, &p, flags, |checks| {
        for c in checks {
            let script_sig = &c.tx.inputs[c.input].script_sig;
            let mut r = Recorder {
                inner: TxChecker::new(c.tx, c.input, &secp),
                seen: &mut triples,
            };
            verify_script(script_sig, c.script_pubkey, c.flags, &mut r).map_err(|err| {
                servent_coin::core::block::BlockError::Script {
                    tx: c.tx_index,
                    input: c.input,
                    err,
                }
            })?;
        }
        Ok(0)
    })
    .context("block 367891 validates")?;
    ensure!(triples.len() == 824, "{} signature checks", triples.len());
    ensure!(floor(&triples, &secp) == 824, "every signature verifies");

    println!("round,what,wall_s,cpu_s");
    for round in 1..=rounds {
        let (t, c0) = (Instant::now(), thread_cpu()?);
        black_box(floor(&triples, &secp));
        let (wall, cpu) = (t.elapsed().as_secs_f64(), thread_cpu()? - c0);
        println!("{round},floor,{wall:.6},{cpu:.6}");

        for threads in [1usize, 2] {
            let mut v = view.clone();
            let (t, c0) = (Instant::now(), thread_cpu()?);
            let c = if threads == 1 {
                check_block(&block, &p, now).context("check_block")?;
                v.connect_block(&block, HEIGHT, &p, flags, &secp)
                    .context("connect")?
            } else {
                validate_block(&mut v, &block, HEIGHT, &p, flags, now, threads, &secp)
                    .context("validate")?
            };
            let (wall, cpu) = (t.elapsed().as_secs_f64(), thread_cpu()? - c0);
            ensure!(c.sig_checks == 824);
            println!("{round},whole-{threads},{wall:.6},{cpu:.6}");
            drop(black_box(v));
        }
    }
    Ok(())
}
