//! The same seed gives the same run, event for event; another seed gives another run.

use servent_core::rng::seed_from_env;

#[test]
fn same_seed_gives_identical_event_trace() {
    let seed = seed_from_env(42);
    eprintln!("seed {seed} (replay with SERVENT_SEED={seed})");
    let a = servent_sim::pingpong::run(500, seed, true);
    let b = servent_sim::pingpong::run(500, seed, true);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a, b);
    let c = servent_sim::pingpong::run(500, seed ^ 1, true);
    assert_ne!(a.trace_hash, c.trace_hash);
    // And the run did real work: almost every ping to a live node over a lossy network is answered.
    assert!(
        a.pongs as f64 > 0.9 * a.pings as f64,
        "{} of {}",
        a.pongs,
        a.pings
    );
    assert_eq!(a.pongs + a.lost, a.pings);
}
