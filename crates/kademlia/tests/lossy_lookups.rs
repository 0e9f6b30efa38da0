//! Lookups on a simulated network of 1 000 nodes with 10 % datagram loss (issue 7: success
//! at least 99 %), and the determinism of the scenario.

use servent_kademlia::scenario::{LookupRun, run_lookups};

#[test]
fn thousand_nodes_with_ten_percent_loss_find_the_closest_node_99_percent_of_the_time() {
    let seed = servent_core::rng::seed_from_env(11);
    let mut p = LookupRun::new(1000, seed);
    p.loss = 0.1;
    p.churn_per_hour = 0.0;
    p.lookups = 400;
    p.announces = 40;
    let r = run_lookups(&p);
    println!("seed {seed}: {r:?}");
    assert_eq!(r.find_total, 400, "seed {seed}");
    assert!(
        r.find_success() >= 0.99,
        "seed {seed}: find_node success {}",
        r.find_success()
    );
    assert!(
        r.get_success() >= 0.99,
        "seed {seed}: get_peers success {}",
        r.get_success()
    );
}

#[test]
fn same_seed_gives_the_same_measurements() {
    let mut p = LookupRun::new(300, 3);
    p.lookups = 50;
    p.announces = 5;
    let a = run_lookups(&p);
    let b = run_lookups(&p);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
