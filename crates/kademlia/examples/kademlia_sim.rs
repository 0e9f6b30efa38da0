//! Runs one measured DHT simulation and prints its figures:
//! `cargo run --release -p servent-kademlia --example kademlia_sim -- NODES [LOSS] [CHURN_PER_HOUR] [SEED]`
//! (environment: `KAD_RETRIES`, `KAD_TIMEOUT_MS`, `KAD_MIN_TIMEOUT_MS`, `KAD_LOOKUPS`).

use servent_kademlia::scenario::{LookupRun, run_lookups};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let mut p = LookupRun::new(arg(1, 1000.0) as usize, arg(4, 1.0) as u64);
    p.loss = arg(2, 0.0);
    p.churn_per_hour = arg(3, 0.2);
    if let Some(r) = std::env::var("KAD_RETRIES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        p.config.retries = r;
    }
    if let Some(ms) = std::env::var("KAD_TIMEOUT_MS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        p.config.query_timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(n) = std::env::var("KAD_LOOKUPS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        p.lookups = n;
    }
    // KAD_MIN_TIMEOUT_MS=1000 turns the adaptive timeout off (the reference run)
    if let Some(ms) = std::env::var("KAD_MIN_TIMEOUT_MS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        p.config.min_query_timeout = std::time::Duration::from_millis(ms);
    }
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
}
