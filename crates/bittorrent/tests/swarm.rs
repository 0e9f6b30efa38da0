#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! The swarm core under the simulator: a tracker, a seeder and leechers.

use std::time::Duration;

use servent_bittorrent::swarm::{SwarmParams, run_swarm};

fn params(leechers: usize, seed: u64) -> SwarmParams {
    SwarmParams {
        leechers,
        content: 1 << 20,
        piece_length: 64 << 10,
        seeder_up: 1_000_000,
        leecher_up: 500_000,
        leecher_down: 2_000_000,
        seed,
        limit: Duration::from_secs(600),
        liars: 0,
        super_seed: false,
    }
}

#[test]
fn every_leecher_completes_with_every_piece_verified() {
    let r = run_swarm(&params(8, 1));
    assert_eq!(r.completions.len(), 8, "{r:?}");
    assert!(r.all_verified);
    assert_eq!(r.failed_pieces, 0);
    // Peers share: the seeder sent far fewer than one copy per leecher.
    let copies = r.seeder_uploaded as f64 / f64::from(1 << 20);
    assert!(copies < 6.0, "seeder sent {copies} copies");
    assert!(r.last() >= r.bound, "nothing beats the fluid bound");
}

#[test]
fn same_seed_gives_the_same_run() {
    let a = run_swarm(&params(4, 7));
    let b = run_swarm(&params(4, 7));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.completions, b.completions);
}

#[test]
fn senders_of_bad_pieces_are_banned_and_the_download_still_completes() {
    let mut p = params(4, 3);
    p.liars = 2;
    let r = run_swarm(&p);
    assert_eq!(r.completions.len(), 4, "{r:?}");
    assert!(r.all_verified);
    assert!(r.failed_pieces > 0, "the liars' data was caught");
    assert!(r.bans > 0, "and they were banned");
}

#[test]
fn a_super_seeding_seeder_sends_fewer_copies_and_everyone_still_completes() {
    let plain = run_swarm(&params(12, 5));
    let mut p = params(12, 5);
    p.super_seed = true;
    let sup = run_swarm(&p);
    assert_eq!(sup.completions.len(), 12, "{sup:?}");
    assert!(sup.all_verified);
    let copies =
        |r: &servent_bittorrent::swarm::SwarmRun| r.seeder_uploaded as f64 / f64::from(1 << 20);
    assert!(
        copies(&sup) < copies(&plain),
        "super-seeding {} copies, plain {}",
        copies(&sup),
        copies(&plain)
    );
}
