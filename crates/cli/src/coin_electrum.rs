//! `servent coin electrum`: an Electrum protocol server (TCP, protocol 1.4) beside a node,
//! following it over JSON-RPC (`servent_coin::driver::electrum`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use servent_coin::driver::electrum::{ElectrumOptions, previous_tip, start};

use crate::common;

/// Serve Electrum wallets from a node: index its chain and mempool over --node's JSON-RPC
/// (scripthash histories, balances, unspent outputs, headers, merkle proofs), then answer the
/// Electrum protocol (1.4, newline-delimited JSON-RPC over TCP) on --listen, notifying
/// subscribers of new blocks and of scripts whose history changed. The index is rebuilt from
/// the node at every start; DIR keeps the last indexed tip. Runs until Ctrl-C or SIGTERM.
#[derive(Args, Debug)]
pub struct ElectrumArgs {
    /// The node's RPC address.
    #[arg(long)]
    node: SocketAddr,
    /// Address to serve Electrum clients on (TCP).
    #[arg(long)]
    listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long)]
    data: PathBuf,
    /// Seconds between polls of the node (1..=60).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=60))]
    poll: u64,
}

pub async fn run(a: ElectrumArgs) -> Result<()> {
    if let Some(h) = previous_tip(&a.data) {
        println!("previous run indexed height {h}; rebuilding the index from the node");
    }
    let began = Instant::now();
    let mut last = Instant::now();
    let mut opts = ElectrumOptions::new(a.node, a.listen, a.data.clone());
    opts.poll = Duration::from_secs(a.poll);
    let server = start(opts, |h| {
        if last.elapsed() >= Duration::from_secs(2) {
            println!("indexing: height {h}");
            last = Instant::now();
        }
    })
    .await
    .with_context(|| {
        format!(
            "starting the Electrum server (node RPC {}, data {})",
            a.node,
            a.data.display()
        )
    })?;
    match server.height() {
        Some(h) => println!(
            "indexed height {h} in {:.1} s",
            began.elapsed().as_secs_f64()
        ),
        None => println!("indexed no blocks"),
    }
    println!("electrum {}", server.local);
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    common::stop_signal().await;
    server.stop();
    println!("stopped");
    Ok(())
}
