//! Decode + route throughput of the sans-IO core, in descriptors per second on one core.
//!
//! A servent with 5 established connections receives, in 64 KiB reads, a stream of typical
//! Queries (TTL 3, forwarded to the 4 other connections) and, for each, a QueryHit with three
//! results coming back from another connection (routed to the querier). Everything is
//! framed, decoded, checked against the route table and re-encoded for forwarding; the
//! transmits are drained. The goal in the issue is 2 million descriptors/s.

use std::net::SocketAddr;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use servent_core::{ConnId, Core, Input, Instant, Rng};
use servent_gnutella::wire::{Body, CONNECT_04, HitFlags, HitRecord, Query, QueryHit, Trailer};
use servent_gnutella::{Config, Guid, Message, Servent};

const PAIRS: usize = 10_000;

fn servent() -> (Servent, Vec<ConnId>) {
    let cfg = Config::new(Guid([0xee; 16]), "127.0.0.1:6346".parse().unwrap());
    let mut s = Servent::new(cfg, Rng::new(1));
    let mut conns = Vec::new();
    for i in 0..5u64 {
        let conn = ConnId::inbound(i);
        let peer: SocketAddr = format!("127.0.0.{}:6346", i + 2).parse().unwrap();
        s.handle_input(Instant::ZERO, Input::Connected { conn, peer });
        s.handle_input(
            Instant::ZERO,
            Input::Received {
                conn,
                data: CONNECT_04,
            },
        );
        conns.push(conn);
    }
    while s.poll_transmit().is_some() {}
    while s.poll_event().is_some() {}
    (s, conns)
}

fn streams() -> (Vec<u8>, Vec<u8>) {
    let mut queries = Vec::new();
    let mut hits = Vec::new();
    for i in 0..PAIRS as u64 {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_le_bytes());
        id[8] = 0xff;
        Message {
            id: Guid(id),
            ttl: 3,
            hops: 1,
            body: Body::Query(Query {
                min_speed: Query::FLAGGED,
                criteria: b"pixies debaser".to_vec(),
                extensions: vec![],
            }),
        }
        .encode_into(&mut queries);
        Message {
            id: Guid(id),
            ttl: 4,
            hops: 1,
            body: Body::QueryHit(QueryHit {
                port: 6346,
                ip: "10.1.2.3".parse().unwrap(),
                speed: 1000,
                results: (0..3)
                    .map(|k| HitRecord {
                        index: k,
                        size: 4_000_000 + k,
                        name: format!("Pixies - Debaser (take {k}).mp3").into_bytes(),
                        extension: vec![],
                    })
                    .collect(),
                trailer: Some(Trailer::ours(HitFlags {
                    push: Some(false),
                    ..HitFlags::default()
                })),
                servent_id: Guid([7; 16]),
            }),
        }
        .encode_into(&mut hits);
    }
    (queries, hits)
}

fn route(c: &mut Criterion) {
    let (queries, hits) = streams();
    let mut g = c.benchmark_group("gnutella_core");
    g.throughput(Throughput::Elements(2 * PAIRS as u64));
    g.sample_size(20);
    g.bench_function("decode_route_query_and_queryhit", |b| {
        b.iter_batched(
            servent,
            |(mut s, conns)| {
                let now = Instant::from_secs(1);
                for chunk in queries.chunks(64 * 1024) {
                    s.handle_input(
                        now,
                        Input::Received {
                            conn: conns[0],
                            data: chunk,
                        },
                    );
                    while s.poll_transmit().is_some() {}
                }
                for chunk in hits.chunks(64 * 1024) {
                    s.handle_input(
                        now,
                        Input::Received {
                            conn: conns[1],
                            data: chunk,
                        },
                    );
                    while s.poll_transmit().is_some() {}
                }
                assert_eq!(s.stats().queries_seen, PAIRS as u64);
                assert_eq!(s.stats().tx[4], PAIRS as u64);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
