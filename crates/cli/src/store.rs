//! `servent store`: storage nodes and the client of the encrypted, erasure-coded P2P store
//! (`servent-store`). A put prints the capability string as its last line; whoever holds
//! it can read the object back, nobody else can.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_store::driver::client::Client;
use servent_store::driver::node::{Node, NodeOpts};
use servent_store::{Cap, Params};

use crate::common::{self, EXIT_CODES_HELP, fmt_bytes};

/// P2P cloud storage: client-side encrypted, erasure-coded files over the DHT.
#[derive(Args, Debug)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

/// How a client finds the storage nodes.
#[derive(Args, Debug, Clone)]
struct Join {
    /// A storage node (or a file of addresses) to join the DHT through.
    #[arg(long, value_name = "ADDR", required = true)]
    bootstrap: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run a storage node until Ctrl-C or SIGTERM.
    #[command(after_help = EXIT_CODES_HELP)]
    Node {
        /// TCP (shards) and UDP (DHT) address.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: std::net::SocketAddr,
        /// The folder that holds the shards.
        #[arg(long)]
        data: PathBuf,
        /// How much it may hold (e.g. 500M, 10G).
        #[arg(long, value_parser = parse_size, default_value = "1G")]
        quota: u64,
        /// A node to join the DHT through (none: the first node).
        #[arg(long, value_name = "ADDR")]
        bootstrap: Vec<String>,
    },
    /// Encrypt, erasure-code and store a file or folder; prints the capability last.
    #[command(after_help = EXIT_CODES_HELP)]
    Put {
        /// The file or folder.
        path: PathBuf,
        #[command(flatten)]
        join: Join,
        /// Shards needed to read a segment.
        #[arg(short = 'k', long, default_value_t = 4)]
        k: u16,
        /// Shards made per segment (on n distinct nodes).
        #[arg(short = 'n', long, default_value_t = 8)]
        n: u16,
        /// Plaintext bytes per segment.
        #[arg(long, value_parser = parse_size, default_value = "1M")]
        segment: u64,
        /// Remember the capability here (for `ls`).
        #[arg(long, env = "SERVENT_STORE_CAPS")]
        caps: Option<PathBuf>,
    },
    /// Read an object back into a folder.
    #[command(after_help = EXIT_CODES_HELP)]
    Get {
        /// The capability (sv1rw:… or sv1ro:…).
        cap: String,
        /// Where to write it.
        #[arg(short = 'o', long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        join: Join,
    },
    /// Without a capability: the objects put from here. With one: its files.
    #[command(after_help = EXIT_CODES_HELP)]
    Ls {
        /// A capability to list.
        cap: Option<String>,
        /// Needed with a capability.
        #[arg(long, value_name = "ADDR")]
        bootstrap: Vec<String>,
        /// The capability list.
        #[arg(long, env = "SERVENT_STORE_CAPS")]
        caps: Option<PathBuf>,
    },
    /// Delete an object (needs its read-write capability).
    #[command(after_help = EXIT_CODES_HELP)]
    Rm {
        /// The read-write capability.
        cap: String,
        #[command(flatten)]
        join: Join,
        /// The capability list to update.
        #[arg(long, env = "SERVENT_STORE_CAPS")]
        caps: Option<PathBuf>,
    },
}

/// `512`, `64K`, `10M`, `2G`, `1T` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(format!("{s:?}: unknown size suffix (K, M, G, T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 500M"))?;
    n.checked_mul(mul)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn caps_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        base.join(".local/share/servent/store-caps")
    })
}

fn remember(path: &Path, line: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    write_atomic(path, &text)
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

async fn client(join: &Join, params: Params) -> Result<Arc<Client>> {
    let addrs = common::bootstrap_addrs(&join.bootstrap)?;
    let c = Client::connect(addrs, params)
        .await
        .context("joining the storage DHT (is a `servent store node` running at --bootstrap?)")?;
    Ok(Arc::new(c))
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.action {
        Action::Node {
            listen,
            data,
            quota,
            bootstrap,
        } => {
            let bootstrap = common::bootstrap_addrs(&bootstrap)?;
            let node = Node::start(NodeOpts {
                listen,
                data: data.clone(),
                quota,
                bootstrap,
            })
            .await
            .with_context(|| format!("starting the storage node on {listen}"))?;
            println!(
                "store node {} listening on {} (data {}, {} of {} used)",
                node.id,
                node.local,
                data.display(),
                fmt_bytes(node.disk.used()),
                fmt_bytes(quota)
            );
            let stop = common::stop_signal();
            node.run(stop).await.context("running the storage node")?;
            println!("store node stopped");
            Ok(())
        }
        Action::Put {
            path,
            join,
            k,
            n,
            segment,
            caps,
        } => {
            let params = Params {
                k,
                n,
                segment_size: u32::try_from(segment).unwrap_or(u32::MAX),
            };
            params.check().context("checking -k/-n/--segment")?;
            let c = client(&join, params).await?;
            let (is_dir, sources) = Client::sources(&path)?;
            let name = path
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "object".into());
            let total: u64 = sources.iter().map(|s| s.size).sum();
            eprintln!(
                "putting {} ({} files, {}) as {k}-of-{n} on {} nodes",
                path.display(),
                sources.len(),
                fmt_bytes(total),
                c.nodes().len()
            );
            #[allow(clippy::disallowed_methods)]
            let t0 = std::time::Instant::now();
            let r = c.put(&name, is_dir, sources).await?;
            let secs = t0.elapsed().as_secs_f64();
            eprintln!(
                "stored {} files, {} in {} shards ({} moved to other nodes) in {secs:.2}s ({:.1} MiB/s)",
                r.files,
                fmt_bytes(r.bytes),
                r.shards,
                r.retries,
                r.bytes as f64 / 1048576.0 / secs.max(1e-9)
            );
            remember(&caps_path(caps), &format!("{}\t{}\t{name}", r.cap, r.bytes))?;
            println!("read-only: {}", r.cap.read_only());
            println!("{}", r.cap);
            Ok(())
        }
        Action::Get { cap, out, join } => {
            let cap = Cap::parse(&cap)?;
            let c = client(&join, Params::default()).await?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let (m, files) = c.get_to(&cap, &out).await?;
            println!(
                "got {:?}: {} files, {} into {}",
                m.name,
                files.len(),
                fmt_bytes(m.total_size()),
                out.display()
            );
            Ok(())
        }
        Action::Ls {
            cap,
            bootstrap,
            caps,
        } => {
            let Some(cap) = cap else {
                let p = caps_path(caps);
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for line in text.lines() {
                    let mut it = line.split('\t');
                    let (c, size, name) = (
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                    );
                    let size: u64 = size.parse().unwrap_or(0);
                    println!("{name}\t{}\t{c}", fmt_bytes(size));
                }
                return Ok(());
            };
            let cap = Cap::parse(&cap)?;
            if bootstrap.is_empty() {
                bail!("listing a capability needs --bootstrap ADDR");
            }
            let c = client(&Join { bootstrap }, Params::default()).await?;
            let m = c.manifest(&cap).await?;
            println!(
                "{} ({}-of-{}, {} segments of {})",
                m.name,
                m.k,
                m.n,
                m.segments().count(),
                fmt_bytes(u64::from(m.segment_size))
            );
            for f in &m.files {
                let p = if f.path.is_empty() {
                    m.name.as_str()
                } else {
                    f.path.as_str()
                };
                println!("{}\t{}", fmt_bytes(f.size), p);
            }
            Ok(())
        }
        Action::Rm { cap, join, caps } => {
            let parsed = Cap::parse(&cap)?;
            let c = client(&join, Params::default()).await?;
            let n = c.remove(&parsed).await?;
            let p = caps_path(caps);
            if let Ok(text) = std::fs::read_to_string(&p) {
                let kept: String = text
                    .lines()
                    .filter(|l| !l.starts_with(cap.trim()))
                    .map(|l| format!("{l}\n"))
                    .collect();
                write_atomic(&p, &kept)?;
            }
            println!("removed {n} stored items");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("x").is_err());
    }
}
