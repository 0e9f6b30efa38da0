//! Header hashes per second of [`servent_coin::mine::search`] (the SHA-256
//! midstate search) on `THREADS` threads, each scanning `NONCES` nonces of
//! its own header against a target no hash meets, so every nonce is hashed.
//! Prints one line: `threads nonces seconds hashes_per_second`.
//! `scripts/bench/coin-mine` runs it against OpenSSL in the same script.
//!
//!     cargo bench -p servent-coin --no-default-features --bench mine_rate -- 2 50000000
// A benchmark reads the clock and takes its arguments; threads are scoped.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use servent_coin::mine::search;
use servent_coin::wire::BlockHeader;

fn main() -> Result<()> {
    // `cargo bench` appends `--bench`: only the bare numbers are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [threads, nonces] = args.as_slice() else {
        bail!("usage: mine_rate THREADS NONCES");
    };
    let threads: u32 = threads.parse().context("THREADS")?;
    let nonces: u32 = nonces.parse().context("NONCES")?;
    let start = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            s.spawn(move || {
                let h = BlockHeader {
                    version: 0x2000_0000,
                    prev: [i as u8; 32],
                    merkle_root: [0x5a; 32],
                    time: 1_700_000_000,
                    // Target 1: no header meets it, every nonce is hashed.
                    bits: 0x0300_0001,
                    nonce: 0,
                };
                black_box(search(black_box(&h), 0..nonces))
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let total = f64::from(threads) * f64::from(nonces);
    println!("{threads} {nonces} {secs:.4} {:.0}", total / secs);
    Ok(())
}
