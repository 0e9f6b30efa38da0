//! `servent`: one binary for every system. `servent --help` lists them.

// A binary has no public API: `pub` in its modules only means "used by main".
#![allow(unreachable_pub)]

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

mod common;
mod demo;
mod ping;
mod sim;
// systems: one module each (keep this list and `Command` in the same order)
mod chord;
mod coin;
mod coin_electrum;
mod coin_pool;
mod coin_wallet;
mod dht;
mod gnutella;
mod napster;
mod store;
mod torrent;
mod tv;

/// servent: the classic peer-to-peer systems, for real.
#[derive(Parser, Debug)]
#[command(name = "servent", version, about, long_about = None, after_help = common::EXIT_CODES_HELP)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every implemented system on 127.0.0.1, print a summary table and write an HTML report.
    Demo {
        /// Where to write report.html, CSV files and plots.
        #[arg(
            short = 'o',
            long = "output",
            alias = "out",
            default_value = "servent-report"
        )]
        out: PathBuf,
    },
    /// The deterministic simulator: list and run scenarios.
    Sim(sim::Cmd),
    /// The example protocol over real sockets: a reachability and latency check.
    Ping(ping::Cmd),
    /// Chord: run a ring member; lookup (route hop by hop), fingers, put/get/delete, ring.
    Chord(chord::Cmd),
    /// The Bitcoin-compatible coin: run a regtest node, mine, status; validate real blocks.
    Coin(coin::Cmd),
    /// Mainline DHT (BEP 5): run a node; lookup/announce an info-hash; stats.
    Dht(dht::Cmd),
    /// Gnutella 0.4: run a servent; search, get (direct or through Push), peers, stats.
    Gnutella(gnutella::Cmd),
    /// Napster (OpenNap): run the index server; share, search, get, browse, chat.
    Napster(napster::Cmd),
    /// Live P2P TV: broadcast a channel, run its tracker, list channels, watch and forward.
    Tv(tv::Cmd),
    /// P2P cloud storage: encrypted, erasure-coded files over the DHT (node, put, get, ls, rm).
    Store(store::Cmd),
    /// BitTorrent: create/show torrents, run a tracker, seed and download.
    Torrent(torrent::Cmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse(); // usage errors exit with 2 (clap)
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One clear line whatever RUST_BACKTRACE says; `-v` logs carry the detail.
            if let Some(nf) = e.downcast_ref::<common::NotFound>() {
                eprintln!("{nf}");
                return std::process::ExitCode::from(common::EXIT_NOT_FOUND);
            }
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        common::install_stop_signals();
        match cli.command {
            Command::Demo { out } => demo::run(&out).await,
            Command::Sim(cmd) => sim::run(cmd).await,
            Command::Ping(cmd) => ping::run(cmd).await,
            Command::Chord(cmd) => chord::run(cmd).await,
            Command::Store(cmd) => store::run(cmd).await,
            Command::Coin(cmd) => coin::run(cmd).await,
            Command::Dht(cmd) => dht::run(cmd).await,
            Command::Gnutella(cmd) => gnutella::run(cmd).await,
            Command::Napster(cmd) => napster::run(cmd).await,
            Command::Tv(cmd) => tv::run(cmd).await,
            Command::Torrent(cmd) => torrent::run(cmd).await,
        }
    })
}
