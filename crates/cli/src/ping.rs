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
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Answer pings on UDP and TCP at ADDR until interrupted.
    Serve {
        /// Address for both the UDP socket and the TCP listener.
        #[arg(long, default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
    },
    /// Ping a `servent ping serve` node; prints one line per ping; exit status 1 when any is lost.
    Send {
        /// The node's address.
        to: SocketAddr,
        /// Use a TCP connection per ping instead of UDP datagrams.
        #[arg(long)]
        tcp: bool,
        /// How many pings.
        #[arg(long, default_value_t = 3)]
        count: u64,
        /// Seconds to wait for each answer.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
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
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    e = node.next_event() => match e {
                        Some(PingEvent::Pinged { from }) => tracing::info!(%from, "pinged"),
                        Some(_) => {}
                        None => break,
                    }
                }
            }
            node.shutdown().await?;
            Ok(())
        }
        Action::Send {
            to,
            tcp,
            count,
            timeout,
        } => {
            if !(timeout.is_finite() && timeout > 0.0) {
                bail!("--timeout must be a positive number of seconds");
            }
            let local: SocketAddr = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
            let cfg = NodeConfig {
                udp: Some(local),
                ..NodeConfig::default()
            };
            let mut node = spawn(cfg, |_| PingPong::new(Duration::from_secs_f64(timeout))).await?;
            let transport = if tcp {
                Transport::Stream
            } else {
                Transport::Datagram
            };
            let mut lost = 0;
            for id in 0..count {
                node.command(Ping { id, to, transport }).await?;
                loop {
                    match node.next_event().await {
                        Some(PingEvent::Pong { id, rtt }) => {
                            println!("pong {id} from {to}: {:.3} ms", rtt.as_secs_f64() * 1e3);
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
            if lost > 0 {
                bail!("{lost} of {count} pings got no answer");
            }
            Ok(())
        }
    }
}
