//! One Electrum client's session, sans-IO: requests in, answers and notifications out.
//!
//! [`Session::handle`] answers a parsed line from the [`Index`]; the one call that needs the
//! node (`blockchain.transaction.broadcast`) comes back as [`Slot::Broadcast`] for the driver
//! to send and fill in with [`Slot::resolve`]. [`Session::notifications`] compares what the
//! client subscribed to with the index and yields the protocol's notifications for what
//! changed (a new tip; a script whose status hash moved).
use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Index, ScriptHash, parse_hash_hex, scripthash_hex};
use crate::wire::Transaction;
use crate::wire::electrum::{
    Incoming, Request, RpcError, code, error_response, notification, response,
};

/// The protocol version spoken.
pub const PROTOCOL: &str = "1.4";
/// Most headers in one `blockchain.block.headers` answer.
pub const MAX_HEADERS: u32 = 2016;

/// What a session may grow to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Scripthash subscriptions per session.
    pub subscriptions: usize,
    /// History entries (or unspent outputs) in one answer.
    pub history: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            subscriptions: 10_000,
            history: 20_000,
        }
    }
}

/// What the server says about itself.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `servent x.y.z`.
    pub software: String,
    /// Genesis block hash (display hex).
    pub genesis_hash: String,
    pub banner: String,
    pub donation_address: String,
    /// The node's minimum relay fee in BTC/kB (also the fee estimate: regtest has no market).
    pub relay_fee: f64,
}

/// One answer being built: ready, or waiting for the node to take a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Ready(Option<Value>),
    /// `sendrawtransaction` this hex; answer `id`.
    Broadcast {
        id: Value,
        raw_hex: String,
    },
}

impl Slot {
    /// Fill a broadcast with the node's verdict: the txid, or the node's error text.
    pub fn resolve(self, node: Result<String, String>) -> Slot {
        match self {
            Slot::Broadcast { id, .. } => Slot::Ready(Some(match node {
                Ok(txid) => response(&id, json!(txid)),
                Err(e) => error_response(&id, &RpcError::new(code::DAEMON_ERROR, e)),
            })),
            ready => ready,
        }
    }
}

/// A handled line: its slots, and whether it was a batch (answered as one array).
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub slots: Vec<Slot>,
    pub batch: bool,
}

impl Handled {
    /// The line to send once every slot is ready (`None` if nothing is to be sent).
    pub fn answer(&self) -> Option<Value> {
        let ready: Vec<Value> = self
            .slots
            .iter()
            .filter_map(|s| match s {
                Slot::Ready(v) => v.clone(),
                Slot::Broadcast { .. } => None,
            })
            .collect();
        if self.batch {
            (!ready.is_empty()).then_some(Value::Array(ready))
        } else {
            ready.into_iter().next()
        }
    }
}

enum Answer {
    Value(Value),
    Broadcast(String),
}

/// One client.
#[derive(Debug, Default)]
pub struct Session {
    limits: Limits,
    /// The tip last told (when subscribed to headers).
    headers: Option<Option<[u8; 32]>>,
    subs: BTreeMap<ScriptHash, Option<String>>,
    /// The index generation statuses were last compared at.
    generation: u64,
}

fn str_param<'a>(p: &'a [Value], i: usize, name: &str) -> Result<&'a str, RpcError> {
    p.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::params(format!("{name} must be a string")))
}

fn u32_param(p: &[Value], i: usize, name: &str) -> Result<u32, RpcError> {
    p.get(i)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| RpcError::params(format!("{name} must be a non-negative integer")))
}

fn opt_u32_param(p: &[Value], i: usize, name: &str) -> Result<u32, RpcError> {
    match p.get(i) {
        None | Some(Value::Null) => Ok(0),
        Some(_) => u32_param(p, i, name),
    }
}

fn hash_param(p: &[Value], i: usize, name: &str) -> Result<[u8; 32], RpcError> {
    parse_hash_hex(str_param(p, i, name)?)
        .ok_or_else(|| RpcError::params(format!("{name} must be 64 hex digits")))
}

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::new(code::BAD_REQUEST, msg)
}

/// `"1.4.2"` → `[1, 4, 2]`; `None` for anything else.
fn version_parts(s: &str) -> Option<Vec<u32>> {
    s.split('.').map(|p| p.parse().ok()).collect()
}

impl Session {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Scripthashes subscribed to.
    pub fn subscriptions(&self) -> usize {
        self.subs.len()
    }

    /// Answer one parsed line.
    pub fn handle(&mut self, index: &Index, info: &ServerInfo, incoming: Incoming) -> Handled {
        match incoming {
            Incoming::Single(r) => Handled {
                slots: vec![self.slot(index, info, r)],
                batch: false,
            },
            Incoming::Batch(items) => Handled {
                slots: items
                    .into_iter()
                    .map(|i| match i {
                        Ok(r) => self.slot(index, info, r),
                        Err((id, e)) => Slot::Ready(Some(error_response(&id, &e))),
                    })
                    .collect(),
                batch: true,
            },
        }
    }

    fn slot(&mut self, index: &Index, info: &ServerInfo, r: Request) -> Slot {
        let result = self.call(index, info, &r.method, &r.params);
        let Some(id) = r.id else {
            return Slot::Ready(None); // a notification from the client: no answer
        };
        match result {
            Ok(Answer::Value(v)) => Slot::Ready(Some(response(&id, v))),
            Ok(Answer::Broadcast(raw_hex)) => Slot::Broadcast { id, raw_hex },
            Err(e) => Slot::Ready(Some(error_response(&id, &e))),
        }
    }

    fn call(
        &mut self,
        index: &Index,
        info: &ServerInfo,
        method: &str,
        p: &[Value],
    ) -> Result<Answer, RpcError> {
        let v = match method {
            "server.version" => {
                let (min, max) = match p.get(1) {
                    None | Some(Value::Null) => (PROTOCOL.to_string(), PROTOCOL.to_string()),
                    Some(Value::String(s)) => (s.clone(), s.clone()),
                    Some(Value::Array(a)) if a.len() == 2 => match (&a[0], &a[1]) {
                        (Value::String(lo), Value::String(hi)) => (lo.clone(), hi.clone()),
                        _ => return Err(RpcError::params("protocol_version: two strings")),
                    },
                    Some(_) => {
                        return Err(RpcError::params("protocol_version: a string or [min, max]"));
                    }
                };
                let ours = version_parts(PROTOCOL);
                let (lo, hi) = (version_parts(&min), version_parts(&max));
                if lo.is_none() || hi.is_none() || lo > ours || hi < ours {
                    return Err(bad(format!(
                        "unsupported protocol version: {min}..{max} (this server speaks {PROTOCOL})"
                    )));
                }
                json!([info.software, PROTOCOL])
            }
            "server.features" => json!({
                "genesis_hash": info.genesis_hash,
                "hosts": {},
                "protocol_max": PROTOCOL,
                "protocol_min": PROTOCOL,
                "pruning": null,
                "server_version": info.software,
                "hash_function": "sha256",
            }),
            "server.banner" => json!(info.banner),
            "server.donation_address" => json!(info.donation_address),
            "server.ping" => Value::Null,
            "server.peers.subscribe" => json!([]),
            "blockchain.headers.subscribe" => {
                let tip = index.height().ok_or_else(|| bad("no blocks indexed yet"))?;
                self.headers = Some(index.tip_hash());
                Self::tip_json(index, tip)
            }
            "blockchain.block.header" => {
                let h = u32_param(p, 0, "height")?;
                if opt_u32_param(p, 1, "cp_height")? != 0 {
                    return Err(bad("checkpoint proofs (cp_height) are not supported"));
                }
                let b = index
                    .header_bytes(h)
                    .ok_or_else(|| bad(format!("height {h} out of range")))?;
                json!(hex::encode(b))
            }
            "blockchain.block.headers" => {
                let start = u32_param(p, 0, "start_height")?;
                let count = u32_param(p, 1, "count")?.min(MAX_HEADERS);
                if opt_u32_param(p, 2, "cp_height")? != 0 {
                    return Err(bad("checkpoint proofs (cp_height) are not supported"));
                }
                let mut out = Vec::new();
                let mut n = 0u32;
                for h in start..start.saturating_add(count) {
                    match index.header_bytes(h) {
                        Some(b) => out.extend_from_slice(&b),
                        None => break,
                    }
                    n += 1;
                }
                json!({"count": n, "hex": hex::encode(out), "max": MAX_HEADERS})
            }
            "blockchain.scripthash.get_history" => {
                let sh = hash_param(p, 0, "scripthash")?;
                self.check_size(index, &sh)?;
                Value::Array(
                    index
                        .history(&sh)
                        .iter()
                        .map(|i| match i.fee {
                            Some(fee) => json!({"tx_hash": crate::hash_hex(&i.txid), "height": i.height, "fee": fee}),
                            None => json!({"tx_hash": crate::hash_hex(&i.txid), "height": i.height}),
                        })
                        .collect(),
                )
            }
            "blockchain.scripthash.get_mempool" => {
                let sh = hash_param(p, 0, "scripthash")?;
                self.check_size(index, &sh)?;
                Value::Array(
                    index
                        .mempool_history(&sh)
                        .iter()
                        .map(|i| json!({"tx_hash": crate::hash_hex(&i.txid), "height": i.height, "fee": i.fee.unwrap_or(0)}))
                        .collect(),
                )
            }
            "blockchain.scripthash.get_balance" => {
                let sh = hash_param(p, 0, "scripthash")?;
                let b = index.balance(&sh);
                json!({"confirmed": b.confirmed, "unconfirmed": b.unconfirmed})
            }
            "blockchain.scripthash.listunspent" => {
                let sh = hash_param(p, 0, "scripthash")?;
                self.check_size(index, &sh)?;
                Value::Array(
                    index
                        .unspent(&sh)
                        .iter()
                        .map(|u| {
                            json!({
                                "tx_hash": crate::hash_hex(&u.outpoint.txid),
                                "tx_pos": u.outpoint.vout,
                                "height": u.height,
                                "value": u.value,
                            })
                        })
                        .collect(),
                )
            }
            "blockchain.scripthash.subscribe" => {
                let sh = hash_param(p, 0, "scripthash")?;
                if !self.subs.contains_key(&sh) && self.subs.len() >= self.limits.subscriptions {
                    return Err(bad(format!(
                        "at most {} scripthash subscriptions per session",
                        self.limits.subscriptions
                    )));
                }
                self.check_size(index, &sh)?;
                let status = index.status(&sh);
                self.subs.insert(sh, status.clone());
                json!(status)
            }
            "blockchain.scripthash.unsubscribe" => {
                let sh = hash_param(p, 0, "scripthash")?;
                json!(self.subs.remove(&sh).is_some())
            }
            "blockchain.transaction.get" => {
                let txid = hash_param(p, 0, "tx_hash")?;
                if p.get(1).is_some_and(|v| v.as_bool() == Some(true)) {
                    return Err(bad("verbose transactions are not supported"));
                }
                let raw = index
                    .transaction(&txid)
                    .ok_or_else(|| bad(format!("no transaction {}", crate::hash_hex(&txid))))?;
                json!(hex::encode(raw))
            }
            "blockchain.transaction.get_merkle" => {
                let txid = hash_param(p, 0, "tx_hash")?;
                let height = match p.get(1) {
                    None | Some(Value::Null) => index
                        .tx_height(&txid)
                        .ok_or_else(|| bad("transaction not confirmed"))?,
                    Some(_) => u32_param(p, 1, "height")?,
                };
                let (branch, pos) = index.merkle_branch(&txid, height).ok_or_else(|| {
                    bad(format!("transaction not in the block at height {height}"))
                })?;
                json!({
                    "block_height": height,
                    "merkle": branch.iter().map(crate::hash_hex).collect::<Vec<_>>(),
                    "pos": pos,
                })
            }
            "blockchain.transaction.broadcast" => {
                let raw_hex = str_param(p, 0, "raw_tx")?;
                let raw =
                    hex::decode(raw_hex).map_err(|_| RpcError::params("raw_tx must be hex"))?;
                Transaction::decode(&raw)
                    .map_err(|e| bad(format!("the transaction does not decode: {e}")))?;
                return Ok(Answer::Broadcast(raw_hex.to_string()));
            }
            "blockchain.estimatefee" => {
                u32_param(p, 0, "number")?;
                json!(info.relay_fee)
            }
            "blockchain.relayfee" => json!(info.relay_fee),
            "mempool.get_fee_histogram" => Value::Array(
                index
                    .fee_histogram()
                    .into_iter()
                    .map(|(rate, vsize)| json!([rate, vsize]))
                    .collect(),
            ),
            other => {
                return Err(RpcError::new(
                    code::METHOD_NOT_FOUND,
                    format!("unknown method {other:?}"),
                ));
            }
        };
        Ok(Answer::Value(v))
    }

    fn check_size(&self, index: &Index, sh: &ScriptHash) -> Result<(), RpcError> {
        let n = index.history_len(sh);
        if n > self.limits.history {
            return Err(bad(format!(
                "history of {n} transactions: this server answers at most {}",
                self.limits.history
            )));
        }
        Ok(())
    }

    fn tip_json(index: &Index, tip: u32) -> Value {
        json!({
            "height": tip,
            "hex": index.header_bytes(tip).map(hex::encode).unwrap_or_default(),
        })
    }

    /// Notifications for what changed since they were last computed: the new tip (if
    /// subscribed to headers), then each subscribed script whose status moved.
    pub fn notifications(&mut self, index: &Index) -> Vec<Value> {
        let mut out = Vec::new();
        if let Some(told) = self.headers {
            let now = index.tip_hash();
            if now != told {
                self.headers = Some(now);
                if let Some(tip) = index.height() {
                    out.push(notification(
                        "blockchain.headers.subscribe",
                        json!([Self::tip_json(index, tip)]),
                    ));
                }
            }
        }
        let since = self.generation;
        self.generation = index.generation();
        for (sh, last) in self.subs.iter_mut() {
            if !index.changed_since(sh, since) {
                continue;
            }
            let now = index.status(sh);
            if now != *last {
                *last = now.clone();
                out.push(notification(
                    "blockchain.scripthash.subscribe",
                    json!([scripthash_hex(sh), now]),
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::electrum::scripthash;
    use crate::wire::electrum::parse_line;
    use crate::wire::{Block, BlockHeader, Encode as _, OutPoint, TxIn, TxOut};

    fn info() -> ServerInfo {
        ServerInfo {
            software: "servent test".into(),
            genesis_hash: "00".repeat(32),
            banner: "hi".into(),
            donation_address: String::new(),
            relay_fee: 0.00001,
        }
    }

    fn block(prev: [u8; 32], tag: u8, script: &[u8]) -> Block {
        Block {
            header: BlockHeader {
                version: 1,
                prev,
                merkle_root: [tag; 32],
                time: u32::from(tag),
                bits: 0x207f_ffff,
                nonce: u32::from(tag),
            },
            txs: vec![Transaction {
                version: 1,
                inputs: vec![TxIn {
                    prevout: OutPoint {
                        txid: [0; 32],
                        vout: u32::MAX,
                    },
                    script_sig: vec![1, tag],
                    sequence: u32::MAX,
                }],
                outputs: vec![TxOut {
                    value: 50,
                    script_pubkey: script.to_vec(),
                }],
                lock_time: 0,
            }],
        }
    }

    fn ask(s: &mut Session, ix: &Index, line: &str) -> Value {
        let h = s.handle(ix, &info(), parse_line(line.as_bytes()).expect("parses"));
        h.answer().expect("an answer")
    }

    #[test]
    fn subscribers_hear_of_a_new_tip_and_of_a_changed_status_once() {
        let script = [0x51];
        let sh = scripthash_hex(&scripthash(&script));
        let mut ix = Index::new();
        ix.connect(&block([0; 32], 0, &[0x52])).expect("g");
        let mut s = Session::new(Limits::default());
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"blockchain.headers.subscribe"}"#,
        );
        assert_eq!(r["result"]["height"], 0);
        let r = ask(
            &mut s,
            &ix,
            &format!(r#"{{"id":2,"method":"blockchain.scripthash.subscribe","params":["{sh}"]}}"#),
        );
        assert_eq!(r["result"], Value::Null, "no history yet");
        assert!(s.notifications(&ix).is_empty());
        let tip = ix.tip_hash().expect("tip");
        ix.connect(&block(tip, 1, &script)).expect("b1");
        let n = s.notifications(&ix);
        assert_eq!(n.len(), 2, "{n:?}");
        assert_eq!(n[0]["method"], "blockchain.headers.subscribe");
        assert_eq!(n[0]["params"][0]["height"], 1);
        assert_eq!(n[1]["method"], "blockchain.scripthash.subscribe");
        assert_eq!(n[1]["params"][0], sh.as_str());
        assert_eq!(n[1]["params"][1], json!(ix.status(&scripthash(&script))));
        assert!(s.notifications(&ix).is_empty(), "told once");
    }

    #[test]
    fn answers_are_bounded_and_errors_are_typed() {
        let mut ix = Index::new();
        let mut prev = [0; 32];
        for i in 0..=2100u32 {
            let b = block(prev, (i % 250) as u8, &i.to_le_bytes());
            prev = b.header.hash();
            ix.connect(&b).expect("block");
        }
        let mut s = Session::new(Limits {
            subscriptions: 2,
            history: 10,
        });
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"blockchain.block.headers","params":[0,5000]}"#,
        );
        assert_eq!(r["result"]["count"], 2016);
        assert_eq!(r["result"]["hex"].as_str().map(str::len), Some(2016 * 160));
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"blockchain.block.headers","params":[2100,10]}"#,
        );
        assert_eq!(r["result"]["count"], 1);
        for i in 0..2u8 {
            let r = ask(
                &mut s,
                &ix,
                &format!(
                    r#"{{"id":1,"method":"blockchain.scripthash.subscribe","params":["{}"]}}"#,
                    format!("{i:02x}").repeat(32)
                ),
            );
            assert!(r.get("result").is_some(), "{r}");
        }
        let r = ask(
            &mut s,
            &ix,
            &format!(
                r#"{{"id":1,"method":"blockchain.scripthash.subscribe","params":["{}"]}}"#,
                "07".repeat(32)
            ),
        );
        assert_eq!(
            r["error"]["code"],
            code::BAD_REQUEST,
            "third subscription refused"
        );
        let r = ask(&mut s, &ix, r#"{"id":"x","method":"no.such"}"#);
        assert_eq!(
            (r["id"].clone(), r["error"]["code"].clone()),
            (json!("x"), json!(code::METHOD_NOT_FOUND))
        );
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"blockchain.scripthash.get_balance","params":["zz"]}"#,
        );
        assert_eq!(r["error"]["code"], code::INVALID_PARAMS);
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"server.version","params":["x","1.2"]}"#,
        );
        assert_eq!(r["error"]["code"], code::BAD_REQUEST);
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":1,"method":"server.version","params":["x",["1.2","1.4"]]}"#,
        );
        assert_eq!(r["result"][1], "1.4");
    }

    #[test]
    fn a_broadcast_waits_for_the_node_and_carries_its_error_text() {
        let ix = Index::new();
        let mut s = Session::new(Limits::default());
        let tx = block([0; 32], 1, &[0x51]).txs[0].encode();
        let line = format!(
            r#"[{{"id":1,"method":"server.ping"}},{{"id":2,"method":"blockchain.transaction.broadcast","params":["{}"]}}]"#,
            hex::encode(tx)
        );
        let mut h = s.handle(&ix, &info(), parse_line(line.as_bytes()).expect("batch"));
        assert!(matches!(h.slots[1], Slot::Broadcast { .. }));
        h.slots[1] = h.slots[1]
            .clone()
            .resolve(Err("bad-txns-inputs-missingorspent".into()));
        let a = h.answer().expect("answer");
        assert_eq!(a[1]["error"]["message"], "bad-txns-inputs-missingorspent");
        assert_eq!(a[1]["error"]["code"], code::DAEMON_ERROR);
        let r = ask(
            &mut s,
            &ix,
            r#"{"id":3,"method":"blockchain.transaction.broadcast","params":["00ff"]}"#,
        );
        assert_eq!(
            r["error"]["code"],
            code::BAD_REQUEST,
            "undecodable: not sent to the node"
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use crate::wire::electrum::{LineBuffer, parse_line};
    use proptest::prelude::*;

    const METHODS: [&str; 24] = [
        "server.version",
        "server.features",
        "server.banner",
        "server.ping",
        "server.donation_address",
        "server.peers.subscribe",
        "blockchain.headers.subscribe",
        "blockchain.block.header",
        "blockchain.block.headers",
        "blockchain.scripthash.get_history",
        "blockchain.scripthash.get_balance",
        "blockchain.scripthash.listunspent",
        "blockchain.scripthash.subscribe",
        "blockchain.scripthash.unsubscribe",
        "blockchain.scripthash.get_mempool",
        "blockchain.transaction.get",
        "blockchain.transaction.get_merkle",
        "blockchain.transaction.broadcast",
        "blockchain.estimatefee",
        "blockchain.relayfee",
        "mempool.get_fee_histogram",
        "no.such.method",
        "",
        "server.version\n",
    ];

    fn param() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (0u64..3000).prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "[0-9a-f]{0,70}".prop_map(Value::String),
            ".{0,20}".prop_map(Value::String),
            Just(json!(["1.0", "9.9"])),
            Just(json!({"a": [1, 2]})),
        ]
    }

    proptest! {
        #[test]
        fn any_call_gets_one_answer_with_its_id_and_never_panics(
            m in 0..METHODS.len(),
            params in proptest::collection::vec(param(), 0..4),
            id in any::<u32>(),
        ) {
            let mut ix = Index::new();
            let _ = ix.connect(&crate::genesis_regtest());
            let info = ServerInfo {
                software: "t".into(),
                genesis_hash: String::new(),
                banner: String::new(),
                donation_address: String::new(),
                relay_fee: 0.00001,
            };
            let mut s = Session::new(Limits { subscriptions: 2, history: 5 });
            let line = json!({"jsonrpc": "2.0", "id": id, "method": METHODS[m], "params": params}).to_string();
            let h = s.handle(&ix, &info, parse_line(line.as_bytes()).expect("valid JSON-RPC"));
            prop_assert_eq!(h.slots.len(), 1);
            match &h.slots[0] {
                Slot::Ready(Some(v)) => {
                    prop_assert_eq!(&v["id"], &json!(id));
                    prop_assert!(v.get("result").is_some() != v.get("error").is_some());
                }
                Slot::Broadcast { id: got, .. } => prop_assert_eq!(got, &json!(id)),
                Slot::Ready(None) => prop_assert!(false, "a call with an id unanswered"),
            }
            prop_assert!(s.subscriptions() <= 2);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_codec(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut b = LineBuffer::new();
            if b.push(&data).is_ok() {
                while let Ok(Some(l)) = b.next_line() {
                    let _ = parse_line(&l);
                }
            }
        }
    }
}
