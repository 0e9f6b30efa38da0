//! Runs one measured DHT simulation and prints its figures:
//! `cargo run --release -p servent-kademlia --example kademlia_sim -- NODES [SEED] [KEY=VALUE ...]`
//! with the `kademlia` scenario's parameters (`loss=0.1`, `churn=1`, `lookups=400`,
//! `retries=3`, `timeout_ms=1000`, `min_timeout_ms=1000` for the fixed-timeout reference).

use servent_kademlia::scenario::{LookupRun, PARAMS, run_lookups};
use servent_sim::ScenarioOpts;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes: usize = args.first().map_or(Ok(1000), |s| s.parse())?;
    let seed: u64 = args.get(1).map_or(Ok(1), |s| s.parse())?;
    let mut opts = ScenarioOpts::new(Some(nodes), seed, std::path::PathBuf::from("."));
    for kv in args.iter().skip(2) {
        let (k, v) = kv.split_once('=').ok_or("parameters are KEY=VALUE")?;
        opts = opts.with_param(k, v);
    }
    opts.check_params(PARAMS)?;
    let p = LookupRun::from_params(nodes, &opts)?;
    #[allow(clippy::disallowed_methods)] // wall time, outside the cores
    let t = std::time::Instant::now();
    let r = run_lookups(&p);
    let mut lat = r.latency_ms.clone();
    lat.sort_by(f64::total_cmp);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "nodes={} loss={} churn/h={} find_success={:.4} ({}/{}) get_success={:.4} ({}/{}) hops={:.2} rpcs={:.1} lat_p50={:.0}ms lat_p90={:.0}ms stored_at={:.1} leaves={} joins={} joins_ok={} datagrams={} events={} wall={:.1}s rss_mib={}",
        p.nodes,
        p.loss,
        p.churn_per_hour,
        r.find_success(),
        r.find_ok,
        r.find_total,
        r.get_success(),
        r.get_ok,
        r.get_total,
        mean(&r.hops),
        mean(&r.rpcs),
        servent_sim::percentile(&lat, 50.0),
        servent_sim::percentile(&lat, 90.0),
        mean(&r.stored_at),
        r.leaves,
        r.joins,
        r.joins_ok,
        r.datagrams,
        r.sim_events,
        t.elapsed().as_secs_f64(),
        servent_sim::rss_bytes().unwrap_or(0) >> 20
    );
    Ok(())
}
