//! Lookups per second on a 100-node Chord ring over 127.0.0.1 (real UDP sockets, one
//! process), against a reference: one-round-trip `GetFingers` requests to the same entry node,
//! interleaved A B A B, medians of 5 rounds. Prints the figures and writes
//! `chord-bench/loopback.csv` under cargo's target temp dir (`CARGO_TARGET_TMPDIR`).
//!
//! `cargo bench -p servent-chord --features runtime --bench loopback`

// A benchmark, not a core: it may touch the clock and the disk.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use servent_chord::driver::{Client, Member, MemberOpts, start_member};
use servent_core::Id;

const NODES: usize = 100;
const CLIENTS: usize = 8;
const PER_CLIENT: usize = 250;
const ROUNDS: usize = 5;

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

async fn phase(entry: SocketAddr, round: usize, lookups: bool) -> f64 {
    let t0 = now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::spawn(async move {
            let Ok(mut cl) = Client::new(entry).await else {
                return 0usize;
            };
            let mut ok = 0;
            for k in 0..PER_CLIENT {
                let r = if lookups {
                    let key = Id::hash(format!("{round}-{c}-{k}").as_bytes());
                    cl.lookup(entry, key).await.is_ok()
                } else {
                    cl.fingers(entry).await.is_ok()
                };
                ok += usize::from(r);
            }
            let _ = cl.close().await;
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap_or(0);
    }
    ok as f64 / t0.elapsed().as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut members: Vec<Member> = Vec::new();
        for k in 0..NODES {
            let mut o = MemberOpts::new(SocketAddr::from(([127, 0, 0, 1], 0)));
            o.succ_list_len = 8;
            o.stabilize_every = Duration::from_millis(200);
            o.fix_fingers_every = Duration::from_millis(20);
            o.seed = Some(k as u64);
            o.bootstrap = members.first().map(|m| m.me.addr).into_iter().collect();
            members.push(start_member(o).await.expect("member"));
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let entry = members[0].me.addr;
        let (mut lk, mut rf) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            lk.push(phase(entry, round, true).await);
            rf.push(phase(entry, round, false).await);
        }
        let mut csv = String::from("round,lookups_per_s,getfingers_per_s\n");
        for (i, (a, b)) in lk.iter().zip(&rf).enumerate() {
            csv.push_str(&format!("{i},{a:.1},{b:.1}\n"));
        }
        let (ml, mr) = (median(&mut lk), median(&mut rf));
        println!("chord loopback: {NODES} nodes, {CLIENTS} concurrent clients x {PER_CLIENT} requests, {ROUNDS} interleaved rounds");
        println!("lookups/s (median)            {ml:.0}");
        println!("GetFingers/s reference (1 RTT) {mr:.0}");
        println!("ratio lookup cost / one RPC   {:.2}", mr / ml.max(1e-9));
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chord-bench");
        if std::fs::create_dir_all(&dir).is_ok() {
            let path = dir.join("loopback.csv");
            if std::fs::write(&path, csv).is_ok() {
                println!("raw numbers: {}", path.display());
            }
        }
        for m in members {
            let _ = m.kill().await;
        }
    });
}
