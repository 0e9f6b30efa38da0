//! `servent coin`: the Bitcoin-compatible coin: `node` (a full node: P2P on TCP, the chain
//! store, JSON-RPC), `status` and `mine` (clients of a node's RPC), and `verify-blocks`, full
//! validation of real blocks from a file with the consensus core (`servent_coin::core`).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_coin::core::block::{Chain, Coin, UtxoView, check_block, script_flags};
use servent_coin::wire::{Block, OutPoint, TxOut};
use servent_coin::{Params, hash_hex};

use crate::common;

/// clap: a base58check address of 25 bytes (its network is checked against the node's later).
fn parse_address(s: &str) -> Result<String, String> {
    let data = servent_coin::core::node::address::base58_decode(s).map_err(|e| e.to_string())?;
    if data.len() != 25 {
        return Err(format!("{} bytes, a P2PKH address has 25", data.len()));
    }
    let (body, check) = data.split_at(21);
    if servent_coin::sha256d(body)[..4] != *check {
        return Err("address checksum mismatch".into());
    }
    Ok(s.to_string())
}

/// clap: a public key in hex, 33 (compressed) or 65 bytes.
fn parse_pubkey(s: &str) -> Result<String, String> {
    let key = unhex(s).map_err(|e| e.to_string())?;
    if key.len() != 33 && key.len() != 65 {
        return Err(format!("{} bytes, expected 33 or 65", key.len()));
    }
    Ok(s.to_string())
}

fn network(name: &str) -> Result<Params> {
    match name {
        "regtest" => Ok(Params::regtest()),
        "mainnet" => Ok(Params::mainnet()),
        other => bail!("--network {other}: expected regtest or mainnet"),
    }
}

async fn node(
    net: &str,
    listen: SocketAddr,
    data: PathBuf,
    peers: Vec<SocketAddr>,
    rpc: Option<SocketAddr>,
) -> Result<()> {
    let params = network(net)?;
    let n = servent_coin::driver::start(servent_coin::driver::NodeOptions {
        params,
        listen,
        data: data.clone(),
        peers,
        rpc,
        redial: Duration::from_secs(2),
    })
    .await
    .with_context(|| format!("starting the node (data {})", data.display()))?;
    println!("p2p {}", n.p2p);
    if let Some(r) = n.rpc {
        println!("rpc {r}");
    }
    let info = n
        .api
        .ask(|id| servent_coin::core::node::Command::Info { id })
        .await
        .context("asking the node")?;
    if let servent_coin::core::node::Event::Info { info, .. } = info {
        println!("height {}", info.height);
        println!("best {}", hash_hex(&info.best));
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    common::stop_signal().await;
    println!("stopped");
    Ok(())
}

/// One JSON-RPC call over HTTP/1.1 (Connection: close); the result, or the node's error.
async fn rpc_call(
    node: SocketAddr,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value> {
    rpc_call_within(node, method, params, Duration::from_secs(600)).await
}

/// One JSON-RPC call to a node, waiting at most `answer` for the whole answer (the connect
/// itself has 10 s).
pub(crate) async fn rpc_call_within(
    node: SocketAddr,
    method: &str,
    params: serde_json::Value,
    answer: Duration,
) -> Result<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MAX: u64 = 64 << 20;
    let body = serde_json::json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
        .to_string();
    let mut s = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(node),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {node}: timed out"))?
    .with_context(|| {
        format!(
            "connecting to the node's RPC at {node} (is `servent coin node --rpc {node}` running?)"
        )
    })?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {node}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .context("sending the RPC request")?;
    let mut out = Vec::new();
    tokio::time::timeout(answer, (&mut s).take(MAX).read_to_end(&mut out))
        .await
        .map_err(|_| anyhow::anyhow!("{method}: no answer in {} s", answer.as_secs()))?
        .context("reading the RPC answer")?;
    // The node answers JSON with a Content-Length and closes: the body follows the blank line.
    let used = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .ok_or_else(|| anyhow::anyhow!("{method}: truncated HTTP answer"))?;
    if !out.starts_with(b"HTTP/1.") {
        bail!("{method}: {node} does not speak HTTP");
    }
    let v: serde_json::Value = serde_json::from_slice(&out[used..])
        .with_context(|| format!("{method}: answer is not JSON"))?;
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        bail!(
            "{method}: error {}: {}",
            e["code"],
            e["message"].as_str().unwrap_or("?")
        );
    }
    Ok(v.get("result").cloned().unwrap_or(serde_json::Value::Null))
}

async fn status(node: SocketAddr, json: bool) -> Result<()> {
    let height = rpc_call(node, "getblockcount", serde_json::json!([])).await?;
    let best = rpc_call(node, "getbestblockhash", serde_json::json!([])).await?;
    let peers = rpc_call(node, "getpeerinfo", serde_json::json!([])).await?;
    let pool = rpc_call(node, "getmempoolinfo", serde_json::json!([])).await?;
    let peers = peers.as_array().map_or(0, Vec::len);
    let mempool = pool["size"].as_u64().unwrap_or(0);
    if json {
        println!(
            "{}",
            serde_json::json!({"height": height, "best": best, "peers": peers, "mempool": mempool})
        );
    } else {
        println!("height {height}");
        println!("best {}", best.as_str().unwrap_or(""));
        println!("peers {peers}");
        println!("mempool {mempool}");
    }
    Ok(())
}

fn hex32(v: &serde_json::Value, what: &str) -> Result<[u8; 32]> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("template: {what} missing"))?;
    let mut h: [u8; 32] = unhex(s)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("template: {what} is not 32 bytes"))?;
    h.reverse();
    Ok(h)
}

/// A miner's template from a `getblocktemplate` answer, its coinbase paying `script`.
fn template_from_gbt(
    gbt: &serde_json::Value,
    script: &[u8],
) -> Result<servent_coin::mine::Template> {
    use servent_coin::wire::{BlockHeader, Transaction, TxIn};
    let height = gbt["height"]
        .as_u64()
        .and_then(|h| u32::try_from(h).ok())
        .context("template: height")?;
    let value = gbt["coinbasevalue"]
        .as_i64()
        .context("template: coinbasevalue")?;
    let bits = gbt["bits"]
        .as_str()
        .and_then(|b| u32::from_str_radix(b, 16).ok())
        .context("template: bits")?;
    let mut txs = Vec::new();
    for t in gbt["transactions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let raw = unhex(t["data"].as_str().context("template: transaction data")?)?;
        txs.push(
            Transaction::decode(&raw).map_err(|e| anyhow::anyhow!("template: transaction: {e}"))?,
        );
    }
    let mut script_sig = servent_coin::core::block::bip34_prefix(height);
    servent_coin::core::script::push_data(&mut script_sig, &0u64.to_le_bytes());
    let coinbase = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig,
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value,
            script_pubkey: script.to_vec(),
        }],
        lock_time: 0,
    };
    let fees: i64 = gbt["transactions"]
        .as_array()
        .map_or(0, |l| l.iter().filter_map(|t| t["fee"].as_i64()).sum());
    let mut t = servent_coin::mine::Template {
        height,
        header: BlockHeader {
            version: gbt["version"]
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .context("template: version")?,
            prev: hex32(&gbt["previousblockhash"], "previousblockhash")?,
            merkle_root: [0; 32],
            time: gbt["curtime"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .context("template: curtime")?,
            bits,
            nonce: 0,
        },
        coinbase,
        txs,
        fees: servent_coin::Amount::from_sat(fees).context("template: fees out of range")?,
    };
    t.set_extra_nonce(0);
    Ok(t)
}

async fn mine(
    blocks: u32,
    address: Option<String>,
    pubkey: Option<String>,
    node: SocketAddr,
    threads: usize,
) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let script = match (address, pubkey) {
        (Some(a), _) => {
            // The node's network decides the version byte: ask its genesis.
            let g = rpc_call(node, "getblockhash", serde_json::json!([0])).await?;
            let version = if g.as_str() == Some(&Params::mainnet().genesis.header.hash_hex()) {
                servent_coin::core::node::address::MAINNET_P2PKH
            } else {
                servent_coin::core::node::address::REGTEST_P2PKH
            };
            servent_coin::core::node::address::script_for_address(&a, version)
                .map_err(|e| anyhow::anyhow!(format!("--address {a}: {e}")))?
        }
        (None, Some(p)) => {
            let key = unhex(&p).map_err(|_| anyhow::anyhow!(format!("--pubkey {p}: not hex")))?;
            if key.len() != 33 && key.len() != 65 {
                return Err(anyhow::anyhow!(format!(
                    "--pubkey: {} bytes, expected 33 or 65",
                    key.len()
                )));
            }
            let mut s = Vec::new();
            servent_coin::core::script::push_data(&mut s, &key);
            s.push(0xac);
            s
        }
        (None, None) => return Err(anyhow::anyhow!("give --address or --pubkey")),
    };
    let hashes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let shown = hashes.clone();
    let stop_show = Arc::new(AtomicBool::new(false));
    let stop2 = stop_show.clone();
    let terminal = common::stdout_is_terminal();
    let shower = tokio::spawn(async move {
        let mut last = Instant::now();
        while !stop2.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if terminal || last.elapsed() >= Duration::from_secs(5) {
                last = Instant::now();
                let rate = shown.load(Ordering::Relaxed) as f64
                    / started.elapsed().as_secs_f64().max(1e-3);
                eprint!(
                    "\rmining: {} hashes, {:.0} H/s   ",
                    shown.load(Ordering::Relaxed),
                    rate
                );
                if !terminal {
                    eprintln!();
                }
            }
        }
    });
    let mut result = Ok(());
    let mut rng = servent_runtime::os_rng()?;
    for _ in 0..blocks {
        let gbt = rpc_call(node, "getblocktemplate", serde_json::json!([])).await?;
        let mut t = template_from_gbt(&gbt, &script)?;
        // a random start for the extra nonce: two miners paying one address at the same
        // height and second would otherwise search the same headers and find the same block
        t.set_extra_nonce(rng.next_u64());
        let counter = hashes.clone();
        let found = tokio::task::spawn_blocking(move || {
            let stop = AtomicBool::new(false);
            servent_coin::mine::mine(t, threads, &stop, &|n| {
                counter.fetch_add(n, Ordering::Relaxed);
            })
        })
        .await
        .context("miner thread")?;
        let Some(block) = found else {
            result = Err(anyhow::anyhow!("the template's nBits cannot be met"));
            break;
        };
        let hash = block.header.hash_hex();
        let raw = servent_coin::wire::Encode::encode(&block);
        let r = rpc_call(node, "submitblock", serde_json::json!([hex_encode(&raw)])).await?;
        if !r.is_null() {
            result = Err(anyhow::anyhow!("the node rejected block {hash}: {r}"));
            break;
        }
        let height = gbt["height"].as_u64().unwrap_or(0);
        println!("block {hash} height {height}");
    }
    stop_show.store(true, Ordering::Relaxed);
    let _ = shower.await;
    let total = hashes.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!();
    println!(
        "hashes {total} in {secs:.2} s, {:.0} H/s",
        total as f64 / secs
    );
    result
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Args, Debug)]
#[command(after_help = common::EXIT_CODES_HELP)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Run a full node: P2P on --listen (version/verack, headers-first sync, block and
    /// transaction relay, bans for misbehaviour), the chain and UTXO set in DIR (SQLite, every
    /// chain change one transaction: a kill -9 loses nothing connected), JSON-RPC with
    /// Bitcoin Core's methods on --rpc. Dials every --peer and dials again while it is not
    /// connected. Runs until Ctrl-C or SIGTERM.
    Node {
        /// `regtest` or `mainnet`.
        #[arg(long, default_value = "regtest", value_parser = ["regtest", "mainnet"])]
        network: String,
        /// P2P address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Data directory (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// A peer to dial (repeatable).
        #[arg(long = "peer")]
        peers: Vec<SocketAddr>,
        /// JSON-RPC address (none if absent).
        #[arg(long)]
        rpc: Option<SocketAddr>,
    },
    /// Print a node's state over its RPC: lines `height N`, `best HASH`, `peers N`,
    /// `mempool N`.
    Status {
        /// The node's RPC address.
        #[arg(long)]
        node: SocketAddr,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Mine blocks for a node: get a template over RPC (getblocktemplate), build the coinbase
    /// paying --address (base58check P2PKH of the node's network) or --pubkey (P2PK), search
    /// nonces on --threads threads showing the hash rate, submit (submitblock). Prints
    /// `block HASH height H` per block; exit 1 if the node rejects one.
    ///
    /// With --pool ADDR --user NAME instead: mine shares for a Stratum v1 pool (`servent coin
    /// pool`, or any other), paid to the address NAME (`ADDR` or `ADDR.worker`) in proportion
    /// to the shares the pool accepts. Prints a status line every few seconds and, at the
    /// end, `shares accepted N rejected M` (with the reasons) and the hash rate; runs until
    /// --shares shares were accepted, Ctrl-C, or the pool closes the connection (exit 1).
    Mine {
        /// How many blocks (1..=100000; solo mining with --node).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000),
              required_unless_present = "pool", conflicts_with = "pool")]
        blocks: Option<u32>,
        /// Pay the coinbase to this P2PKH address.
        #[arg(long, conflicts_with_all = ["pubkey", "pool"], required_unless_present_any = ["pubkey", "pool"], value_parser = parse_address)]
        address: Option<String>,
        /// Pay the coinbase to this public key (hex, P2PK).
        #[arg(long, value_parser = parse_pubkey, conflicts_with = "pool")]
        pubkey: Option<String>,
        /// The node's RPC address (solo mining).
        #[arg(long, required_unless_present = "pool", conflicts_with = "pool")]
        node: Option<SocketAddr>,
        /// Mine for the Stratum v1 pool at this address instead of solo.
        #[arg(long, requires = "user")]
        pool: Option<SocketAddr>,
        /// With --pool: the user name, the P2PKH address to be paid (optionally `.worker`).
        #[arg(long, requires = "pool")]
        user: Option<String>,
        /// With --pool: stop after this many accepted shares (default: run until Ctrl-C).
        #[arg(long, requires = "pool", value_parser = clap::value_parser!(u64).range(1..))]
        shares: Option<u64>,
        /// Mining threads (1..=1024) [default: one per CPU core].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        threads: Option<u32>,
    },
    /// Run a Stratum v1 mining pool on top of a node: miners connect to --listen
    /// (mining.subscribe, mining.authorize with their P2PKH address as the user name,
    /// mining.notify, mining.submit, mining.set_difficulty); templates come from the node's
    /// RPC (getblocktemplate, at once on a new block) and found blocks go back to it
    /// (submitblock). Shares are checked against the share difficulty (below the network's):
    /// stale, duplicate, low-difficulty and bad-ntime shares are rejected. Every job's
    /// coinbase pays the miners in proportion to their accepted shares among the last
    /// --window (PPLNS), to the satoshi. Prints `stratum ADDR`, `http ADDR`, then a line per
    /// block found; runs until Ctrl-C or SIGTERM.
    Pool(crate::coin_pool::PoolCmd),
    /// Validate blocks from a file with Bitcoin's consensus rules (before SegWit): proof of
    /// work, merkle root, every transaction and every signature. FILE is a blk*.dat-style file
    /// (magic, length, block; validated as a chain from the genesis of the network its magic
    /// names) or one raw serialized block (validated against `--utxos`); `.bz2` and `.zst`
    /// files are decompressed. Prints blocks, transactions, inputs and signatures checked, and
    /// the first failure with its reason (exit 1).
    VerifyBlocks {
        /// The block file.
        file: PathBuf,
        /// The outputs a raw block spends: a JSON list with one entry per non-coinbase input in
        /// block order, `{"txout": {"value": SAT, "script_pubkey": HEX}, "is_coinbase": BOOL,
        /// "creation_height": H}` (plain or .zst).
        #[arg(long)]
        utxos: Option<PathBuf>,
        /// The raw block's height (default: the height its coinbase states, BIP 34).
        #[arg(long)]
        height: Option<u32>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    Electrum(crate::coin_electrum::ElectrumArgs),
    /// An encrypted HD wallet that scans a node's blocks over RPC and pays:
    /// create|restore|address|balance|send ADDR AMOUNT|history|export --wallet FILE --node RPCADDR.
    Wallet(crate::coin_wallet::Cmd),
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::Node {
            network,
            listen,
            data,
            peers,
            rpc,
        } => node(&network, listen, data, peers, rpc).await,
        Sub::Status { node, json } => status(node, json).await,
        Sub::Mine {
            blocks,
            address,
            pubkey,
            node,
            pool,
            user,
            shares,
            threads,
        } => {
            let threads = match threads {
                Some(n) => n as usize,
                None => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            };
            match (pool, user, node, blocks) {
                (Some(pool), Some(user), _, _) => {
                    crate::coin_pool::mine_pool(pool, user, threads, shares).await
                }
                (None, _, Some(node), Some(blocks)) => {
                    mine(blocks, address, pubkey, node, threads).await
                }
                _ => bail!("give --node and --blocks, or --pool and --user"),
            }
        }
        Sub::Pool(cmd) => crate::coin_pool::run(cmd).await,
        Sub::VerifyBlocks {
            file,
            utxos,
            height,
            json,
        } => tokio::task::block_in_place(|| verify_blocks(&file, utxos.as_deref(), height, json)),
        Sub::Electrum(a) => crate::coin_electrum::run(a).await,
        Sub::Wallet(cmd) => crate::coin_wallet::run(cmd).await,
    }
}

/// Reads a file, decompressing `.bz2` and `.zst` by name, at most 4 GiB.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    const MAX: u64 = 4 << 30;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    let r: Box<dyn Read> = if name.ends_with(".bz2") {
        Box::new(bzip2::read::BzDecoder::new(f))
    } else if name.ends_with(".zst") {
        Box::new(
            ruzstd::decoding::StreamingDecoder::new(f)
                .map_err(|e| anyhow::anyhow!("{}: not zstd: {e}", path.display()))?,
        )
    } else {
        Box::new(f)
    };
    r.take(MAX + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {}", path.display()))?;
    if out.len() as u64 > MAX {
        bail!("{}: larger than 4 GiB", path.display());
    }
    Ok(out)
}

#[derive(Default)]
struct Counts {
    blocks: u64,
    txs: u64,
    inputs: u64,
    sigs: u64,
}

fn count(c: &mut Counts, b: &Block, sigs: usize) {
    c.blocks += 1;
    c.txs += b.txs.len() as u64;
    c.inputs += b
        .txs
        .iter()
        .skip(1)
        .map(|t| t.inputs.len() as u64)
        .sum::<u64>();
    c.sigs += sigs as u64;
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Validates a blk-format file from genesis; the chain reached, and the first failure.
fn validate_chain(data: &[u8], params: Params, c: &mut Counts) -> (Chain, Result<(), String>) {
    let magic = params.magic;
    let mut chain = Chain::new(params);
    let mut rest = data;
    while !rest.is_empty() {
        let h = chain.height() + 1;
        let (block, used) = match next_record(rest, &magic) {
            Ok(x) => x,
            Err(e) => return (chain, Err(format!("record {h}: {e}"))),
        };
        rest = &rest[used..];
        match chain.accept(&block, now_unix()) {
            Ok(done) => count(c, &block, done.sig_checks),
            Err(e) => {
                let why = format!("block {h} ({}): {e}", block.header.hash_hex());
                return (chain, Err(why));
            }
        }
    }
    (chain, Ok(()))
}

fn verify_blocks(file: &Path, utxos: Option<&Path>, height: Option<u32>, json: bool) -> Result<()> {
    let data = read_file(file)?;
    let started = Instant::now();
    let mut c = Counts::default();
    let (network, outcome, tip) = if let Some(net) = blk_network(&data) {
        if utxos.is_some() {
            bail!(
                "--utxos is for one raw block; {} is a block file validated from genesis",
                file.display()
            );
        }
        let (name, params) = net;
        let (chain, outcome) = validate_chain(&data, params, &mut c);
        let tip = format!(
            "height {}, {} UTXOs holding {} sat",
            chain.height(),
            chain.view.len(),
            chain.view.total().map_or(-1, |a| a.to_sat())
        );
        (name, outcome, tip)
    } else {
        let block = Block::decode(&data).map_err(|e| {
            anyhow::anyhow!(
                "{}: neither a block file nor a raw block: {e}",
                file.display()
            )
        })?;
        let Some(utxos) = utxos else {
            bail!(
                "{} is one raw block: give the outputs it spends with --utxos FILE",
                file.display()
            );
        };
        let params = Params::mainnet();
        let h = match height {
            Some(h) => h,
            None => coinbase_height(&block)
                .context("the block's coinbase states no height (BIP 34): give it with --height")?,
        };
        let mut view = load_utxos(utxos, &block)?;
        let outcome = check_block(&block, &params, now_unix())
            .and_then(|()| {
                let flags = script_flags(&params, h, block.header.time);
                let secp = secp256k1::Secp256k1::verification_only();
                view.connect_block(&block, h, &params, flags, &secp)
            })
            .map(|done| count(&mut c, &block, done.sig_checks))
            .map_err(|e| format!("block {h} ({}): {e}", block.header.hash_hex()));
        ("mainnet", outcome, format!("height {h}"))
    };
    let secs = started.elapsed().as_secs_f64();
    let ok = outcome.is_ok();
    if json {
        common::print_json(&serde_json::json!({
            "network": network,
            "valid": ok,
            "blocks": c.blocks,
            "transactions": c.txs,
            "inputs": c.inputs,
            "signatures": c.sigs,
            "seconds": secs,
            "error": outcome.as_ref().err(),
        }));
    } else {
        println!(
            "{network}: {} blocks, {} transactions, {} inputs, {} signatures checked in {secs:.2} s; {tip}",
            c.blocks, c.txs, c.inputs, c.sigs
        );
    }
    match outcome {
        Ok(()) => {
            if !json {
                println!("all valid");
            }
            Ok(())
        }
        Err(e) => bail!("invalid: {e}"),
    }
}

/// The network a blk-format file's first magic names.
fn blk_network(data: &[u8]) -> Option<(&'static str, Params)> {
    let magic = data.get(..4)?;
    [
        ("mainnet", Params::mainnet()),
        ("regtest", Params::regtest()),
    ]
    .into_iter()
    .find(|(_, p)| p.magic == magic)
}

/// One `magic, length, block` record; the bytes it used.
fn next_record(rest: &[u8], magic: &[u8; 4]) -> Result<(Block, usize)> {
    if rest.len() < 8 {
        bail!("truncated record header");
    }
    if &rest[..4] != magic {
        bail!("bad magic {:02x?}", &rest[..4]);
    }
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    let body = rest
        .get(8..8 + len)
        .with_context(|| format!("record of {len} bytes is truncated"))?;
    let block = Block::decode(body).map_err(|e| anyhow::anyhow!("block does not decode: {e}"))?;
    Ok((block, 8 + len))
}

/// BIP 34: the coinbase's scriptSig starts with a push of the height.
fn coinbase_height(b: &Block) -> Option<u32> {
    let script = &b.txs.first()?.inputs.first()?.script_sig;
    let n = usize::from(*script.first()?);
    if !(1..=4).contains(&n) {
        return None;
    }
    let bytes = script.get(1..1 + n)?;
    let mut v = 0u32;
    for (i, byte) in bytes.iter().enumerate() {
        v |= u32::from(*byte) << (8 * i);
    }
    Some(v)
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(s.as_bytes())
        .map_err(|e| anyhow::anyhow!("bad hex: {e}"))
}

/// The view holding the outputs the block spends, from the JSON list (one per non-coinbase
/// input in block order; outputs the block creates itself are left to it).
fn load_utxos(path: &Path, block: &Block) -> Result<UtxoView> {
    let v: serde_json::Value = serde_json::from_slice(&read_file(path)?)
        .with_context(|| format!("{}: not JSON", path.display()))?;
    let list = v
        .as_array()
        .with_context(|| format!("{}: not a JSON list", path.display()))?;
    let own: Vec<[u8; 32]> = block.txs.iter().map(|t| t.txid()).collect();
    let inputs: Vec<&OutPoint> = block
        .txs
        .iter()
        .skip(1)
        .flat_map(|t| t.inputs.iter().map(|i| &i.prevout))
        .collect();
    if inputs.len() != list.len() {
        bail!(
            "{}: {} entries for {} inputs",
            path.display(),
            list.len(),
            inputs.len()
        );
    }
    let mut view = UtxoView::default();
    for (i, (prevout, s)) in inputs.into_iter().zip(list).enumerate() {
        let bad = || anyhow::anyhow!("{}: entry {i} is malformed", path.display());
        let coin = Coin {
            out: TxOut {
                value: s["txout"]["value"].as_i64().ok_or_else(bad)?,
                script_pubkey: unhex(s["txout"]["script_pubkey"].as_str().ok_or_else(bad)?)?,
            },
            height: s["creation_height"]
                .as_u64()
                .and_then(|h| u32::try_from(h).ok())
                .ok_or_else(bad)?,
            coinbase: s["is_coinbase"].as_bool().ok_or_else(bad)?,
        };
        if !own.contains(&prevout.txid) {
            view.coins.insert(prevout.clone(), coin);
        }
    }
    Ok(view)
}

// ---- the demo's coin section ----

/// Mines one block on `api`'s node paying `script`, and submits it there.
async fn demo_mine(api: &servent_coin::driver::Api, script: &[u8]) -> Result<Block> {
    use servent_coin::core::node::{Command, Event};
    let coinbase_script = script.to_vec();
    let t = match api
        .ask(|id| Command::Template {
            id,
            coinbase_script,
        })
        .await?
    {
        Event::Template { result, .. } => result.map_err(|e| anyhow::anyhow!("template: {e}"))?.0,
        other => bail!("unexpected answer {other:?}"),
    };
    let block = tokio::task::spawn_blocking(move || {
        let stop = std::sync::atomic::AtomicBool::new(false);
        servent_coin::mine::mine(t, 1, &stop, &|_| {})
    })
    .await?
    .context("no block found")?;
    let b = block.clone();
    match api.ask(|id| Command::SubmitBlock { id, block: b }).await? {
        Event::BlockResult { result: Ok(()), .. } => Ok(block),
        Event::BlockResult { result: Err(e), .. } => bail!("our own block was refused: {e}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

async fn demo_info(api: &servent_coin::driver::Api) -> Result<servent_coin::core::node::NodeInfo> {
    use servent_coin::core::node::{Command, Event};
    match api.ask(|id| Command::Info { id }).await? {
        Event::Info { info, .. } => Ok(info),
        other => bail!("unexpected answer {other:?}"),
    }
}

async fn demo_submit_tx(
    api: &servent_coin::driver::Api,
    tx: &servent_coin::wire::Transaction,
) -> Result<Result<[u8; 32], String>> {
    use servent_coin::core::node::{Command, Event};
    let tx = tx.clone();
    match api.ask(|id| Command::SubmitTx { id, tx }).await? {
        Event::TxResult { result, .. } => Ok(result),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// Waits (bounded) until every node's state satisfies `ok`; returns the seconds it took.
async fn demo_wait(
    apis: &[&servent_coin::driver::Api],
    limit: Duration,
    ok: impl Fn(&servent_coin::core::node::NodeInfo) -> bool,
) -> Result<Option<f64>> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        let mut all = true;
        for a in apis {
            all &= ok(&demo_info(a).await?);
        }
        if all {
            return Ok(Some(t0.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

/// A P2PK spend of output 0 of `coinbase` to `to`, signed with `key`.
fn demo_spend(
    coinbase: &servent_coin::wire::Transaction,
    to: &[u8],
    fee: i64,
    key: &secp256k1::SecretKey,
) -> Result<servent_coin::wire::Transaction> {
    use servent_coin::wire::{Transaction, TxIn};
    let prev = &coinbase.outputs[0];
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: coinbase.txid(),
                vout: 0,
            },
            script_sig: Vec::new(),
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value: prev
                .value
                .checked_sub(fee)
                .filter(|v| *v >= 0)
                .context("the fee is more than the coin")?,
            script_pubkey: to.to_vec(),
        }],
        lock_time: 0,
    };
    let digest = servent_coin::core::legacy_sighash(&tx, 0, &prev.script_pubkey, 1);
    let secp = secp256k1::Secp256k1::signing_only();
    let mut sig = secp
        .sign_ecdsa(&secp256k1::Message::from_digest(digest), key)
        .serialize_der()
        .to_vec();
    sig.push(1); // SIGHASH_ALL
    servent_coin::core::script::push_data(&mut tx.inputs[0].script_sig, &sig);
    Ok(tx)
}

/// The demo: five regtest nodes on 127.0.0.1 mine, propagate and agree; a node started after
/// the others had mined catches up; a double spend is refused by every node; the real mainnet
/// blocks validate.
pub async fn demo(out: &Path) -> Result<crate::demo::DemoSection> {
    use servent_coin::driver::{NodeOptions, RunningNode, start};
    let mut sec = crate::demo::DemoSection::new("Coin (Bitcoin regtest)");
    let dir = out.join("coin");
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = servent_runtime::os_rng()?;
    let key_bytes: [u8; 32] = rng.bytes();
    let key = secp256k1::SecretKey::from_byte_array(&key_bytes).context("a secret key")?;
    let secp = secp256k1::Secp256k1::signing_only();
    let pk = secp256k1::PublicKey::from_secret_key(&secp, &key).serialize();
    let mut p2pk = Vec::new();
    servent_coin::core::script::push_data(&mut p2pk, &pk);
    p2pk.push(0xac); // OP_CHECKSIG
    let opts = |name: &str, peers: Vec<SocketAddr>| NodeOptions {
        params: Params::regtest(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data: dir.join(name),
        peers,
        rpc: None,
        redial: Duration::from_secs(1),
    };
    // a, and b, c, d joining through a (d also through c)
    let a: RunningNode = start(opts("a", vec![])).await?;
    let b = start(opts("b", vec![a.p2p])).await?;
    let c = start(opts("c", vec![a.p2p])).await?;
    let d = start(opts("d", vec![a.p2p, c.p2p])).await?;
    let four = [&a.api, &b.api, &c.api, &d.api];
    demo_wait(&four, Duration::from_secs(20), |i| i.peers >= 1).await?;

    // 1. Mining at two nodes; every node ends on one chain.
    let t0 = Instant::now();
    let mut blocks = Vec::new();
    for _ in 0..101 {
        blocks.push(demo_mine(&a.api, &p2pk).await?);
    }
    // c mines on the tip it got from a (to its own script: the same script, height and
    // second would give a's block again, byte for byte)
    let a_tip = blocks.last().map(|b| b.header.hash()).unwrap_or_default();
    demo_wait(&[&c.api], Duration::from_secs(60), |i| i.best == a_tip).await?;
    for _ in 0..2 {
        blocks.push(demo_mine(&c.api, &[0x51]).await?);
    }
    let tip = blocks.last().map(|b| b.header.hash()).unwrap_or_default();
    let agreed = demo_wait(&four, Duration::from_secs(60), |i| i.best == tip).await?;
    sec.row(
        "4 regtest nodes: 101 blocks mined at node a, 2 at node c",
        match agreed {
            Some(_) => format!(
                "all 4 at height 103, tip {}… ({:.1} s for mining and propagation)",
                &hash_hex(&tip)[..16],
                t0.elapsed().as_secs_f64()
            ),
            None => "the nodes did not agree within 60 s".into(),
        },
        agreed.is_some(),
    );

    // 2. A fifth node, offline while all that was mined, joins through b and catches up.
    let e = start(opts("e", vec![b.p2p])).await?;
    let caught = demo_wait(&[&e.api], Duration::from_secs(60), |i| i.best == tip).await?;
    sec.row(
        "a 5th node, offline until now, joins through node b",
        match caught {
            Some(s) => format!("synced 103 blocks headers-first in {s:.1} s"),
            None => "did not catch up within 60 s".into(),
        },
        caught.is_some(),
    );
    let all = [&a.api, &b.api, &c.api, &d.api, &e.api];

    // 3. A double spend: the first spend of block 1's coinbase reaches every mempool; a second
    // spend of the same coin is refused by every node; a block confirms the first.
    let coin = &blocks[0].txs[0];
    let first = demo_spend(coin, &p2pk, 10_000, &key)?;
    let second = demo_spend(coin, &[0x51], 20_000, &key)?;
    let sent = demo_submit_tx(&d.api, &first).await?;
    let spread = demo_wait(&all, Duration::from_secs(30), |i| i.mempool_txs == 1).await?;
    let mut refused = 0;
    for api in all {
        if demo_submit_tx(api, &second).await?.is_err() {
            refused += 1;
        }
    }
    let confirm = demo_mine(&b.api, &p2pk).await?;
    let holds_first = confirm.txs.iter().any(|t| t.txid() == first.txid());
    let tip = confirm.header.hash();
    let settled = demo_wait(&all, Duration::from_secs(30), |i| {
        i.best == tip && i.mempool_txs == 0
    })
    .await?;
    let ok = sent.is_ok() && spread.is_some() && refused == 5 && holds_first && settled.is_some();
    sec.row(
        "double spend: a coin spent at node d, then spent again at every node",
        format!(
            "first spend in all 5 mempools: {}; second refused by {refused} of 5; mined at node b: {}",
            if spread.is_some() { "yes" } else { "no" },
            if holds_first && settled.is_some() {
                "yes, all 5 at height 104"
            } else {
                "no"
            }
        ),
        ok,
    );

    // 4. Payments between two wallets, one of them while its node is offline.
    if let Err(e) = crate::coin_wallet::demo(&dir, &mut sec).await {
        sec.row("wallet payments", format!("failed: {e:#}"), false);
    }

    // 5. Real Bitcoin: mainnet blocks 1-255 from genesis (../shared/data/bitcoin).
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitcoin/blocks1-256.bz2");
    if file.is_file() {
        let data = read_file(&file)?;
        let mut c = Counts::default();
        let (chain, outcome) = validate_chain(&data, Params::mainnet(), &mut c);
        let failure = outcome.err();
        let total = chain.view.total().map_or(-1, |a| a.to_sat());
        let ok = failure.is_none() && chain.height() == 255 && total == 1_275_000_000_000;
        sec.row(
            "real mainnet blocks 1-255 validated from genesis",
            match failure {
                None => format!(
                    "{} blocks, {} transactions, {} signatures; {} UTXOs of {} BTC",
                    c.blocks,
                    c.txs,
                    c.sigs,
                    chain.view.len(),
                    total / 100_000_000
                ),
                Some(f) => f,
            },
            ok,
        );
    } else {
        sec.notes.push(format!(
            "The real mainnet blocks were not checked: {} is not in this checkout's ../shared.",
            file.display()
        ));
    }
    sec.notes.push(
        "Bitcoin-compatible nodes on Bitcoin Core's regtest network: headers-first sync, \
         relay by inv, a mempool where the first spend wins, blocks mined from templates with \
         a midstate nonce search; the chain and UTXO set in SQLite."
            .into(),
    );
    Ok(sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coinbase_height_is_read_little_endian_from_the_first_push() {
        let mut b = Params::mainnet().genesis.clone();
        b.txs[0].inputs[0].script_sig = vec![3, 0x13, 0x9d, 0x05, 0xff];
        assert_eq!(coinbase_height(&b), Some(367_891));
        b.txs[0].inputs[0].script_sig = vec![0x4c, 1, 2];
        assert_eq!(coinbase_height(&b), None);
    }
}
