//! Lookups on a simulated network of 1 000 nodes with 10 % datagram loss (issue 7: success
//! at least 99 %), and the determinism of the scenario.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

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

#[test]
fn ten_million_nodes_are_refused_with_the_memory_figure_when_memory_is_short() {
    use servent_sim::{Scenario, ScenarioOpts};
    let s = servent_kademlia::scenario::KademliaScenario;
    let opts = ScenarioOpts::new(Some(10_000_000), 1, std::env::temp_dir())
        .with_param("memory_mib", 16_384);
    let Err(err) = s.run(&opts) else {
        panic!("a run past the memory limit must be refused");
    };
    let err = err.to_string();
    // 10^7 nodes at 8 KiB each: 78 189 MiB
    assert!(err.contains("78189 MiB"), "{err}");
    assert!(err.contains("16384 MiB available"), "{err}");
}

#[test]
fn scenario_knobs_are_parameters_and_typos_are_refused() {
    use servent_sim::ScenarioOpts;
    let opts = ScenarioOpts::new(Some(100), 1, std::env::temp_dir())
        .with_param("loss", 0.25)
        .with_param("min_timeout_ms", 1000);
    let p = servent_kademlia::scenario::LookupRun::from_params(100, &opts).unwrap();
    assert_eq!(p.loss, 0.25);
    assert_eq!(
        p.config.min_query_timeout,
        std::time::Duration::from_secs(1)
    );
    let bad = ScenarioOpts::new(Some(100), 1, std::env::temp_dir()).with_param("los", 0.1);
    assert!(
        bad.check_params(servent_kademlia::scenario::PARAMS)
            .is_err()
    );
    let out_of_range = ScenarioOpts::new(Some(100), 1, std::env::temp_dir()).with_param("loss", 2);
    assert!(servent_kademlia::scenario::LookupRun::from_params(100, &out_of_range).is_err());
}
