//! `servent ping`: the example protocol over real sockets — a reachability and latency
//! check between two machines (or network namespaces), and the smallest end-to-end run of
//! the core/driver contract.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};
use servent_runtime::{NodeConfig, spawn};

/// Ping commands.
#[derive(Args, Debug)]
#[command(after_help = crate::common::EXIT_CODES_HELP)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Answer pings on UDP and TCP at ADDR until interrupted.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Serve {
        /// Address for both the UDP socket and the TCP listener.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
    },
    /// Ping a `servent ping serve` node; prints one line per ping; exit status 1 when any is lost.
    #[command(after_help = crate::common::EXIT_CODES_HELP)]
    Send {
        /// The node's address.
        to: SocketAddr,
        /// Use a TCP connection per ping instead of UDP datagrams.
        #[arg(long)]
        tcp: bool,
        /// How many pings (1..=1000000).
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        count: u64,
        /// How long to wait for each answer (500ms, 2s, 1m).
        #[arg(long, default_value = "2s", value_parser = crate::common::parse_duration)]
        timeout: Duration,
    },
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Serve { listen } => {
            let cfg = NodeConfig {
                udp: Some(listen),
                tcp: Some(listen),
                ..NodeConfig::default()
            };
            let mut node = spawn(cfg, |_| PingPong::new(Duration::from_secs(2)))
                .await
                .with_context(|| format!("listening on {listen}"))?;
            println!("answering pings on {listen} (udp and tcp); Ctrl-C stops");
            let started = std::time::Instant::now();
            let mut answered = 0u64;
            let stop = crate::common::stop_signal();
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    e = node.next_event() => match e {
                        Some(PingEvent::Pinged { from }) => {
                            answered += 1;
                            tracing::info!(%from, "pinged");
                        }
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            node.shutdown().await?;
            println!(
                "stopped: answered {answered} ping{} in {}",
                if answered == 1 { "" } else { "s" },
                crate::common::fmt_duration(started.elapsed())
            );
            Ok(())
        }
        Action::Send {
            to,
            tcp,
            count,
            timeout,
        } => {
            if timeout.is_zero() {
                bail!("--timeout must be longer than 0");
            }
            let local: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
            let cfg = NodeConfig {
                udp: Some(local),
                ..NodeConfig::default()
            };
            let mut node = spawn(cfg, |_| PingPong::new(timeout)).await?;
            let transport = if tcp {
                Transport::Stream
            } else {
                Transport::Datagram
            };
            let mut lost = 0;
            let mut rtts: Vec<f64> = Vec::new();
            for id in 0..count {
                node.command(Ping { id, to, transport }).await?;
                loop {
                    match node.next_event().await {
                        Some(PingEvent::Pong { id, rtt }) => {
                            let ms = rtt.as_secs_f64() * 1e3;
                            rtts.push(ms);
                            println!("pong {id} from {to}: {ms:.3} ms");
                            break;
                        }
                        Some(PingEvent::Pinged { .. }) => {}
                        Some(other) => {
                            println!("{} ({to})", other.kind());
                            lost += 1;
                            break;
                        }
                        None => bail!("the node stopped"),
                    }
                }
            }
            node.shutdown().await?;
            let (min, max) = rtts.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
            if rtts.is_empty() {
                println!("{count} sent, 0 answered");
            } else {
                let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
                println!(
                    "{count} sent, {} answered, rtt min/avg/max {min:.3}/{avg:.3}/{max:.3} ms",
                    rtts.len()
                );
            }
            if lost > 0 {
                bail!("{lost} of {count} pings got no answer");
            }
            Ok(())
        }
    }
}
