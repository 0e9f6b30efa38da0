//! Simulator throughput: the example protocol at N nodes, events per second of wall time
//! (`cargo run --release -p servent-sim --example pp_events -- 100000`).
#![allow(clippy::disallowed_methods)] // an example measures wall time
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let t = std::time::Instant::now();
    let r = servent_sim::pingpong::run(n, 1, false);
    let s = t.elapsed().as_secs_f64();
    println!(
        "nodes={n} events={} secs={s:.3} events_per_s={:.0}",
        r.events,
        r.events as f64 / s
    );
}
