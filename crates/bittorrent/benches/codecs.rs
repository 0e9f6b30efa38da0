#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Codec and picker speed: peer wire decoding of 16 KiB blocks (the data path), parsing a
//! large torrent, SHA-1 piece verification, and picking blocks from a 10 000-piece torrent.
//! `cargo bench -p servent-bittorrent`; criterion prints throughput figures.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use servent_bittorrent::metainfo::{Metainfo, MetainfoBuilder};
use servent_bittorrent::picker::{Bitfield, Picker};
use servent_bittorrent::storage::{MemStorage, Storage};
use servent_bittorrent::wire::{BLOCK_LEN, Message, decode_message};
use servent_core::Rng;

fn wire(c: &mut Criterion) {
    let block = vec![7u8; BLOCK_LEN as usize];
    let mut stream = Vec::new();
    for i in 0..64u32 {
        Message::Piece {
            index: i,
            begin: 0,
            data: &block,
        }
        .encode_into(&mut stream);
    }
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("decode 64 piece messages", |b| {
        b.iter(|| {
            let mut off = 0;
            let mut n = 0;
            while let Ok(Some((_, used))) = decode_message(stream.get(off..).unwrap_or_default()) {
                off += used;
                n += 1;
            }
            assert_eq!(n, 64);
        })
    });
    g.finish();
}

fn metainfo(c: &mut Criterion) {
    let b = MetainfoBuilder {
        name: "big".into(),
        files: (0..2000)
            .map(|i| {
                (
                    vec![format!("dir{}", i / 100), format!("file{i}.bin")],
                    65_536,
                )
            })
            .collect(),
        piece_length: 65_536,
        trackers: vec![vec!["http://127.0.0.1:6969/announce".into()]],
        ..Default::default()
    };
    let (bytes, _) = b.build(&vec![[1u8; 20]; 2000]).expect("valid");
    let mut g = c.benchmark_group("metainfo");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("parse 2000-file torrent", |bch| {
        bch.iter(|| Metainfo::parse(&bytes).expect("parses"))
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let mut s = MemStorage::with(vec![3u8; 1 << 20]);
    let mut g = c.benchmark_group("storage");
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("sha1 of a 1 MiB piece", |b| {
        b.iter(|| s.hash(0, 1 << 20).expect("in range"))
    });
    g.finish();
}

fn picker(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let pieces = 10_000u32;
    let mut have = Bitfield::new(pieces);
    for i in 0..10 {
        have.set(i);
    }
    let mut p = Picker::new(256 << 10, u64::from(pieces) * (256 << 10), have, &mut rng);
    for i in 0..pieces {
        for _ in 0..(i % 7) {
            p.peer_has(i);
        }
    }
    let all = Bitfield::full(pieces);
    c.bench_function(
        "picker: 16 blocks from 10 000 pieces (started piece first)",
        |b| {
            b.iter(|| {
                let r = p.pick(&all, 16, &[], None, &mut rng);
                for blk in &r {
                    p.unrequest(blk);
                }
                r.len()
            })
        },
    );
}

criterion_group!(benches, wire, metainfo, verify, picker);
criterion_main!(benches);
