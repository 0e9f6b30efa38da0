//! JSON-RPC over HTTP with Bitcoin Core's method names, JSON shapes and error codes
//! (`getblockcount`, `getbestblockhash`, `getblockhash`, `getblock` (verbosity 0/1),
//! `getrawtransaction`, `sendrawtransaction`, `getrawmempool` (txids), `getmempoolinfo`, `getpeerinfo`,
//! `getblocktemplate`, `submitblock`, `generatetoaddress`). HTTP heads are servent-http's;
//! a body is at most [`MAX_BODY`] bytes and needs a Content-Length; a connection is closed
//! after [`IDLE`] without a request.
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use serde_json::{Value, json};
use servent_http::{Limits, ResponseHead, parse_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Api;
use crate::core::node::address::{MAINNET_P2PKH, REGTEST_P2PKH, script_for_address};
use crate::core::node::{Command, Event};
use crate::wire::{Block, Encode, Transaction};
use crate::{Params, hash_hex, target_from_compact};

/// Largest request body (a hex block of 1 MB is 2 MB).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Idle time before a connection is closed.
pub const IDLE: Duration = Duration::from_secs(30);
/// Most RPC connections served at once.
const MAX_CONNS: usize = 64;
/// Most blocks one `generatetoaddress` mines.
const MAX_GENERATE: u64 = 10_000;

/// Core's RPC error codes.
pub mod code {
    pub const MISC: i64 = -1;
    pub const TYPE: i64 = -3;
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    pub const INVALID_PARAMETER: i64 = -8;
    pub const DESERIALIZATION: i64 = -22;
    pub const VERIFY: i64 = -25;
    pub const VERIFY_REJECTED: i64 = -26;
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const PARSE: i64 = -32700;
}

/// An RPC error: Core's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

fn err(code: i64, message: impl Into<String>) -> RpcError {
    RpcError {
        code,
        message: message.into(),
    }
}

/// Accept RPC connections until the listener fails.
pub async fn serve(listener: TcpListener, api: Api) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(sock);
            continue;
        };
        let api = api.clone();
        tokio::spawn(async move {
            let _ = connection(sock, api).await;
            drop(permit);
        });
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: u16,
    body: &[u8],
    close: bool,
) -> std::io::Result<()> {
    let mut head = ResponseHead::new(status)
        .header("Content-Type", "application/json")
        .header("Content-Length", body.len().to_string());
    if close {
        head = head.header("Connection", "close");
    }
    let mut out = head.to_bytes();
    out.extend_from_slice(body);
    sock.write_all(&out).await
}

async fn connection(mut sock: TcpStream, api: Api) -> std::io::Result<()> {
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // The head.
        let (head, used) = loop {
            match parse_request(&buf, &limits) {
                Ok(Some(h)) => break h,
                Ok(None) => {}
                Err(e) => {
                    let body =
                        reply_body(&Value::Null, Err(err(code::INVALID_REQUEST, e.to_string())));
                    return respond(&mut sock, 400, &body, true).await;
                }
            }
            let n = match tokio::time::timeout(IDLE, sock.read(&mut chunk)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
        };
        buf.drain(..used);
        let len = match head.headers.content_length() {
            Ok(Some(n)) if n as usize <= MAX_BODY => n as usize,
            Ok(Some(_)) => {
                let body = reply_body(
                    &Value::Null,
                    Err(err(
                        code::INVALID_REQUEST,
                        format!("body above {MAX_BODY} bytes"),
                    )),
                );
                return respond(&mut sock, 413, &body, true).await;
            }
            _ => {
                let body = reply_body(
                    &Value::Null,
                    Err(err(code::INVALID_REQUEST, "Content-Length required")),
                );
                return respond(&mut sock, 411, &body, true).await;
            }
        };
        while buf.len() < len {
            let n = match tokio::time::timeout(IDLE, sock.read(&mut chunk)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..len).collect();
        let keep = head.keep_alive();
        if head.method != "POST" {
            let b = reply_body(
                &Value::Null,
                Err(err(code::INVALID_REQUEST, "JSON-RPC uses POST")),
            );
            respond(&mut sock, 405, &b, !keep).await?;
        } else {
            let (status, out) = handle_body(&api, &body).await;
            respond(&mut sock, status, &out, !keep).await?;
        }
        if !keep {
            return Ok(());
        }
    }
}

fn reply_body(id: &Value, r: Result<Value, RpcError>) -> Vec<u8> {
    let v = match r {
        Ok(result) => json!({"result": result, "error": null, "id": id}),
        Err(e) => {
            json!({"result": null, "error": {"code": e.code, "message": e.message}, "id": id})
        }
    };
    v.to_string().into_bytes()
}

fn status_of(r: &Result<Value, RpcError>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) if e.code == code::METHOD_NOT_FOUND => 404,
        Err(e) if e.code == code::PARSE || e.code == code::INVALID_REQUEST => 400,
        Err(_) => 500,
    }
}

async fn handle_body(api: &Api, body: &[u8]) -> (u16, Vec<u8>) {
    let req: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return (
                400,
                reply_body(
                    &Value::Null,
                    Err(err(code::PARSE, format!("Parse error: {e}"))),
                ),
            );
        }
    };
    if let Value::Array(batch) = req {
        let mut out = Vec::with_capacity(batch.len());
        for r in batch.into_iter().take(1000) {
            let id = r.get("id").cloned().unwrap_or(Value::Null);
            let res = call(api, &r).await;
            out.push(serde_json::from_slice::<Value>(&reply_body(&id, res)).unwrap_or(Value::Null));
        }
        return (200, Value::Array(out).to_string().into_bytes());
    }
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let res = call(api, &req).await;
    (status_of(&res), reply_body(&id, res))
}

fn param(params: &[Value], i: usize) -> Option<&Value> {
    params.get(i).filter(|v| !v.is_null())
}

fn hash_param(params: &[Value], i: usize, name: &str) -> Result<[u8; 32], RpcError> {
    let s = param(params, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE, format!("{name} must be a hex string")))?;
    let mut h: [u8; 32] = hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| {
            err(
                code::INVALID_PARAMETER,
                format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
            )
        })?;
    h.reverse();
    Ok(h)
}

fn hex_param(params: &[Value], i: usize) -> Result<Vec<u8>, RpcError> {
    let s = param(params, i)
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::TYPE, "expected a hex string"))?;
    hex::decode(s).map_err(|_| err(code::DESERIALIZATION, "not hex"))
}

fn stopped(_: super::NodeError) -> RpcError {
    err(code::MISC, "node stopped")
}

fn difficulty(bits: u32) -> f64 {
    let shift = (bits >> 24) & 0xff;
    let mut d = f64::from(0x0000_ffff) / f64::from((bits & 0x00ff_ffff).max(1));
    let mut s = shift;
    while s < 29 {
        d *= 256.0;
        s += 1;
    }
    while s > 29 {
        d /= 256.0;
        s -= 1;
    }
    d
}

fn p2pkh_version(p: &Params) -> u8 {
    if p.magic == Params::mainnet().magic {
        MAINNET_P2PKH
    } else {
        REGTEST_P2PKH
    }
}

async fn info(api: &Api) -> Result<crate::core::node::NodeInfo, RpcError> {
    match api.ask(|id| Command::Info { id }).await.map_err(stopped)? {
        Event::Info { info, .. } => Ok(info),
        _ => Err(err(code::MISC, "unexpected answer")),
    }
}

/// One call.
pub async fn call(api: &Api, req: &Value) -> Result<Value, RpcError> {
    let method = req
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| err(code::INVALID_REQUEST, "Method must be a string"))?;
    let params: Vec<Value> = match req.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(err(code::INVALID_REQUEST, "Params must be an array")),
    };
    match method {
        "getblockcount" => Ok(json!(info(api).await?.height)),
        "getbestblockhash" => Ok(json!(hash_hex(&info(api).await?.best))),
        "getblockhash" => {
            let h = param(&params, 0)
                .and_then(Value::as_i64)
                .ok_or_else(|| err(code::TYPE, "height must be a number"))?;
            let hash = api
                .read(move |s| u32::try_from(h).ok().and_then(|h| s.hash_at(h)))
                .await
                .map_err(stopped)?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "Block height out of range"))?;
            Ok(json!(hash_hex(&hash)))
        }
        "getblock" => {
            let hash = hash_param(&params, 0, "blockhash")?;
            let verbosity = match param(&params, 1) {
                None => 1,
                Some(Value::Bool(b)) => i64::from(*b),
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| err(code::TYPE, "verbosity must be a number"))?,
            };
            let found = api
                .read(move |s| {
                    let b = s.block(&hash).ok().flatten()?;
                    let height = s.block_height(&hash).ok().flatten()?;
                    let active = s.hash_at(height) == Some(hash);
                    let next = if active { s.hash_at(height + 1) } else { None };
                    Some((b, height, active, next, s.height()))
                })
                .await
                .map_err(stopped)?;
            let (b, height, active, next, tip) =
                found.ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Block not found"))?;
            if verbosity == 0 {
                return Ok(json!(hex::encode(b.encode())));
            }
            let mut v = block_json(&b, height, active, next, tip);
            if verbosity >= 2 {
                v["tx"] = b
                    .txs
                    .iter()
                    .map(|t| {
                        let mut j = tx_json(t);
                        j["hex"] = json!(hex::encode(t.encode()));
                        j
                    })
                    .collect();
            }
            Ok(v)
        }
        "getrawtransaction" => {
            let txid = hash_param(&params, 0, "txid")?;
            let verbose = match param(&params, 1) {
                None => false,
                Some(Value::Bool(b)) => *b,
                Some(v) => v.as_i64().is_some_and(|n| n != 0),
            };
            let in_block = match param(&params, 2) {
                Some(_) => Some(hash_param(&params, 2, "blockhash")?),
                None => None,
            };
            let (tx, block) = match in_block {
                Some(bh) => {
                    let b = api
                        .read(move |s| s.block(&bh).ok().flatten())
                        .await
                        .map_err(stopped)?
                        .ok_or_else(|| err(code::INVALID_ADDRESS_OR_KEY, "Block hash not found"))?;
                    let tx = b
                        .txs
                        .iter()
                        .find(|t| t.txid() == txid)
                        .cloned()
                        .ok_or_else(|| {
                            err(
                                code::INVALID_ADDRESS_OR_KEY,
                                "No such transaction found in the provided block",
                            )
                        })?;
                    (tx, Some(bh))
                }
                None => match api
                    .ask(|id| Command::MempoolTx { id, txid })
                    .await
                    .map_err(stopped)?
                {
                    Event::MempoolTx { tx: Some(tx), .. } => (tx, None),
                    _ => {
                        return Err(err(
                            code::INVALID_ADDRESS_OR_KEY,
                            "No such mempool transaction. Use -txindex or provide a block hash to enable blockchain transaction queries",
                        ));
                    }
                },
            };
            let raw = hex::encode(tx.encode());
            if !verbose {
                return Ok(json!(raw));
            }
            let mut v = tx_json(&tx);
            v["hex"] = json!(raw);
            if let Some(bh) = block {
                v["blockhash"] = json!(hash_hex(&bh));
            }
            Ok(v)
        }
        "sendrawtransaction" => {
            let raw = hex_param(&params, 0)?;
            let tx = Transaction::decode(&raw)
                .map_err(|e| err(code::DESERIALIZATION, format!("TX decode failed: {e}")))?;
            match api
                .ask(|id| Command::SubmitTx { id, tx })
                .await
                .map_err(stopped)?
            {
                Event::TxResult {
                    result: Ok(txid), ..
                } => Ok(json!(hash_hex(&txid))),
                Event::TxResult { result: Err(r), .. } => {
                    let c = if r.starts_with("missing-inputs") {
                        code::VERIFY
                    } else if r.starts_with("txn-already") {
                        code::VERIFY_ALREADY_IN_CHAIN
                    } else {
                        code::VERIFY_REJECTED
                    };
                    Err(err(c, r))
                }
                _ => Err(err(code::MISC, "unexpected answer")),
            }
        }
        "getrawmempool" => {
            let verbose = match param(&params, 0) {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(err(code::INVALID_PARAMETER, "verbose must be a boolean")),
            };
            if verbose {
                return Err(err(
                    code::INVALID_PARAMETER,
                    "verbose getrawmempool is not supported; call getrawtransaction per txid",
                ));
            }
            match api
                .ask(|id| Command::MempoolTxids { id })
                .await
                .map_err(stopped)?
            {
                Event::MempoolTxids { txids, .. } => Ok(Value::Array(
                    txids.iter().map(|t| json!(hash_hex(t))).collect(),
                )),
                _ => Err(err(code::MISC, "unexpected answer")),
            }
        }
        "getmempoolinfo" => {
            let i = info(api).await?;
            Ok(json!({
                "loaded": true,
                "size": i.mempool_txs,
                "bytes": i.mempool_bytes,
                "usage": i.mempool_bytes,
                "maxmempool": 300_000_000u64,
                "mempoolminfee": 0.00001,
                "minrelaytxfee": 0.00001,
            }))
        }
        "getpeerinfo" => match api.ask(|id| Command::Peers { id }).await.map_err(stopped)? {
            Event::Peers { peers, .. } => Ok(Value::Array(
                peers
                    .iter()
                    .map(|p| {
                        json!({
                            "id": p.conn.raw(),
                            "addr": p.addr.to_string(),
                            "inbound": p.inbound,
                            "version": p.version,
                            "subver": p.user_agent,
                            "startingheight": p.start_height,
                            "banscore": p.score,
                            "pingtime": p.ping_us.map(|u| u as f64 / 1e6),
                            "bytessent": p.bytes_sent,
                            "bytesrecv": p.bytes_recv,
                        })
                    })
                    .collect(),
            )),
            _ => Err(err(code::MISC, "unexpected answer")),
        },
        "getblocktemplate" => {
            let (t, fees) = template(api, Vec::new()).await?;
            let ids: Vec<[u8; 32]> = t.txs.iter().map(Transaction::txid).collect();
            let txs: Vec<Value> = t
                .txs
                .iter()
                .zip(&fees)
                .map(|(tx, fee)| {
                    let depends: Vec<usize> = tx
                        .inputs
                        .iter()
                        .filter_map(|i| {
                            ids.iter().position(|x| *x == i.prevout.txid).map(|k| k + 1)
                        })
                        .collect();
                    json!({
                        "data": hex::encode(tx.encode()),
                        "txid": hash_hex(&tx.txid()),
                        "hash": hash_hex(&tx.txid()),
                        "fee": fee,
                        "depends": depends,
                    })
                })
                .collect();
            let target = target_from_compact(t.header.bits).target;
            Ok(json!({
                "version": t.header.version,
                "rules": [],
                "previousblockhash": hash_hex(&t.header.prev),
                "transactions": txs,
                "coinbaseaux": {},
                "coinbasevalue": t.coinbase.outputs.first().map_or(0, |o| o.value),
                "target": hex::encode(target),
                "mintime": t.header.time,
                "mutable": ["time", "transactions", "prevblock"],
                "noncerange": "00000000ffffffff",
                "sigoplimit": 20_000,
                "sizelimit": 1_000_000,
                "curtime": t.header.time,
                "bits": format!("{:08x}", t.header.bits),
                "height": t.height,
            }))
        }
        "submitblock" => {
            let raw = hex_param(&params, 0)?;
            let block = Block::decode(&raw)
                .map_err(|e| err(code::DESERIALIZATION, format!("Block decode failed: {e}")))?;
            submit(api, block).await
        }
        "generatetoaddress" => {
            let n = param(&params, 0)
                .and_then(Value::as_u64)
                .ok_or_else(|| err(code::TYPE, "nblocks must be a number"))?;
            if n > MAX_GENERATE {
                return Err(err(
                    code::INVALID_PARAMETER,
                    format!("at most {MAX_GENERATE} blocks at once"),
                ));
            }
            let addr = param(&params, 1)
                .and_then(Value::as_str)
                .ok_or_else(|| err(code::TYPE, "address must be a string"))?;
            let script = script_for_address(addr, p2pkh_version(&api.params)).map_err(|e| {
                err(
                    code::INVALID_ADDRESS_OR_KEY,
                    format!("Error: Invalid address: {e}"),
                )
            })?;
            let mut hashes = Vec::new();
            for _ in 0..n {
                let (t, _) = template(api, script.clone()).await?;
                let block = tokio::task::spawn_blocking(move || {
                    let stop = AtomicBool::new(false);
                    crate::mine::mine(t, 1, &stop, &|_| {})
                })
                .await
                .map_err(|_| err(code::MISC, "miner failed"))?
                .ok_or_else(|| err(code::MISC, "no block found"))?;
                let hash = block.header.hash();
                let r = submit(api, block).await?;
                if !r.is_null() {
                    return Err(err(code::VERIFY, format!("mined block rejected: {r}")));
                }
                hashes.push(json!(hash_hex(&hash)));
            }
            Ok(Value::Array(hashes))
        }
        other => Err(err(
            code::METHOD_NOT_FOUND,
            format!("Method not found: {other}"),
        )),
    }
}

async fn template(
    api: &Api,
    coinbase_script: Vec<u8>,
) -> Result<(crate::mine::Template, Vec<i64>), RpcError> {
    match api
        .ask(|id| Command::Template {
            id,
            coinbase_script,
        })
        .await
        .map_err(stopped)?
    {
        Event::Template { result, .. } => result.map_err(|e| err(code::MISC, e)),
        _ => Err(err(code::MISC, "unexpected answer")),
    }
}

/// Core's `submitblock` answer: null when accepted, else a BIP22 reason string.
async fn submit(api: &Api, block: Block) -> Result<Value, RpcError> {
    match api
        .ask(|id| Command::SubmitBlock { id, block })
        .await
        .map_err(stopped)?
    {
        Event::BlockResult { result: Ok(()), .. } => Ok(Value::Null),
        Event::BlockResult { result: Err(r), .. } => {
            let reason = if r.starts_with("duplicate") {
                "duplicate".to_string()
            } else if r.starts_with("inconclusive") {
                "inconclusive".to_string()
            } else {
                bip22_reason(&r)
            };
            Ok(json!(reason))
        }
        _ => Err(err(code::MISC, "unexpected answer")),
    }
}

/// The reject token (`bad-txns-…`, `high-hash`, …) inside an error text, else "rejected".
fn bip22_reason(r: &str) -> String {
    r.split([' ', ':'])
        .find(|w| w.contains('-') && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map_or_else(|| "rejected".to_string(), str::to_string)
}

fn tx_json(tx: &Transaction) -> Value {
    json!({
        "txid": hash_hex(&tx.txid()),
        "hash": hash_hex(&tx.txid()),
        "version": tx.version,
        "size": tx.encode().len(),
        "locktime": tx.lock_time,
        "vin": tx.inputs.iter().map(|i| if i.prevout.txid == [0; 32] && i.prevout.vout == u32::MAX {
            json!({"coinbase": hex::encode(&i.script_sig), "sequence": i.sequence})
        } else {
            json!({"txid": hash_hex(&i.prevout.txid), "vout": i.prevout.vout,
                   "scriptSig": {"hex": hex::encode(&i.script_sig)}, "sequence": i.sequence})
        }).collect::<Vec<_>>(),
        "vout": tx.outputs.iter().enumerate().map(|(n, o)| json!({
            "value": o.value as f64 / 1e8, "n": n,
            "scriptPubKey": {"hex": hex::encode(&o.script_pubkey)}
        })).collect::<Vec<_>>(),
    })
}

fn block_json(b: &Block, height: u32, active: bool, next: Option<[u8; 32]>, tip: u32) -> Value {
    let h = &b.header;
    let mut v = json!({
        "hash": h.hash_hex(),
        "confirmations": if active { i64::from(tip) - i64::from(height) + 1 } else { -1 },
        "size": b.encode().len(),
        "height": height,
        "version": h.version,
        "versionHex": format!("{:08x}", h.version),
        "merkleroot": hash_hex(&h.merkle_root),
        "tx": b.txs.iter().map(|t| hash_hex(&t.txid())).collect::<Vec<_>>(),
        "time": h.time,
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits),
        "difficulty": difficulty(h.bits),
        "nTx": b.txs.len(),
    });
    if height > 0 {
        v["previousblockhash"] = json!(hash_hex(&h.prev));
    }
    if let Some(n) = next {
        v["nextblockhash"] = json!(hash_hex(&n));
    }
    v
}
