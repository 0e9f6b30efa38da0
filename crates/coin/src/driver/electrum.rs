//! The Electrum server on TCP, beside a node it follows over JSON-RPC (as electrs does).
//!
//! [`start`] indexes the node's chain from genesis (`getblockhash` and `getblock HASH 0` per
//! height), binds the listener and spawns two tasks: the poller, which every
//! [`ElectrumOptions::poll`] follows the node's tip (walking back to the fork point on a
//! reorganisation, then forward) and its mempool (`getrawmempool`, then `getrawtransaction` for
//! transactions it has not seen), and the acceptor, one task per client running a
//! [`Session`]. Clients are told of changes after every poll that changed the index.
//!
//! The index lives in memory and is rebuilt from the node at every start (the node is the
//! store; a regtest chain indexes in moments). The data directory holds `electrum-tip.json`,
//! the last indexed height and hash, written atomically after each change, so a restart says
//! where the previous run stopped.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};

use crate::core::electrum::Index;
use crate::core::electrum::session::{Limits, ServerInfo, Session, Slot};
use crate::wire::electrum::{LineBuffer, error_response, parse_line, to_line};
use crate::wire::{Block, Transaction};

/// What to run.
#[derive(Debug, Clone)]
pub struct ElectrumOptions {
    /// The node's JSON-RPC address.
    pub node: SocketAddr,
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// How often the node is asked for news.
    pub poll: Duration,
    /// Most clients at once.
    pub max_sessions: usize,
    pub limits: Limits,
}

impl ElectrumOptions {
    pub fn new(node: SocketAddr, listen: SocketAddr, data: PathBuf) -> Self {
        Self {
            node,
            listen,
            data,
            poll: Duration::from_secs(1),
            max_sessions: 256,
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectrumError {
    #[error("data directory {0}: {1}")]
    Data(PathBuf, std::io::Error),
    #[error("node RPC at {0}: {1}")]
    Node(SocketAddr, String),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// The most a node's RPC answer may hold (a block in hex is twice its size).
const MAX_RPC_ANSWER: u64 = 16 << 20;
/// The most mempool transactions followed.
const MAX_MEMPOOL: usize = 50_000;

/// Call `method` on the node; `Err` carries the node's error message (or why it could not be
/// reached).
pub async fn rpc(node: SocketAddr, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let work = async {
        let mut s = TcpStream::connect(node)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let req = format!(
            "POST / HTTP/1.1\r\nHost: {node}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut out = Vec::new();
        (&mut s)
            .take(MAX_RPC_ANSWER)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .map_err(|_| format!("{method}: no answer in 60 s"))??;
    let start = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .ok_or_else(|| format!("{method}: truncated HTTP answer"))?;
    let v: Value = serde_json::from_slice(&out[start..])
        .map_err(|e| format!("{method}: answer is not JSON: {e}"))?;
    match v.get("error") {
        Some(Value::Null) | None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        Some(e) => Err(e
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| e.to_string(), str::to_string)),
    }
}

async fn rpc_str(node: SocketAddr, method: &str, params: Value) -> Result<String, String> {
    match rpc(node, method, params).await? {
        Value::String(s) => Ok(s),
        other => Err(format!("{method}: expected a string, got {other}")),
    }
}

async fn block_at(node: SocketAddr, height: u32) -> Result<Block, String> {
    let hash = rpc_str(node, "getblockhash", json!([height])).await?;
    let raw = rpc_str(node, "getblock", json!([hash, 0])).await?;
    let bytes = hex::decode(raw).map_err(|e| format!("getblock {hash}: not hex: {e}"))?;
    Block::decode(&bytes).map_err(|e| format!("getblock {hash}: {e}"))
}

/// Bring `index` to the node's tip: back to the fork point, then forward. Returns whether it
/// changed. `progress` hears each height connected.
async fn follow_chain(
    node: SocketAddr,
    index: &RwLock<Index>,
    mut progress: impl FnMut(u32),
) -> Result<bool, String> {
    let read = |f: &dyn Fn(&Index) -> Option<u32>| index.read().ok().and_then(|i| f(&i));
    let count = rpc(node, "getblockcount", json!([]))
        .await?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or("getblockcount: not a height")?;
    let mut changed = false;
    // Walk back while our tip is not on the node's chain.
    while let Some(h) = read(&|i| i.height()) {
        let ours = index.read().ok().and_then(|i| i.tip_hash());
        // An RPC failure stops the walk (an unreachable node is no reorganisation).
        let theirs = if h <= count {
            let s = rpc_str(node, "getblockhash", json!([h])).await?;
            Some(
                crate::core::electrum::parse_hash_hex(&s)
                    .ok_or_else(|| format!("getblockhash {h}: not a hash: {s}"))?,
            )
        } else {
            None
        };
        if theirs.is_some() && theirs == ours {
            break;
        }
        if let Ok(mut i) = index.write() {
            i.disconnect_tip();
        }
        changed = true;
    }
    let mut next = read(&|i| i.height()).map_or(0, |h| h + 1);
    while next <= count {
        let b = block_at(node, next).await?;
        let r = index
            .write()
            .map_err(|_| "index lock poisoned".to_string())?
            .connect(&b);
        if r.is_err() {
            // The node reorganised while we read it: the next poll walks back.
            return Ok(changed);
        }
        changed = true;
        progress(next);
        next += 1;
    }
    Ok(changed)
}

/// Give the index the node's mempool; returns whether the set of transactions changed.
async fn follow_mempool(node: SocketAddr, index: &RwLock<Index>) -> Result<bool, String> {
    let ids = rpc(node, "getrawmempool", json!([])).await?;
    let ids: Vec<[u8; 32]> = ids
        .as_array()
        .ok_or("getrawmempool: not an array")?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(crate::core::electrum::parse_hash_hex)
        .take(MAX_MEMPOOL)
        .collect();
    let mut txs: BTreeMap<[u8; 32], Transaction> = BTreeMap::new();
    let mut fresh = Vec::new();
    if let Ok(i) = index.read() {
        for id in &ids {
            match i.mempool_tx(id) {
                Some(t) => {
                    txs.insert(*id, t.clone());
                }
                None => fresh.push(*id),
            }
        }
        if fresh.is_empty() && txs.len() == i.mempool_snapshot_len() {
            return Ok(false);
        }
    }
    for id in fresh {
        // Gone between the two calls (mined or evicted): the next poll sees it right.
        let Ok(raw) = rpc_str(node, "getrawtransaction", json!([crate::hash_hex(&id)])).await
        else {
            continue;
        };
        if let Some(t) = hex::decode(raw)
            .ok()
            .and_then(|b| Transaction::decode(&b).ok())
        {
            txs.insert(id, t);
        }
    }
    if let Ok(mut i) = index.write() {
        i.set_mempool(txs.into_values().collect());
    }
    Ok(true)
}

fn write_tip(dir: &Path, index: &RwLock<Index>) -> std::io::Result<()> {
    let (height, hash) = match index.read() {
        Ok(i) => (i.height(), i.tip_hash()),
        Err(_) => return Ok(()),
    };
    let body = json!({"height": height, "hash": hash.map(|h| crate::hash_hex(&h))}).to_string();
    let path = dir.join("electrum-tip.json");
    let tmp = dir.join("electrum-tip.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(body.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The height the previous run recorded in `dir`, if any.
pub fn previous_tip(dir: &Path) -> Option<u32> {
    let b = std::fs::read(dir.join("electrum-tip.json")).ok()?;
    let v: Value = serde_json::from_slice(&b).ok()?;
    v.get("height")?
        .as_u64()
        .and_then(|h| u32::try_from(h).ok())
}

/// A running server.
pub struct RunningElectrum {
    pub local: SocketAddr,
    index: Arc<RwLock<Index>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningElectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningElectrum")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl RunningElectrum {
    /// The indexed tip height.
    pub fn height(&self) -> Option<u32> {
        self.index.read().ok().and_then(|i| i.height())
    }
    /// Stop serving (sessions end with their tasks).
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Index the node's chain, bind, and serve. `progress` hears each height indexed at start.
pub async fn start(
    opts: ElectrumOptions,
    progress: impl FnMut(u32),
) -> Result<RunningElectrum, ElectrumError> {
    std::fs::create_dir_all(&opts.data).map_err(|e| ElectrumError::Data(opts.data.clone(), e))?;
    let node = opts.node;
    let genesis = rpc_str(node, "getblockhash", json!([0]))
        .await
        .map_err(|e| ElectrumError::Node(node, e))?;
    let relay_fee = rpc(node, "getmempoolinfo", json!([]))
        .await
        .ok()
        .and_then(|v| v.get("minrelaytxfee").and_then(Value::as_f64))
        .unwrap_or(0.00001);
    let index = Arc::new(RwLock::new(Index::new()));
    follow_chain(node, &index, progress)
        .await
        .map_err(|e| ElectrumError::Node(node, e))?;
    follow_mempool(node, &index)
        .await
        .map_err(|e| ElectrumError::Node(node, e))?;
    write_tip(&opts.data, &index).map_err(|e| ElectrumError::Data(opts.data.clone(), e))?;
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| ElectrumError::Bind(opts.listen, e))?;
    let local = listener.local_addr().unwrap_or(opts.listen);
    let info = Arc::new(ServerInfo {
        software: format!("servent {}", env!("CARGO_PKG_VERSION")),
        genesis_hash: genesis,
        banner: "servent's Electrum server".into(),
        donation_address: String::new(),
        relay_fee,
    });
    let (changed_tx, changed_rx) = watch::channel(0u64);
    let wake = Arc::new(Notify::new());

    let poll_index = index.clone();
    let poll_wake = wake.clone();
    let data = opts.data.clone();
    let poller = tokio::spawn(async move {
        let mut version = 0u64;
        loop {
            tokio::select! {
                () = tokio::time::sleep(opts.poll) => {}
                () = poll_wake.notified() => {}
            }
            let chain = follow_chain(node, &poll_index, |_| {}).await;
            let pool = follow_mempool(node, &poll_index).await;
            match (&chain, &pool) {
                (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "following the node"),
                _ => {}
            }
            if matches!(chain, Ok(true)) {
                if let Err(e) = write_tip(&data, &poll_index) {
                    tracing::warn!(error = %e, "writing electrum-tip.json");
                }
            }
            if matches!(chain, Ok(true)) || matches!(pool, Ok(true)) {
                version += 1;
                let _ = changed_tx.send(version);
            }
        }
    });

    let sessions = Arc::new(Semaphore::new(opts.max_sessions));
    let limits = opts.limits;
    let acc_index = index.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Ok(permit) = sessions.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many Electrum sessions: refused");
                continue;
            };
            let (index, info, changed, wake) = (
                acc_index.clone(),
                info.clone(),
                changed_rx.clone(),
                wake.clone(),
            );
            tokio::spawn(async move {
                let r = session(sock, node, index, info, changed, wake, limits).await;
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "electrum session ended");
                }
                drop(permit);
            });
        }
    });
    Ok(RunningElectrum {
        local,
        index,
        tasks: vec![poller, acceptor],
    })
}

/// How long a client may stay silent (Electrum pings every minute or so).
const IDLE: Duration = Duration::from_secs(600);

async fn session(
    mut sock: TcpStream,
    node: SocketAddr,
    index: Arc<RwLock<Index>>,
    info: Arc<ServerInfo>,
    mut changed: watch::Receiver<u64>,
    wake: Arc<Notify>,
    limits: Limits,
) -> std::io::Result<()> {
    let mut s = Session::new(limits);
    let mut lines = LineBuffer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            r = tokio::time::timeout(IDLE, sock.read(&mut buf)) => {
                let n = match r {
                    Ok(r) => r?,
                    Err(_) => return Ok(()),
                };
                if n == 0 {
                    return Ok(());
                }
                if lines.push(&buf[..n]).is_err() {
                    return Ok(());
                }
                loop {
                    let line = match lines.next_line() {
                        Ok(Some(l)) => l,
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    };
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let out = match parse_line(&line) {
                        Err(e) => Some(error_response(&Value::Null, &e)),
                        Ok(incoming) => {
                            let mut handled = match index.read() {
                                Ok(i) => s.handle(&i, &info, incoming),
                                Err(_) => return Ok(()),
                            };
                            let mut broadcast = false;
                            for slot in &mut handled.slots {
                                if let Slot::Broadcast { raw_hex, .. } = slot {
                                    let r = rpc_str(node, "sendrawtransaction", json!([raw_hex])).await;
                                    broadcast |= r.is_ok();
                                    *slot = slot.clone().resolve(r);
                                }
                            }
                            if broadcast {
                                wake.notify_one();
                            }
                            handled.answer()
                        }
                    };
                    if let Some(v) = out {
                        sock.write_all(&to_line(&v)).await?;
                    }
                }
            }
            r = changed.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let notes = match index.read() {
                    Ok(i) => s.notifications(&i),
                    Err(_) => return Ok(()),
                };
                for n in notes {
                    sock.write_all(&to_line(&n)).await?;
                }
            }
        }
    }
}
