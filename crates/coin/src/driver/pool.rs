//! The pool on tokio: Stratum v1 over TCP for miners, a node's JSON-RPC for templates
//! (`getblocktemplate` every [`PoolOptions::refresh`] and at once when `getbestblockhash`
//! changes, polled every 250 ms) and blocks (`submitblock`), and the pool page over HTTP
//! (`/` in HTML, `/stats.json`). One task owns the [`Pool`] core; connections and the node
//! poller talk to it over bounded channels; a miner that does not read its lines is closed.
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use servent_http::{Limits, ResponseHead, parse_request, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::core::node::address::{MAINNET_P2PKH, REGTEST_P2PKH};
use crate::core::pool::{Pool, PoolConfig, PoolEvent, SessionId, Template};
use crate::wire::stratum::{self, next_line};
use crate::wire::{Encode, Transaction};
use crate::{Params, hash_hex};

/// Lines queued for one miner before it counts as not reading (and is closed).
const PER_CONN_QUEUE: usize = 256;
/// Largest RPC answer read.
const MAX_RPC_ANSWER: u64 = 64 << 20;
/// A miner's connection is closed after this long without a line.
const IDLE: Duration = Duration::from_secs(600);

/// What to run.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// The node's JSON-RPC address.
    pub node: SocketAddr,
    /// Stratum listen address.
    pub listen: SocketAddr,
    /// Pool page address (none if absent).
    pub http: Option<SocketAddr>,
    pub share_difficulty: Option<f64>,
    pub window: usize,
    pub fee_percent: f64,
    pub fee_address: Option<String>,
    pub max_connections: usize,
    /// How often a fresh template is fetched on the same tip.
    pub refresh: Duration,
}

impl PoolOptions {
    pub fn new(node: SocketAddr, listen: SocketAddr) -> PoolOptions {
        PoolOptions {
            node,
            listen,
            http: None,
            share_difficulty: None,
            window: 1000,
            fee_percent: 0.0,
            fee_address: None,
            max_connections: 256,
            refresh: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolDriverError {
    #[error("node RPC at {addr}: {why}")]
    Rpc { addr: SocketAddr, why: String },
    #[error("the node's template: {0}")]
    Template(String),
    #[error("{0}")]
    Pool(#[from] crate::core::pool::PoolError),
    #[error("--fee-percent {0}: expected 0..=100")]
    Fee(f64),
    #[error("a fee needs a fee address")]
    FeeAddress,
    #[error("cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("os randomness: {0}")]
    Random(#[from] servent_runtime::OsRandomError),
    #[error("the pool has stopped")]
    Stopped,
}

/// News for the operator.
#[derive(Debug, Clone)]
pub enum PoolNews {
    Connected {
        session: u64,
        peer: SocketAddr,
    },
    Disconnected {
        session: u64,
    },
    BlockFound {
        height: u32,
        hash: [u8; 32],
        user: String,
        payouts: Vec<(String, i64)>,
        /// `None`: the node accepted it; else its reason.
        rejected: Option<String>,
    },
    NewTip {
        height: u32,
        prev: [u8; 32],
    },
}

enum In {
    Conn {
        out: mpsc::Sender<Vec<u8>>,
        peer: SocketAddr,
        reply: oneshot::Sender<Option<SessionId>>,
    },
    Line(SessionId, Vec<u8>),
    Closed(SessionId),
    Template(Template),
    Verdict([u8; 32], Option<String>),
    Stats(oneshot::Sender<Value>),
}

/// A running pool.
#[derive(Debug)]
pub struct RunningPool {
    pub stratum: SocketAddr,
    pub http: Option<SocketAddr>,
    /// The network's name (`regtest` or `mainnet`).
    pub network: &'static str,
    /// The share difficulty in force.
    pub share_difficulty: f64,
    pub network_difficulty: f64,
    pub news: mpsc::Receiver<PoolNews>,
    handle: PoolHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Asks the pool for its statistics.
#[derive(Debug, Clone)]
pub struct PoolHandle {
    tx: mpsc::Sender<In>,
}

impl std::fmt::Debug for In {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("In")
    }
}

impl PoolHandle {
    /// The pool's statistics (the pool page's `/stats.json`).
    pub async fn stats(&self) -> Result<Value, PoolDriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(In::Stats(tx))
            .await
            .map_err(|_| PoolDriverError::Stopped)?;
        rx.await.map_err(|_| PoolDriverError::Stopped)
    }
}

impl RunningPool {
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }
    /// Stop every task of the pool.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for RunningPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One JSON-RPC call (HTTP/1.1, `Connection: close`): the result, or the node's error.
pub async fn rpc_call(
    addr: SocketAddr,
    method: &str,
    params: Value,
) -> Result<Value, PoolDriverError> {
    let fail = |why: String| PoolDriverError::Rpc { addr, why };
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| fail("connect timed out".into()))?
        .map_err(|e| fail(format!("connect: {e}")))?;
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut out = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(120),
        (&mut s).take(MAX_RPC_ANSWER).read_to_end(&mut out),
    )
    .await
    .map_err(|_| fail(format!("{method}: no answer in 120 s")))?
    .map_err(|e| fail(format!("read: {e}")))?;
    let (_, used) = parse_response(&out, &Limits::default())
        .map_err(|e| fail(format!("{method}: {e}")))?
        .ok_or_else(|| fail(format!("{method}: truncated answer")))?;
    let v: Value = serde_json::from_slice(&out[used..])
        .map_err(|e| fail(format!("{method}: answer is not JSON: {e}")))?;
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        return Err(fail(format!("{method}: {e}")));
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

fn hex32_rev(v: &Value, what: &str) -> Result<[u8; 32], PoolDriverError> {
    let s = v
        .as_str()
        .ok_or_else(|| PoolDriverError::Template(format!("{what} missing")))?;
    let b = stratum::unhex_bounded(s, 32)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| PoolDriverError::Template(format!("{what} is not 32 bytes of hex")))?;
    let mut h = [0u8; 32];
    h.copy_from_slice(&b);
    h.reverse();
    Ok(h)
}

/// A pool template from a `getblocktemplate` answer.
pub fn template_from_gbt(gbt: &Value) -> Result<Template, PoolDriverError> {
    let bad = |w: &str| PoolDriverError::Template(format!("{w} missing or malformed"));
    let u32_of = |k: &str| {
        gbt[k]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| bad(k))
    };
    let mut txs = Vec::new();
    for t in gbt["transactions"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let raw = t["data"]
            .as_str()
            .and_then(|d| stratum::unhex_bounded(d, 4_000_000))
            .ok_or_else(|| bad("transaction data"))?;
        txs.push(
            Transaction::decode(&raw)
                .map_err(|e| PoolDriverError::Template(format!("transaction: {e}")))?,
        );
    }
    Ok(Template {
        height: u32_of("height")?,
        version: gbt["version"]
            .as_i64()
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| bad("version"))?,
        prev: hex32_rev(&gbt["previousblockhash"], "previousblockhash")?,
        bits: gbt["bits"]
            .as_str()
            .and_then(|b| u32::from_str_radix(b, 16).ok())
            .ok_or_else(|| bad("bits"))?,
        time: u32_of("curtime")?,
        coinbase_value: gbt["coinbasevalue"]
            .as_i64()
            .ok_or_else(|| bad("coinbasevalue"))?,
        txs,
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Start the pool: ask the node for its network and a first template, bind the listeners.
pub async fn start(opts: PoolOptions) -> Result<RunningPool, PoolDriverError> {
    if !(0.0..=100.0).contains(&opts.fee_percent) {
        return Err(PoolDriverError::Fee(opts.fee_percent));
    }
    let fee_bp = (opts.fee_percent * 100.0).round() as u32;
    if fee_bp > 0 && opts.fee_address.is_none() {
        return Err(PoolDriverError::FeeAddress);
    }
    let genesis = rpc_call(opts.node, "getblockhash", json!([0])).await?;
    let (network, version) =
        if genesis.as_str() == Some(&Params::mainnet().genesis.header.hash_hex()) {
            ("mainnet", MAINNET_P2PKH)
        } else {
            ("regtest", REGTEST_P2PKH)
        };
    let first = template_from_gbt(&rpc_call(opts.node, "getblocktemplate", json!([])).await?)?;
    let started = std::time::Instant::now();
    let unix_at_zero = unix_now();
    let now = move || servent_core::Instant::from_micros(started.elapsed().as_micros() as u64);
    let mut pool = Pool::new(
        PoolConfig {
            p2pkh_version: version,
            share_difficulty: opts.share_difficulty,
            window: opts.window,
            fee_bp,
            fee_address: if fee_bp > 0 {
                opts.fee_address.clone()
            } else {
                None
            },
            max_sessions: opts.max_connections,
            unix_at_zero,
            tag: b"/servent-pool/".to_vec(),
        },
        servent_runtime::os_rng()?,
    )?;
    let first_prev = first.prev;
    let first_height = first.height;
    let net_diff = crate::core::pool::shares::difficulty_of(crate::core::pow::U256::from_be_bytes(
        &crate::target_from_compact(first.bits).target,
    ));
    pool.handle_template(now(), first)?;
    let share_difficulty = pool.share_difficulty();

    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|e| PoolDriverError::Bind(opts.listen, e))?;
    let stratum_addr = listener.local_addr().unwrap_or(opts.listen);
    let http = match opts.http {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| PoolDriverError::Bind(a, e))?,
        ),
        None => None,
    };
    let http_addr = http.as_ref().and_then(|l| l.local_addr().ok());

    let (in_tx, mut in_rx) = mpsc::channel::<In>(4096);
    let (news_tx, news_rx) = mpsc::channel::<PoolNews>(1024);
    let (fetch_tx, mut fetch_rx) = mpsc::channel::<()>(1);
    let node = opts.node;

    // The core's task.
    let core_news = news_tx.clone();
    let core_in = in_tx.clone();
    let core_fetch = fetch_tx.clone();
    let core = tokio::spawn(async move {
        let mut conns: std::collections::BTreeMap<SessionId, mpsc::Sender<Vec<u8>>> =
            std::collections::BTreeMap::new();
        while let Some(input) = in_rx.recv().await {
            match input {
                In::Conn { out, peer, reply } => {
                    let id = pool.handle_connect(now());
                    if let Some(id) = id {
                        conns.insert(id, out);
                        let _ = core_news.try_send(PoolNews::Connected {
                            session: id.0,
                            peer,
                        });
                    }
                    let _ = reply.send(id);
                }
                In::Line(id, line) => pool.handle_line(now(), id, &line),
                In::Closed(id) => {
                    pool.handle_disconnect(id);
                    if conns.remove(&id).is_some() {
                        let _ = core_news.try_send(PoolNews::Disconnected { session: id.0 });
                    }
                }
                In::Template(t) => {
                    let (height, prev) = (t.height, t.prev);
                    let new_tip = pool.current_job().is_none_or(|j| j.prev != prev);
                    match pool.handle_template(now(), t) {
                        Ok(()) if new_tip => {
                            let _ = core_news.try_send(PoolNews::NewTip { height, prev });
                        }
                        Ok(()) => {}
                        Err(e) => tracing::warn!(%e, "template refused"),
                    }
                }
                In::Verdict(hash, verdict) => pool.handle_block_verdict(hash, verdict),
                In::Stats(reply) => {
                    let _ = reply.send(pool.stats(now()));
                }
            }
            while let Some((id, bytes)) = pool.poll_transmit() {
                let full = conns.get(&id).is_some_and(|c| c.try_send(bytes).is_err());
                if full {
                    // Not reading its lines: drop it (its task sees the channel close).
                    conns.remove(&id);
                    pool.handle_disconnect(id);
                }
            }
            while let Some(e) = pool.poll_event() {
                match e {
                    PoolEvent::Close { session, reason } => {
                        tracing::info!(session = session.0, %reason, "closing a miner");
                        conns.remove(&session);
                        pool.handle_disconnect(session);
                    }
                    PoolEvent::BlockFound {
                        block,
                        height,
                        hash,
                        user,
                        payouts,
                    } => {
                        let news = core_news.clone();
                        let back = core_in.clone();
                        let fetch = core_fetch.clone();
                        tokio::spawn(async move {
                            let raw = stratum::hex(&block.encode());
                            let verdict = match rpc_call(node, "submitblock", json!([raw])).await {
                                Ok(Value::Null) => None,
                                Ok(v) => Some(v.as_str().unwrap_or("rejected").to_string()),
                                Err(e) => Some(e.to_string()),
                            };
                            let _ = fetch.try_send(());
                            let _ = back.send(In::Verdict(hash, verdict.clone())).await;
                            // Dropped if nobody reads the news (the statistics keep it).
                            let _ = news.try_send(PoolNews::BlockFound {
                                height,
                                hash,
                                user,
                                payouts,
                                rejected: verdict,
                            });
                        });
                    }
                }
            }
        }
    });

    // The node poller: a template at once on a new tip or a found block, else every `refresh`.
    let poll_in = in_tx.clone();
    let refresh = opts.refresh;
    let poller = tokio::spawn(async move {
        let mut best = hash_hex(&first_prev);
        let _ = first_height;
        let mut last = tokio::time::Instant::now();
        loop {
            let woken = tokio::time::timeout(Duration::from_millis(250), fetch_rx.recv())
                .await
                .is_ok();
            let tip = rpc_call(node, "getbestblockhash", json!([])).await;
            let changed = match &tip {
                Ok(Value::String(h)) if *h != best => {
                    best = h.clone();
                    true
                }
                _ => false,
            };
            if !(woken || changed || last.elapsed() >= refresh) {
                continue;
            }
            match rpc_call(node, "getblocktemplate", json!([])).await {
                Ok(gbt) => match template_from_gbt(&gbt) {
                    Ok(t) => {
                        best = hash_hex(&t.prev);
                        last = tokio::time::Instant::now();
                        if poll_in.send(In::Template(t)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(%e, "bad template"),
                },
                Err(e) => tracing::warn!(%e, "getblocktemplate"),
            }
        }
    });

    let accept_in = in_tx.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let Ok((sock, peer)) = listener.accept().await else {
                return;
            };
            let to_core = accept_in.clone();
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let _ = miner_conn(sock, peer, to_core).await;
            });
        }
    });
    let mut tasks = vec![core, poller, acceptor];
    let handle = PoolHandle { tx: in_tx.clone() };
    if let Some(l) = http {
        let h = handle.clone();
        tasks.push(tokio::spawn(serve_http(l, h)));
    }
    Ok(RunningPool {
        stratum: stratum_addr,
        http: http_addr,
        network,
        share_difficulty,
        network_difficulty: net_diff,
        news: news_rx,
        handle,
        tasks,
    })
}

async fn miner_conn(sock: TcpStream, peer: SocketAddr, core: mpsc::Sender<In>) -> Option<()> {
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(PER_CONN_QUEUE);
    let (reply_tx, reply_rx) = oneshot::channel();
    core.send(In::Conn {
        out: out_tx,
        peer,
        reply: reply_tx,
    })
    .await
    .ok()?;
    let id = reply_rx.await.ok()??;
    let (mut rd, mut wr) = sock.into_split();
    let writer = async move {
        while let Some(b) = out_rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let reader_core = core.clone();
    let reader = async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match tokio::time::timeout(IDLE, rd.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut used = 0;
            loop {
                match next_line(&buf[used..]) {
                    Ok(Some((line, n))) => {
                        if !line.is_empty()
                            && reader_core.send(In::Line(id, line.to_vec())).await.is_err()
                        {
                            return;
                        }
                        used += n;
                    }
                    Ok(None) => break,
                    Err(_) => return, // a line over the limit: hang up
                }
            }
            buf.drain(..used);
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    let _ = core.send(In::Closed(id)).await;
    Some(())
}

fn page(stats: &Value) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut h = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>servent pool</title>\
         <meta http-equiv=\"refresh\" content=\"5\"></head><body><h1>servent pool</h1>",
    );
    h.push_str(&format!(
        "<p>height {} &middot; share difficulty {} &middot; network difficulty {} &middot; \
         PPLNS window {} shares ({} in it) &middot; {} connections &middot; accepted {} \
         &middot; rejected {}</p>",
        stats["height"],
        stats["share_difficulty"],
        stats["network_difficulty"],
        stats["window"],
        stats["window_shares"],
        stats["connections"],
        stats["accepted"],
        esc(&stats["rejected"].to_string()),
    ));
    h.push_str("<h2>Miners</h2><table border=1><tr><th>user</th><th>connections</th><th>accepted</th><th>rejected</th><th>in window</th><th>blocks</th><th>hash rate (H/s)</th></tr>");
    for m in stats["miners"].as_array().map_or(&[][..], Vec::as_slice) {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
            esc(m["user"].as_str().unwrap_or("")),
            m["connections"],
            m["accepted"],
            esc(&m["rejected"].to_string()),
            m["window_shares"],
            m["blocks"],
            m["hashrate"].as_f64().unwrap_or(0.0)
        ));
    }
    h.push_str("</table><h2>Blocks found</h2><table border=1><tr><th>height</th><th>hash</th><th>found by</th><th>accepted</th><th>payouts (sat)</th></tr>");
    for b in stats["blocks_found"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
    {
        let pays: Vec<String> = b["payouts"]
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|p| format!("{} {}", esc(p["address"].as_str().unwrap_or("")), p["sat"]))
            .collect();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            b["height"],
            esc(b["hash"].as_str().unwrap_or("")),
            esc(b["user"].as_str().unwrap_or("")),
            b["accepted_by_node"],
            pays.join("<br>")
        ));
    }
    h.push_str("</table><p><a href=\"/stats.json\">stats.json</a></p></body></html>");
    h
}

async fn serve_http(listener: TcpListener, pool: PoolHandle) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let pool = pool.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), http_one(&mut sock, &pool)).await;
            drop(permit);
        });
    }
}

async fn http_one(sock: &mut TcpStream, pool: &PoolHandle) -> std::io::Result<()> {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head = loop {
        match parse_request(&buf, &limits) {
            Ok(Some((h, _))) => break h,
            Ok(None) => {}
            Err(_) => {
                let out = ResponseHead::new(400)
                    .header("Content-Length", "0")
                    .header("Connection", "close")
                    .to_bytes();
                return sock.write_all(&out).await;
            }
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let stats = pool.stats().await.unwrap_or(Value::Null);
    let (status, ctype, body) = match (head.method.as_str(), head.path()) {
        ("GET", "/stats.json") => (200, "application/json", stats.to_string()),
        ("GET", "/") => (200, "text/html; charset=utf-8", page(&stats)),
        ("GET", _) => (404, "text/plain", "not found\n".to_string()),
        _ => (405, "text/plain", "GET only\n".to_string()),
    };
    let mut out = ResponseHead::new(status)
        .header("Content-Type", ctype)
        .header("Content-Length", body.len().to_string())
        .header("Connection", "close")
        .to_bytes();
    out.extend_from_slice(body.as_bytes());
    sock.write_all(&out).await
}
