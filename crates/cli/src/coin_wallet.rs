//! `servent coin wallet`: an encrypted HD wallet (BIP 39 words, BIP 32/44 keys, P2PKH) that
//! scans blocks from a node's JSON-RPC, keeps its transactions in the wallet file, and pays.
//!
//! Before every command that talks to the node the wallet catches up: it follows a
//! reorganisation back to the last block it shares with the node (by hash), scans the blocks it
//! missed since its saved tip (so payments received while it was not running are found), and
//! reads the mempool for pending payments. The file is saved atomically (temp file in the same
//! directory, fsync, rename, fsync of the directory): a kill at any point leaves the old or the
//! new wallet.
use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use servent_coin::wallet::amount::{format_btc, format_btc_signed, parse_amount};
use servent_coin::wallet::build::{PaymentRequest, build_payment};
use servent_coin::wallet::chain::Wallet;
use servent_coin::wallet::file::MAX_FILE_LEN;
use servent_coin::wallet::{
    Address, Mnemonic, Network, Password, WalletFileError, WalletPayload, decrypt, encrypt,
};
use servent_coin::wire::{Block, Encode, Transaction};
use servent_coin::{Params, hash_hex};
use zeroize::Zeroizing;

use crate::common;

/// The environment variable a script may put the password in.
pub const PASSWORD_ENV: &str = "SERVENT_WALLET_PASSWORD";
/// Default fee rate of `send` (sat/vB).
pub const DEFAULT_FEE_RATE: u64 = 2;
/// Most mempool transactions looked at per sync.
const MAX_MEMPOOL_SCAN: usize = 100_000;

#[derive(Args, Debug)]
#[command(after_help = common::EXIT_CODES_HELP)]
pub struct Cmd {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(Args, Debug)]
struct Opts {
    /// The wallet file.
    #[arg(long)]
    wallet: PathBuf,
    /// The node's JSON-RPC address (`servent coin node --rpc ADDR`).
    #[arg(long)]
    node: Option<SocketAddr>,
    /// Read the password from the first line of FILE (else the environment variable
    /// SERVENT_WALLET_PASSWORD, else the terminal, without echo; there is no default).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// Create a new wallet FILE from fresh OS randomness (a BIP 39 mnemonic of 12 words, 128
    /// bits, or 24 words, 256 bits; see it with `export`), encrypted under a password asked
    /// twice on a terminal. With --node, its scan starts at the node's tip. Refuses to
    /// overwrite a file.
    Create {
        #[command(flatten)]
        o: Opts,
        /// `regtest`, `testnet` or `mainnet`.
        #[arg(long, default_value = "regtest", value_parser = ["regtest", "testnet", "mainnet"])]
        network: String,
        /// Words of the mnemonic (12 or 24).
        #[arg(long, default_value = "12", value_parser = ["12", "24"])]
        words: String,
    },
    /// Restore a wallet FILE from its BIP 39 mnemonic, read from standard input (one line) or
    /// the terminal. With --node, scans the chain from the genesis block for its coins.
    Restore {
        #[command(flatten)]
        o: Opts,
        /// `regtest`, `testnet` or `mainnet`.
        #[arg(long, default_value = "regtest", value_parser = ["regtest", "testnet", "mainnet"])]
        network: String,
    },
    /// Print a new receiving address (never handed out before) on the first line, and save.
    Address {
        #[command(flatten)]
        o: Opts,
    },
    /// Print the balance as lines `confirmed <BTC>` (confirmed coins and our own unconfirmed
    /// change), `pending <BTC>` (unconfirmed payments from others) and `immature <BTC>` (mined
    /// coins under 100 confirmations). Needs --node.
    Balance {
        #[command(flatten)]
        o: Opts,
        /// Print one JSON object (amounts in BTC and in sat).
        #[arg(long)]
        json: bool,
    },
    /// Pay AMOUNT (BTC with up to 8 decimals, or satoshis with a `sat` suffix: `1500sat`) to
    /// ADDR: coin selection (branch and bound, then largest first), change to a new address,
    /// signed and broadcast with sendrawtransaction. Prints the txid. Needs --node.
    Send {
        /// The payee's address (of the wallet's network).
        addr: String,
        /// The amount: `0.5` (BTC) or `50000sat`.
        amount: String,
        #[command(flatten)]
        o: Opts,
        /// Fee rate in sat/vB (1..=10000); fees above 0.1 BTC are refused.
        #[arg(long, default_value_t = DEFAULT_FEE_RATE)]
        fee_rate: u64,
    },
    /// List the wallet's transactions, oldest first: txid, amount (BTC, negative when paid),
    /// fee (of our own payments) and confirmations. Needs --node.
    History {
        #[command(flatten)]
        o: Opts,
        /// Print a JSON list instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the wallet's secrets: the mnemonic, the BIP 32 master xprv (tprv on the test
    /// networks) and the account path. Anyone with them can spend the coins.
    Export {
        #[command(flatten)]
        o: Opts,
    },
}

fn parse_network(s: &str) -> Network {
    match s {
        "mainnet" => Network::Mainnet,
        "testnet" => Network::Testnet,
        _ => Network::Regtest,
    }
}

fn network_name(n: Network) -> &'static str {
    match n {
        Network::Mainnet => "mainnet",
        Network::Testnet => "testnet",
        Network::Regtest => "regtest",
    }
}

pub async fn run(cmd: Cmd) -> Result<()> {
    match cmd.cmd {
        Sub::Create { o, network, words } => {
            refuse_existing(&o.wallet)?;
            let pw = password(&o, true)?;
            let mut entropy = Zeroizing::new(vec![0u8; if words == "24" { 32 } else { 16 }]);
            getrandom::fill(&mut entropy)
                .map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
            let m = Mnemonic::from_entropy(&entropy).context("making the mnemonic")?;
            let net = parse_network(&network);
            let mut p = WalletPayload::new(net, m.to_seed(""));
            p.entropy = Some(m.entropy());
            let mut w = Wallet::new(p)?;
            if let Some(node) = o.node {
                // Nothing can have paid a brand-new wallet: start at the node's tip.
                skip_to_tip(&mut w, node).await?;
            }
            save(&o.wallet, &w, &pw)?;
            println!("created {} ({})", o.wallet.display(), network_name(net));
            eprintln!(
                "a {words}-word mnemonic backs it up: write it down from `servent coin wallet export`"
            );
            Ok(())
        }
        Sub::Restore { o, network } => {
            refuse_existing(&o.wallet)?;
            let words = read_mnemonic()?;
            let m = Mnemonic::parse(&words).context("the mnemonic")?;
            let pw = password(&o, true)?;
            let net = parse_network(&network);
            let mut p = WalletPayload::new(net, m.to_seed(""));
            p.entropy = Some(m.entropy());
            let mut w = Wallet::new(p)?;
            if let Some(node) = o.node {
                sync(&mut w, node).await?;
            }
            save(&o.wallet, &w, &pw)?;
            println!("restored {} ({})", o.wallet.display(), network_name(net));
            if o.node.is_some() {
                let b = w.balance();
                println!("confirmed {}", format_btc(b.confirmed));
                println!("pending {}", format_btc(b.pending));
            }
            Ok(())
        }
        Sub::Address { o } => {
            let (mut w, pw) = open(&o)?;
            if let Some(node) = o.node {
                sync(&mut w, node).await?;
            }
            let a = w.new_receive_address()?;
            save(&o.wallet, &w, &pw)?;
            println!("{}", a.encode(w.network()));
            Ok(())
        }
        Sub::Balance { o, json } => {
            let (mut w, pw) = open(&o)?;
            sync(&mut w, need_node(&o)?).await?;
            save(&o.wallet, &w, &pw)?;
            let b = w.balance();
            let height = w.tip().map_or(0, |t| t.0);
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "confirmed": format_btc(b.confirmed),
                        "pending": format_btc(b.pending),
                        "immature": format_btc(b.immature),
                        "confirmed_sat": b.confirmed,
                        "pending_sat": b.pending,
                        "immature_sat": b.immature,
                        "height": height,
                    })
                );
            } else {
                println!("confirmed {}", format_btc(b.confirmed));
                println!("pending {}", format_btc(b.pending));
                println!("immature {}", format_btc(b.immature));
            }
            Ok(())
        }
        Sub::Send {
            addr,
            amount,
            o,
            fee_rate,
        } => {
            let amount = parse_amount(&amount).with_context(|| format!("amount {amount:?}"))?;
            let (mut w, pw) = open(&o)?;
            let net = w.network();
            let to = Address::decode(&addr, net)
                .with_context(|| format!("{addr} is not a {} address", network_name(net)))?;
            let node = need_node(&o)?;
            sync(&mut w, node).await?;
            let coins = w.spendable()?;
            // A new change address for every payment (saved only if the payment is broadcast).
            let change = w.new_change_address()?;
            let mut bit = [0u8; 1];
            getrandom::fill(&mut bit).map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
            let p = build_payment(
                &coins,
                &PaymentRequest {
                    to_script: to.script_pubkey(),
                    amount,
                    fee_rate,
                    change_script: change.script_pubkey(),
                    lock_time: w.tip().map_or(0, |t| t.0),
                    change_first: bit[0] & 1 == 1,
                },
            )
            .context("building the payment")?;
            let raw = hex(&p.tx.encode());
            let txid = rpc_call(node, "sendrawtransaction", serde_json::json!([raw]))
                .await
                .context("broadcasting")?;
            w.add_unconfirmed(&p.tx)?;
            save(&o.wallet, &w, &pw)?;
            let size = p.tx.encode().len();
            println!(
                "{}",
                txid.as_str()
                    .map_or_else(|| hash_hex(&p.tx.txid()), str::to_string)
            );
            eprintln!(
                "paid {} BTC to {addr}, fee {} BTC ({size} bytes, {:.1} sat/vB), {} input{}{}",
                format_btc(amount),
                format_btc(p.fee),
                p.fee as f64 / size as f64,
                p.spent.len(),
                if p.spent.len() == 1 { "" } else { "s" },
                match p.change_vout {
                    Some(v) => format!(
                        ", change {} BTC to {} (output {v})",
                        format_btc(p.tx.outputs[v as usize].value as u64),
                        change.encode(net)
                    ),
                    None => ", no change".into(),
                }
            );
            Ok(())
        }
        Sub::History { o, json } => {
            let (mut w, pw) = open(&o)?;
            sync(&mut w, need_node(&o)?).await?;
            save(&o.wallet, &w, &pw)?;
            let h = w.history();
            if json {
                let list: Vec<_> = h
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "txid": hash_hex(&e.txid),
                            "amount": format_btc_signed(e.amount),
                            "amount_sat": e.amount,
                            "fee": e.fee.map(format_btc),
                            "fee_sat": e.fee,
                            "confirmations": e.confirmations,
                            "height": e.height,
                            "coinbase": e.coinbase,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for e in &h {
                    println!(
                        "{} {:>14} fee {} confirmations {}{}",
                        hash_hex(&e.txid),
                        format_btc_signed(e.amount),
                        e.fee.map_or_else(|| "-".to_string(), format_btc),
                        e.confirmations,
                        if e.coinbase { " (mined)" } else { "" }
                    );
                }
                eprintln!(
                    "{} transaction{}",
                    h.len(),
                    if h.len() == 1 { "" } else { "s" }
                );
            }
            Ok(())
        }
        Sub::Export { o } => {
            let (w, _pw) = open(&o)?;
            match w.entropy() {
                Some(e) => {
                    let m = Mnemonic::from_entropy(e).context("the saved mnemonic")?;
                    println!("mnemonic {}", m.phrase().as_str());
                }
                None => println!("mnemonic (none: this wallet was not made from words)"),
            }
            println!("xprv {}", w.master().to_base58().as_str());
            println!("path {}", w.account_path());
            eprintln!("these are the wallet's secrets: anyone who sees them can spend its coins");
            Ok(())
        }
    }
}

fn need_node(o: &Opts) -> Result<SocketAddr> {
    o.node
        .ok_or_else(|| anyhow::anyhow!("give --node RPCADDR (the node's JSON-RPC address)"))
}

fn refuse_existing(path: &Path) -> Result<()> {
    if path.exists() {
        bail!("{} exists: refusing to overwrite a wallet", path.display());
    }
    Ok(())
}

/// The password: --password-file, else SERVENT_WALLET_PASSWORD, else the terminal (twice when
/// `confirm`). Never a default, never empty.
fn password(o: &Opts, confirm: bool) -> Result<Password> {
    if let Some(f) = &o.password_file {
        let mut s = Zeroizing::new(String::new());
        std::fs::File::open(f)
            .and_then(|h| h.take(4096).read_to_string(&mut s))
            .with_context(|| format!("reading the password file {}", f.display()))?;
        let line = s.lines().next().unwrap_or("").to_string();
        return Password::new(line)
            .ok_or_else(|| anyhow::anyhow!("the password file {} is empty", f.display()));
    }
    if let Ok(s) = std::env::var(PASSWORD_ENV) {
        return Password::new(s).ok_or_else(|| anyhow::anyhow!("{PASSWORD_ENV} is empty"));
    }
    let first = tty_password("wallet password: ")?;
    if confirm {
        let again = tty_password("again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
    }
    Ok(first)
}

/// Reads a line from /dev/tty with echo off (`stty -echo` on the terminal, restored after).
fn tty_password(prompt: &str) -> Result<Password> {
    let no_tty = || {
        anyhow::anyhow!(
            "no password: give --password-file FILE, set {PASSWORD_ENV}, or run on a terminal (there is no default)"
        )
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_tty())?;
    let stty = |arg: &str| -> Result<()> {
        let input = tty.try_clone().context("the terminal")?;
        let ok = std::process::Command::new("stty")
            .arg(arg)
            .stdin(input)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            bail!("cannot turn the terminal's echo off (stty {arg})");
        }
        Ok(())
    };
    stty("-echo").map_err(|_| no_tty())?;
    let mut line = Zeroizing::new(String::new());
    let r = (&tty).write_all(prompt.as_bytes()).and_then(|()| {
        std::io::BufReader::new(&tty)
            .take(4096)
            .read_line(&mut line)
    });
    // The terminal gets its echo back whatever the read did.
    let restored = stty("echo");
    let _ = (&tty).write_all(b"\n");
    r.context("reading the password")?;
    restored?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    Password::new(p).ok_or_else(|| anyhow::anyhow!("empty password"))
}

fn read_mnemonic() -> Result<Zeroizing<String>> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("mnemonic words: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .take(4096)
        .read_line(&mut line)
        .context("reading the mnemonic from standard input")?;
    if line.trim().is_empty() {
        bail!("no mnemonic on standard input");
    }
    Ok(line)
}

fn open(o: &Opts) -> Result<(Wallet, Password)> {
    let path = &o.wallet;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_LEN as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading the wallet {}", path.display()))?;
    let pw = password(o, false)?;
    let p = decrypt(&bytes, &pw).map_err(|e| match e {
        WalletFileError::WrongPassword => anyhow::anyhow!(
            "{}: wrong password (or the file was altered)",
            path.display()
        ),
        e => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    Ok((Wallet::new(p)?, pw))
}

/// Writes the wallet atomically: a temp file in the same directory, fsync, rename over the old
/// file, fsync of the directory.
fn save(path: &Path, w: &Wallet, pw: &Password) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
    let bytes = encrypt(&w.to_payload(), pw, &salt, &nonce).context("encrypting the wallet")?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| anyhow::anyhow!("{} is not a file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("saving the wallet {}: {e}", path.display())
    })?;
    remove_stale_temps(&dir, &name.to_string_lossy());
    Ok(())
}

/// Removes temp files that killed saves left (their process is gone; a live one may still be
/// writing its own). The wallet itself never depends on them.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten().take(10_000) {
        let file = e.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A 32-byte hash from its display hex (reversed, as RPC writes it).
fn unhash(v: &serde_json::Value, what: &str) -> Result<[u8; 32]> {
    let s = v
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{what}: not a string"))?;
    let b = unhex(s).with_context(|| what.to_string())?;
    let mut h: [u8; 32] = b
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what}: not 32 bytes"))?;
    h.reverse();
    Ok(h)
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not hex");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(Into::into))
        .collect()
}

fn genesis_of(n: Network) -> Option<[u8; 32]> {
    match n {
        Network::Regtest => Some(Params::regtest().genesis.header.hash()),
        Network::Mainnet => Some(Params::mainnet().genesis.header.hash()),
        Network::Testnet => None,
    }
}

async fn check_network(w: &Wallet, node: SocketAddr) -> Result<()> {
    if let Some(g) = genesis_of(w.network()) {
        let got = unhash(
            &rpc_call(node, "getblockhash", serde_json::json!([0])).await?,
            "getblockhash",
        )?;
        if got != g {
            bail!(
                "the node at {node} is not on {} (its genesis block differs)",
                network_name(w.network())
            );
        }
    }
    Ok(())
}

/// A new wallet starts at the node's tip: no block before can pay it.
async fn skip_to_tip(w: &mut Wallet, node: SocketAddr) -> Result<()> {
    check_network(w, node).await?;
    let count = rpc_call(node, "getblockcount", serde_json::json!([]))
        .await?
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("getblockcount: not a number"))?;
    let count = u32::try_from(count).context("getblockcount")?;
    let hash = unhash(
        &rpc_call(node, "getblockhash", serde_json::json!([count])).await?,
        "getblockhash",
    )?;
    if !w.start_at(count, hash) {
        bail!("the wallet has already scanned blocks");
    }
    Ok(())
}

async fn fetch_block(node: SocketAddr, height: u32) -> Result<([u8; 32], Block)> {
    let hash_v = rpc_call(node, "getblockhash", serde_json::json!([height])).await?;
    let hash = unhash(&hash_v, "getblockhash")?;
    let raw = rpc_call(node, "getblock", serde_json::json!([hash_v, 0])).await?;
    let raw = unhex(raw.as_str().unwrap_or("")).context("getblock: not hex")?;
    let block = Block::decode(&raw).context("getblock: the block does not decode")?;
    if block.header.hash() != hash {
        bail!(
            "getblock: the node sent block {} for {}",
            block.header.hash_hex(),
            hash_hex(&hash)
        );
    }
    Ok((hash, block))
}

/// Catches up with the node: reorganisation, missed blocks, mempool.
async fn sync(w: &mut Wallet, node: SocketAddr) -> Result<()> {
    check_network(w, node).await?;
    for _round in 0..5 {
        let count = rpc_call(node, "getblockcount", serde_json::json!([]))
            .await?
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("getblockcount: not a number"))?;
        let count = u32::try_from(count).context("getblockcount")?;
        // Back to the last block the node still has on its best chain.
        let mut undone = 0u32;
        while let Some((h, hash)) = w.tip() {
            if h <= count {
                let at = unhash(
                    &rpc_call(node, "getblockhash", serde_json::json!([h])).await?,
                    "getblockhash",
                )?;
                if at == hash {
                    break;
                }
            }
            undone += 1;
            if !w.disconnect_tip() {
                eprintln!(
                    "reorganisation deeper than the wallet keeps: rescanning from the genesis block"
                );
                break;
            }
        }
        if undone > 0 {
            eprintln!("reorganisation: {undone} block(s) undone");
        }
        let start = w.next_height();
        if start <= count {
            let n = count - start + 1;
            if n > 1 {
                eprintln!("scanning {n} blocks ({start}..={count})");
            }
            for h in start..=count {
                let (hash, block) = fetch_block(node, h).await?;
                w.connect_block(h, hash, &block)
                    .with_context(|| format!("scanning block {h}"))?;
                if n >= 1000 && (h - start + 1) % 1000 == 0 {
                    eprintln!("  scanned {} of {n}", h - start + 1);
                }
            }
        }
        // The mempool: payments to us not yet mined, and ours.
        let list = rpc_call(node, "getrawmempool", serde_json::json!([])).await?;
        let ids = list
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("getrawmempool: not a list"))?;
        let mut in_pool = std::collections::BTreeSet::new();
        for v in ids.iter().take(MAX_MEMPOOL_SCAN) {
            let txid = unhash(v, "getrawmempool")?;
            in_pool.insert(txid);
            if w.contains(&txid) {
                continue;
            }
            // A transaction may leave the mempool between the two calls.
            let Ok(raw) = rpc_call(node, "getrawtransaction", serde_json::json!([v, false])).await
            else {
                continue;
            };
            let Some(tx) = raw
                .as_str()
                .and_then(|s| unhex(s).ok())
                .and_then(|b| Transaction::decode(&b).ok())
            else {
                continue;
            };
            w.add_unconfirmed(&tx)?;
        }
        // Our unconfirmed transactions the node does not have: broadcast again (Core
        // rebroadcasts); one it refuses can never confirm and is dropped.
        let mut dropped = Vec::new();
        for tx in w.unconfirmed() {
            let txid = tx.txid();
            if in_pool.contains(&txid) {
                continue;
            }
            if rpc_call(
                node,
                "sendrawtransaction",
                serde_json::json!([hex(&tx.encode())]),
            )
            .await
            .is_err()
            {
                dropped.push(txid);
            }
        }
        let again = rpc_call(node, "getblockcount", serde_json::json!([]))
            .await?
            .as_u64();
        if again != Some(u64::from(count)) {
            // A block came in meanwhile: what seemed dropped may be in it.
            continue;
        }
        for txid in dropped {
            eprintln!(
                "transaction {} is no longer valid: dropped",
                hash_hex(&txid)
            );
            w.remove_unconfirmed(&txid);
        }
        return Ok(());
    }
    bail!("the node's chain kept moving while the wallet scanned it; try again")
}

/// One JSON-RPC call over HTTP/1.1 (Connection: close): the result, or the node's error.
async fn rpc_call(
    node: SocketAddr,
    method: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value> {
    crate::coin::rpc_call_within(node, method, params, Duration::from_secs(120)).await
}

/// A `servent coin node` child process (this binary) with RPC; killed on drop.
struct ChildNode {
    child: std::process::Child,
    rpc: SocketAddr,
}

impl ChildNode {
    fn start(data: &Path, peer: SocketAddr) -> Result<ChildNode> {
        let exe = std::env::current_exe().context("finding this binary")?;
        let mut child = std::process::Command::new(exe)
            .args([
                "coin",
                "node",
                "--network",
                "regtest",
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(data)
            .args(["--rpc", "127.0.0.1:0", "--peer", &peer.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting a node process")?;
        let out = child.stdout.take().context("the node's stdout")?;
        let mut node = ChildNode {
            child,
            rpc: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        // The `rpc ADDR` line comes first thing; a node that does not print it is stopped.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("rpc ") {
                    let _ = tx.send(a.to_string());
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .context("the node process printed no rpc address in 30 s")?;
        node.rpc = line.parse().context("the node's rpc address")?;
        Ok(node)
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn demo_count(node: SocketAddr) -> Result<u64> {
    rpc_call(node, "getblockcount", serde_json::json!([]))
        .await?
        .as_u64()
        .context("getblockcount")
}

/// Polls (bounded) until `node` is at `height` and, if given, holds `txid` in its mempool.
async fn demo_until(node: SocketAddr, height: u64, txid: Option<&str>) -> Result<bool> {
    for _ in 0..300 {
        let at = demo_count(node).await.unwrap_or(0);
        let has = match txid {
            Some(t) => rpc_call(node, "getrawmempool", serde_json::json!([]))
                .await
                .is_ok_and(|l| l.as_array().is_some_and(|l| l.iter().any(|x| x == t))),
            None => true,
        };
        if at >= height && has {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

fn demo_wallet() -> Result<Wallet> {
    let mut entropy = Zeroizing::new(vec![0u8; 16]);
    getrandom::fill(&mut entropy).map_err(|e| anyhow::anyhow!("reading OS randomness: {e}"))?;
    let m = Mnemonic::from_entropy(&entropy)?;
    let mut p = WalletPayload::new(Network::Regtest, m.to_seed(""));
    p.entropy = Some(m.entropy());
    Ok(Wallet::new(p)?)
}

async fn demo_pay(w: &mut Wallet, node: SocketAddr, to: &Address, amount: u64) -> Result<String> {
    sync(w, node).await?;
    let change = w.new_change_address()?;
    let p = build_payment(
        &w.spendable()?,
        &PaymentRequest {
            to_script: to.script_pubkey(),
            amount,
            fee_rate: DEFAULT_FEE_RATE,
            change_script: change.script_pubkey(),
            lock_time: w.tip().map_or(0, |t| t.0),
            change_first: false,
        },
    )?;
    let txid = rpc_call(
        node,
        "sendrawtransaction",
        serde_json::json!([hex(&p.tx.encode())]),
    )
    .await?;
    w.add_unconfirmed(&p.tx)?;
    Ok(txid.as_str().unwrap_or_default().to_string())
}

/// The demo's payments: wallet A (on node P) pays wallet B (on node Q, a separate process):
/// pending, then confirmed; then B's node is stopped while A pays again and a block confirms it,
/// and after the restart B finds the payment.
pub(crate) async fn demo(dir: &Path, sec: &mut crate::demo::DemoSection) -> Result<()> {
    use servent_coin::driver::{NodeOptions, start};
    let p = start(NodeOptions {
        params: Params::regtest(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data: dir.join("pay-p"),
        peers: vec![],
        rpc: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        redial: Duration::from_secs(1),
    })
    .await?;
    let p_rpc = p.rpc.context("node P's rpc")?;
    let mut q = ChildNode::start(&dir.join("pay-q"), p.p2p)?;
    let mut a = demo_wallet()?;
    let mut b = demo_wallet()?;
    let a_addr = a.new_receive_address()?.encode(Network::Regtest);
    rpc_call(p_rpc, "generatetoaddress", serde_json::json!([101, a_addr])).await?;
    let b1 = b.new_receive_address()?;
    let txid = demo_pay(&mut a, p_rpc, &b1, 100_000_000).await?;
    let relayed = demo_until(q.rpc, 101, Some(&txid)).await?;
    sync(&mut b, q.rpc).await?;
    let pending = b.balance();
    rpc_call(p_rpc, "generatetoaddress", serde_json::json!([1, a_addr])).await?;
    let mined = demo_until(q.rpc, 102, None).await?;
    sync(&mut b, q.rpc).await?;
    let confirmed = b.balance();
    let ok = relayed
        && mined
        && pending.pending == 100_000_000
        && pending.confirmed == 0
        && confirmed.confirmed == 100_000_000
        && confirmed.pending == 0;
    sec.row(
        "wallet A pays wallet B 1 BTC (B on another node)",
        format!(
            "B's balance: pending {} while in the mempool, confirmed {} after one block",
            format_btc(pending.pending),
            format_btc(confirmed.confirmed)
        ),
        ok,
    );

    // B's node goes offline; A pays B's next address and a block confirms it.
    drop(q);
    let b2 = b.new_receive_address()?;
    demo_pay(&mut a, p_rpc, &b2, 50_000_000).await?;
    rpc_call(p_rpc, "generatetoaddress", serde_json::json!([1, a_addr])).await?;
    q = ChildNode::start(&dir.join("pay-q"), p.p2p)?;
    let caught = demo_until(q.rpc, 103, None).await?;
    sync(&mut b, q.rpc).await?;
    let after = b.balance();
    sec.row(
        "B's node offline while A pays 0.5 BTC and it is mined",
        format!(
            "after the restart B's node {} and B's wallet rescans: confirmed {}",
            if caught {
                "catches up to height 103"
            } else {
                "did not catch up in 30 s"
            },
            format_btc(after.confirmed)
        ),
        caught && after.confirmed == 150_000_000,
    );
    drop(q);
    Ok(())
}
