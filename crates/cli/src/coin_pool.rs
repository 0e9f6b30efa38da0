//! `servent coin pool` (a Stratum v1 pool on top of a node) and `servent coin mine --pool`
//! (our miner as a Stratum client), plus the demo's pool section ([`demo_pool`]).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use servent_coin::driver::miner::{MinerCounters, MinerOptions, MinerReport};
use servent_coin::driver::pool::{PoolNews, PoolOptions};
use servent_coin::hash_hex;

use crate::common;

fn parse_difficulty(s: &str) -> Result<f64, String> {
    let d: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (e.g. 0.0000000003 or 3e-10)"))?;
    if !(d.is_finite() && d > 0.0) {
        return Err(format!("{s}: a difficulty is a positive number"));
    }
    Ok(d)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=100.0).contains(&p) {
        return Err(format!("{s}: expected 0..=100"));
    }
    Ok(p)
}

#[derive(Args, Debug)]
pub struct PoolCmd {
    /// The node's RPC address (`servent coin node --rpc`).
    #[arg(long)]
    node: SocketAddr,
    /// Stratum address miners connect to.
    #[arg(long)]
    listen: SocketAddr,
    /// Serve the pool page here: `/` (HTML) and `/stats.json` (miners, accepted and
    /// rejected shares by reason, estimated hash rates, blocks found, payouts).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Share difficulty, below the network's (a fraction on regtest, whose difficulty is
    /// about 4.66e-10) [default: half the network difficulty].
    #[arg(long, value_parser = parse_difficulty)]
    share_difficulty: Option<f64>,
    /// PPLNS window: rewards are split over the last N accepted shares (1..=1000000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    window: u64,
    /// Pool fee in percent of each block's coinbase value, paid to --fee-address.
    #[arg(long, default_value_t = 0.0, value_parser = parse_percent, requires = "fee_address")]
    fee_percent: f64,
    /// The P2PKH address the fee is paid to.
    #[arg(long)]
    fee_address: Option<String>,
    /// Most miner connections at once.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    max_connections: u64,
}

fn payouts_text(p: &[(String, i64)]) -> String {
    p.iter()
        .map(|(a, v)| format!("{a} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(cmd: PoolCmd) -> Result<()> {
    let mut opts = PoolOptions::new(cmd.node, cmd.listen);
    opts.http = cmd.http;
    opts.share_difficulty = cmd.share_difficulty;
    opts.window = cmd.window as usize;
    opts.fee_percent = cmd.fee_percent;
    opts.fee_address = cmd.fee_address;
    opts.max_connections = cmd.max_connections as usize;
    let mut pool = servent_coin::driver::pool::start(opts)
        .await
        .context("starting the pool")?;
    println!("stratum {}", pool.stratum);
    if let Some(h) = pool.http {
        println!("http {h}");
    }
    println!("network {}", pool.network);
    println!(
        "share difficulty {:e} (network {:e})",
        pool.share_difficulty, pool.network_difficulty
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let handle = pool.handle();
    let mut blocks = 0u64;
    loop {
        tokio::select! {
            _ = common::stop_signal() => break,
            news = pool.news.recv() => {
                let Some(news) = news else { break };
                match news {
                    PoolNews::BlockFound { height, hash, user, payouts, rejected: None } => {
                        blocks += 1;
                        println!(
                            "block {} height {height} found by {user}, paid to {} miners: {}",
                            hash_hex(&hash),
                            payouts.len(),
                            payouts_text(&payouts)
                        );
                    }
                    PoolNews::BlockFound { height, hash, rejected: Some(r), .. } => {
                        println!("block {} height {height} refused by the node: {r}", hash_hex(&hash));
                    }
                    PoolNews::Connected { session, peer } => println!("miner {session} connected from {peer}"),
                    PoolNews::Disconnected { session } => println!("miner {session} disconnected"),
                    PoolNews::NewTip { .. } => {}
                }
                let _ = std::io::stdout().flush();
            }
        }
    }
    let stats = handle.stats().await.unwrap_or_default();
    println!(
        "accepted {} rejected {} blocks {blocks}",
        stats["accepted"],
        stats["rejected"].as_object().map_or(0, |m| m
            .values()
            .filter_map(serde_json::Value::as_u64)
            .sum::<u64>())
    );
    pool.stop();
    println!("stopped");
    Ok(())
}

fn print_report(r: &MinerReport) {
    println!("shares accepted {} rejected {}", r.accepted, r.rejected);
    for (why, n) in &r.rejected_by {
        println!("rejected {n}: {why}");
    }
    println!(
        "hashes {} in {:.2} s, {:.0} H/s",
        r.hashes,
        r.seconds,
        r.hash_rate()
    );
}

/// `servent coin mine --pool ADDR --user NAME [--shares N]`.
pub async fn mine_pool(
    pool: SocketAddr,
    user: String,
    threads: usize,
    shares: Option<u64>,
) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(MinerCounters::default());
    let started = Instant::now();
    let (s2, c2) = (stop.clone(), counters.clone());
    let terminal = common::stdout_is_terminal();
    let shower = tokio::spawn(async move {
        let mut last = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if terminal || last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                let h = c2.hashes.load(Ordering::Relaxed);
                eprint!(
                    "\rmining for {pool}: shares accepted {} rejected {}, {:.0} H/s   ",
                    c2.accepted.load(Ordering::Relaxed),
                    c2.rejected.load(Ordering::Relaxed),
                    h as f64 / started.elapsed().as_secs_f64().max(1e-3)
                );
                if !terminal {
                    eprintln!();
                }
            }
        }
    });
    let s3 = stop.clone();
    let ctrl_c = tokio::spawn(async move {
        common::stop_signal().await;
        s3.store(true, Ordering::Relaxed);
    });
    println!("mining for pool {pool} as {user} on {threads} threads");
    let r = servent_coin::driver::miner::run(
        MinerOptions {
            pool,
            user,
            password: "x".into(),
            threads,
            max_shares: shares,
        },
        s2,
        counters,
    )
    .await;
    shower.abort();
    ctrl_c.abort();
    eprintln!();
    let r = r.with_context(|| format!("mining for the pool at {pool}"))?;
    print_report(&r);
    Ok(())
}

/// The demo's pool section: a regtest node, a pool on it, and three in-process miners with
/// 1, 2 and 3 threads mining for `seconds`; rows show the shares each got accepted, the blocks
/// found, and that each block's coinbase (read back from the node) splits the reward in
/// proportion to the PPLNS window's shares, to the satoshi.
pub async fn demo_pool(out: &Path, seconds: u64) -> Result<crate::demo::DemoSection> {
    use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
    use servent_coin::driver::{NodeOptions, start};
    let mut sec = crate::demo::DemoSection::new("Coin pool (Stratum v1, PPLNS)");
    let dir = out.join("coin-pool");
    let _ = std::fs::remove_dir_all(&dir);
    let node = start(NodeOptions {
        params: servent_coin::Params::regtest(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data: dir.join("node"),
        peers: vec![],
        rpc: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        redial: Duration::from_secs(5),
    })
    .await?;
    let rpc = node.rpc.context("the node's RPC address")?;
    let mut opts = PoolOptions::new(rpc, SocketAddr::from(([127, 0, 0, 1], 0)));
    opts.window = 1_000_000;
    let mut pool = servent_coin::driver::pool::start(opts).await?;
    let handle = pool.handle();
    let users: Vec<String> = (1..=3u8)
        .map(|i| p2pkh_address(REGTEST_P2PKH, &[0x50 + i; 20]))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let mut miners = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let opts = MinerOptions {
            pool: pool.stratum,
            user: format!("{u}.demo{}", i + 1),
            password: "x".into(),
            threads: i + 1,
            max_shares: None,
        };
        let (stop, counters) = (stop.clone(), Arc::new(MinerCounters::default()));
        miners.push(tokio::spawn(servent_coin::driver::miner::run(
            opts, stop, counters,
        )));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reports = Vec::new();
    for m in miners {
        reports.push(m.await.context("miner task")??);
    }
    // Let the last submissions and verdicts settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = handle.stats().await?;
    pool.stop();
    while pool.news.try_recv().is_ok() {}

    let accepted: Vec<u64> = reports.iter().map(|r| r.accepted).collect();
    let total: u64 = accepted.iter().sum();
    let blocks = stats["blocks_found"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = stats["blocks"].as_u64().unwrap_or(0);
    let on_chain = stats["blocks_accepted"].as_u64().unwrap_or(0);
    sec.row(
        format!("3 Stratum miners (1, 2, 3 threads) on one pool for {seconds} s"),
        format!(
            "shares accepted {} / {} / {} ({:.0} / {:.0} / {:.0} H/s); {} blocks found, {} accepted by the node",
            accepted[0],
            accepted[1],
            accepted[2],
            reports[0].hash_rate(),
            reports[1].hash_rate(),
            reports[2].hash_rate(),
            found,
            on_chain
        ),
        total > 0 && on_chain > 0,
    );
    // The newest block the node took: its coinbase, read back from the node.
    let mut checked = None;
    if let Some(b) = blocks
        .iter()
        .find(|b| b["accepted_by_node"] == serde_json::json!(true))
    {
        let hash = b["hash"].as_str().unwrap_or("").to_string();
        let block = servent_coin::driver::pool::rpc_call(
            rpc,
            "getblock",
            serde_json::json!([hash.clone(), 2]),
        )
        .await?;
        let outs = block["tx"][0]["vout"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let sats: Vec<i64> = outs
            .iter()
            .map(|o| (o["value"].as_f64().unwrap_or(0.0) * 1e8).round() as i64)
            .collect();
        let value: i64 = b["value"].as_i64().unwrap_or(0);
        let weights: Vec<(String, u64)> = b["weights"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        let wsum: u64 = weights.iter().map(|w| w.1).sum();
        let mut exact = sats.iter().sum::<i64>() == value && wsum > 0;
        let mut parts = Vec::new();
        for (i, u) in users.iter().enumerate() {
            let w = weights.iter().find(|(a, _)| a == u).map_or(0, |w| w.1);
            let paid: i64 = b["payouts"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter(|p| p["address"].as_str() == Some(u))
                .filter_map(|p| p["sat"].as_i64())
                .sum();
            let fair = (i128::from(value) * i128::from(w) / i128::from(wsum.max(1))) as i64;
            exact &= paid >= fair && paid - fair < weights.len() as i64;
            parts.push(format!(
                "miner {}: {w} shares ({:.1}%) → {paid} sat ({:.1}%)",
                i + 1,
                100.0 * w as f64 / wsum.max(1) as f64,
                100.0 * paid as f64 / value.max(1) as f64
            ));
        }
        checked = Some(exact);
        sec.row(
            format!(
                "coinbase of block {} (height {}) read back from the node",
                &hash[..16.min(hash.len())],
                b["height"]
            ),
            format!(
                "{} of {value} sat: {}",
                sats.iter().sum::<i64>(),
                parts.join("; ")
            ),
            exact,
        );
    }
    if checked.is_none() {
        sec.row(
            "coinbase split in proportion to shares",
            "no block was found and accepted",
            false,
        );
    }
    sec.notes.push(
        "A Stratum v1 pool on a regtest node: miners subscribe and authorize with their \
         address, the pool hands out jobs whose coinbase pays the last N accepted shares \
         (PPLNS) in proportion, checks each share (stale, duplicate, low difficulty, ntime) \
         and submits shares that meet the network target as blocks. On regtest the network \
         difficulty is so low that about every other share is a block."
            .into(),
    );
    drop(node);
    Ok(sec)
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_demo_pool_splits_a_found_block_in_proportion_to_shares() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let sec = super::demo_pool(dir.path(), 3)
            .await
            .expect("the demo runs");
        for r in &sec.rows {
            println!("{}: {}", r.check, r.result);
            assert!(r.ok, "{}: {}", r.check, r.result);
        }
        assert_eq!(sec.rows.len(), 2);
    }
}
