//! Engine throughput on the example protocol: events per second of wall time.
//! `servent sim run pingpong --nodes 100000` is the headline measurement; this criterion
//! benchmark tracks the same code path at a size that repeats quickly.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn engine(c: &mut Criterion) {
    let probe = servent_sim::pingpong::run(2_000, 1, false);
    let mut g = c.benchmark_group("sim");
    g.throughput(Throughput::Elements(probe.events));
    g.sample_size(10);
    g.bench_function("pingpong_2000_nodes", |b| {
        b.iter(|| servent_sim::pingpong::run(2_000, 1, false))
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
