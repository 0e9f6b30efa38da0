//! The Electrum server's index, sans-IO, the way electrs keeps one beside a node.
//!
//! [`Index`] is fed the node's blocks in order ([`Index::connect`]), told to drop its tip on a
//! reorganisation ([`Index::disconnect_tip`], down to the fork point), and given the node's
//! mempool as a whole snapshot ([`Index::set_mempool`]). It answers what the Electrum
//! protocol asks of a script: its *scripthash* ([`scripthash`]: SHA-256 of the scriptPubKey,
//! shown byte-reversed in hex), its history (confirmed transactions by height, then mempool
//! transactions at height 0, or -1 when they spend an unconfirmed output), the status hash of
//! that history ([`status_hash`]), its balance and unspent outputs; and for the chain, its
//! headers and a transaction's merkle branch. [`session::Session`] turns requests into answers
//! and subscriptions into notifications.
//!
//! Everything is in memory: the driver rebuilds it from the node at start.
pub mod session;

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use crate::wire::{Block, BlockHeader, Encode, OutPoint, Transaction};

/// SHA-256 of a scriptPubKey: the key the protocol names scripts by.
pub type ScriptHash = [u8; 32];

/// The protocol's scripthash of `script_pubkey`.
pub fn scripthash(script_pubkey: &[u8]) -> ScriptHash {
    Sha256::digest(script_pubkey).into()
}

/// A scripthash as the protocol writes it: the digest's bytes reversed, in hex.
pub fn scripthash_hex(sh: &ScriptHash) -> String {
    crate::hash_hex(sh)
}

/// Parse the protocol's scripthash hex (64 hex digits, byte-reversed).
pub fn parse_hash_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut b = [0u8; 32];
    hex::decode_to_slice(s, &mut b).ok()?;
    b.reverse();
    Some(b)
}

/// One history entry: height as the protocol gives it (>0 confirmed, 0 mempool, -1 mempool
/// spending an unconfirmed output) and the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryItem {
    pub height: i64,
    pub txid: [u8; 32],
    /// Mempool entries only: the fee in satoshis.
    pub fee: Option<u64>,
}

/// The protocol's status of a history: `sha256("txid:height:" ...)` in hex, `None` if empty.
pub fn status_hash(history: &[HistoryItem]) -> Option<String> {
    if history.is_empty() {
        return None;
    }
    let mut h = Sha256::new();
    for i in history {
        h.update(format!("{}:{}:", crate::hash_hex(&i.txid), i.height).as_bytes());
    }
    Some(hex::encode(h.finalize()))
}

/// An unspent output of a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unspent {
    pub outpoint: OutPoint,
    /// 0 for a mempool output.
    pub height: u32,
    pub value: u64,
}

/// Confirmed and mempool balance of a script (the mempool part may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    pub confirmed: u64,
    pub unconfirmed: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Coin {
    sh: ScriptHash,
    value: u64,
    height: u32,
}

/// What a block changed, to undo it.
#[derive(Debug, Clone, Default)]
struct BlockUndo {
    txids: Vec<[u8; 32]>,
    spent: Vec<(OutPoint, Coin)>,
    created: Vec<OutPoint>,
    touched: BTreeSet<ScriptHash>,
}

#[derive(Debug, Clone)]
struct MempoolTx {
    raw: Vec<u8>,
    fee: u64,
    vsize: u64,
    unconfirmed_parent: bool,
}

/// Why a block or a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("block {got} does not build on the indexed tip {tip}")]
    NotOnTip { got: String, tip: String },
    #[error("output value out of range in transaction {0}")]
    BadValue(String),
}

/// The index: chain, per-script history and coins, and the mempool's view on top.
#[derive(Debug, Default)]
pub struct Index {
    headers: Vec<BlockHeader>,
    hashes: Vec<[u8; 32]>,
    undo: Vec<BlockUndo>,
    /// Confirmed transactions: height and raw bytes.
    txs: BTreeMap<[u8; 32], (u32, Vec<u8>)>,
    history: BTreeMap<ScriptHash, Vec<(u32, [u8; 32])>>,
    coins: BTreeMap<OutPoint, Coin>,
    coins_of: BTreeMap<ScriptHash, BTreeSet<OutPoint>>,
    mempool: BTreeMap<[u8; 32], MempoolTx>,
    /// Mempool transactions touching each script.
    mempool_of: BTreeMap<ScriptHash, BTreeSet<[u8; 32]>>,
    /// Mempool outputs per script, and outputs spent by the mempool (with their owner and value).
    mempool_outs: BTreeMap<OutPoint, Coin>,
    mempool_spent: BTreeMap<OutPoint, Coin>,
    /// The node's mempool as last given.
    mempool_txs: BTreeMap<[u8; 32], Transaction>,
    /// Bumped by every change; `changed_at` says when each script's history last moved, so
    /// sessions recompute only the statuses that may differ.
    generation: u64,
    changed_at: BTreeMap<ScriptHash, u64>,
}

impl Index {
    pub fn new() -> Self {
        Self::default()
    }

    /// Height of the tip; `None` before genesis is indexed.
    pub fn height(&self) -> Option<u32> {
        (self.headers.len() as u32).checked_sub(1)
    }
    pub fn tip_hash(&self) -> Option<[u8; 32]> {
        self.hashes.last().copied()
    }
    pub fn hash_at(&self, height: u32) -> Option<[u8; 32]> {
        self.hashes.get(height as usize).copied()
    }
    pub fn header(&self, height: u32) -> Option<&BlockHeader> {
        self.headers.get(height as usize)
    }
    /// The 80-byte serialisation of the header at `height`.
    pub fn header_bytes(&self, height: u32) -> Option<Vec<u8>> {
        self.header(height).map(Encode::encode)
    }

    /// Add `b` on the tip (its `prev` must be the tip; any block starts an empty index).
    pub fn connect(&mut self, b: &Block) -> Result<(), IndexError> {
        if let Some(tip) = self.tip_hash() {
            if b.header.prev != tip {
                return Err(IndexError::NotOnTip {
                    got: b.header.hash_hex(),
                    tip: crate::hash_hex(&tip),
                });
            }
        }
        let height = self.headers.len() as u32;
        let mut undo = BlockUndo::default();
        let mut new_coins: Vec<(OutPoint, Coin)> = Vec::new();
        for tx in &b.txs {
            for o in &tx.outputs {
                if o.value < 0 {
                    return Err(IndexError::BadValue(crate::hash_hex(&tx.txid())));
                }
            }
        }
        for tx in &b.txs {
            let txid = tx.txid();
            undo.txids.push(txid);
            let mut shs: BTreeSet<ScriptHash> = BTreeSet::new();
            if !tx.is_coinbase() {
                for i in &tx.inputs {
                    let coin = match self.coins.remove(&i.prevout) {
                        Some(c) => {
                            if let Some(set) = self.coins_of.get_mut(&c.sh) {
                                set.remove(&i.prevout);
                                if set.is_empty() {
                                    self.coins_of.remove(&c.sh);
                                }
                            }
                            c
                        }
                        // Spent inside this block: created by an earlier transaction here.
                        None => match new_coins.iter().position(|(op, _)| *op == i.prevout) {
                            Some(p) => {
                                let (op, c) = new_coins.swap_remove(p);
                                if let Some(set) = self.coins_of.get_mut(&c.sh) {
                                    set.remove(&op);
                                    if set.is_empty() {
                                        self.coins_of.remove(&c.sh);
                                    }
                                }
                                self.coins.remove(&op);
                                c
                            }
                            None => continue,
                        },
                    };
                    shs.insert(coin.sh);
                    undo.spent.push((i.prevout.clone(), coin));
                }
            }
            for (vout, o) in tx.outputs.iter().enumerate() {
                let sh = scripthash(&o.script_pubkey);
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                let coin = Coin {
                    sh,
                    value: o.value as u64,
                    height,
                };
                self.coins.insert(op.clone(), coin.clone());
                self.coins_of.entry(sh).or_default().insert(op.clone());
                undo.created.push(op.clone());
                new_coins.push((op, coin));
                shs.insert(sh);
            }
            for sh in shs {
                self.history.entry(sh).or_default().push((height, txid));
                undo.touched.insert(sh);
            }
            self.txs.insert(txid, (height, tx.encode()));
        }
        // Undo must not restore coins created and spent in this very block.
        let created: BTreeSet<OutPoint> = undo.created.iter().cloned().collect();
        undo.spent.retain(|(op, _)| !created.contains(op));
        self.hashes.push(b.header.hash());
        self.headers.push(b.header.clone());
        self.generation += 1;
        for sh in &undo.touched {
            self.changed_at.insert(*sh, self.generation);
        }
        self.undo.push(undo);
        self.refresh_mempool();
        Ok(())
    }

    /// Drop the tip block (a reorganisation walks back to the fork point this way).
    pub fn disconnect_tip(&mut self) -> bool {
        let Some(undo) = self.undo.pop() else {
            return false;
        };
        let height = self.headers.len() as u32 - 1;
        self.headers.pop();
        self.hashes.pop();
        for op in &undo.created {
            if let Some(c) = self.coins.remove(op) {
                if let Some(set) = self.coins_of.get_mut(&c.sh) {
                    set.remove(op);
                    if set.is_empty() {
                        self.coins_of.remove(&c.sh);
                    }
                }
            }
        }
        for (op, c) in undo.spent {
            self.coins_of.entry(c.sh).or_default().insert(op.clone());
            self.coins.insert(op, c);
        }
        self.generation += 1;
        for sh in &undo.touched {
            self.changed_at.insert(*sh, self.generation);
            if let Some(h) = self.history.get_mut(sh) {
                while h.last().is_some_and(|(ht, _)| *ht == height) {
                    h.pop();
                }
                if h.is_empty() {
                    self.history.remove(sh);
                }
            }
        }
        for t in &undo.txids {
            self.txs.remove(t);
        }
        self.refresh_mempool();
        true
    }

    /// Replace the mempool view with `txs` (the node's whole pool, any order).
    pub fn set_mempool(&mut self, txs: Vec<Transaction>) {
        self.mempool_txs = txs.into_iter().map(|t| (t.txid(), t)).collect();
        self.refresh_mempool();
    }

    /// Recompute the mempool's view (fees, heights 0/-1, per-script sets) from the snapshot
    /// and the confirmed coins: parents before children, confirmed transactions dropped.
    fn refresh_mempool(&mut self) {
        self.generation += 1;
        // Scripts the pool touched before and after this refresh may have a new status.
        let before = std::mem::take(&mut self.mempool_of);
        self.mark_mempool_scripts(&before);
        self.mempool.clear();
        self.mempool_outs.clear();
        self.mempool_spent.clear();
        let txs = &self.mempool_txs;
        let mut order: Vec<[u8; 32]> = Vec::with_capacity(txs.len());
        let mut placed: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut left: Vec<[u8; 32]> = txs
            .keys()
            .filter(|t| !self.txs.contains_key(*t))
            .copied()
            .collect();
        // Each pass places every transaction whose in-pool parents are placed; at most one pass
        // per ancestry level, and a pass that places nothing ends it (a cycle cannot occur
        // between real transactions, but the input is the node's).
        while !left.is_empty() {
            let before = left.len();
            left.retain(|t| {
                let ready = txs.get(t).is_some_and(|tx| {
                    tx.inputs.iter().all(|i| {
                        !txs.contains_key(&i.prevout.txid)
                            || self.txs.contains_key(&i.prevout.txid)
                            || placed.contains(&i.prevout.txid)
                    })
                });
                if ready {
                    placed.insert(*t);
                    order.push(*t);
                }
                !ready
            });
            if left.len() == before {
                order.append(&mut left);
            }
        }
        for txid in order {
            let Some(tx) = txs.get(&txid) else { continue };
            let mut shs: BTreeSet<ScriptHash> = BTreeSet::new();
            let mut input_sum: u64 = 0;
            let mut all_known = true;
            let mut unconfirmed_parent = false;
            for i in &tx.inputs {
                let coin = if let Some(c) = self.coins.get(&i.prevout) {
                    Some(c.clone())
                } else if let Some(c) = self.mempool_outs.get(&i.prevout) {
                    unconfirmed_parent = true;
                    Some(c.clone())
                } else {
                    if txs.contains_key(&i.prevout.txid) {
                        unconfirmed_parent = true;
                    }
                    None
                };
                match coin {
                    Some(c) => {
                        input_sum = input_sum.saturating_add(c.value);
                        shs.insert(c.sh);
                        self.mempool_spent.insert(i.prevout.clone(), c);
                    }
                    None => all_known = false,
                }
            }
            let mut output_sum: u64 = 0;
            for (vout, o) in tx.outputs.iter().enumerate() {
                let sh = scripthash(&o.script_pubkey);
                let value = u64::try_from(o.value).unwrap_or(0);
                output_sum = output_sum.saturating_add(value);
                shs.insert(sh);
                self.mempool_outs.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    Coin {
                        sh,
                        value,
                        height: 0,
                    },
                );
            }
            let raw = tx.encode();
            let fee = if all_known {
                input_sum.saturating_sub(output_sum)
            } else {
                0
            };
            for sh in shs {
                self.mempool_of.entry(sh).or_default().insert(txid);
            }
            self.mempool.insert(
                txid,
                MempoolTx {
                    vsize: raw.len() as u64,
                    raw,
                    fee,
                    unconfirmed_parent,
                },
            );
        }
        let after = std::mem::take(&mut self.mempool_of);
        self.mark_mempool_scripts(&after);
        self.mempool_of = after;
    }

    fn mark_mempool_scripts(&mut self, of: &BTreeMap<ScriptHash, BTreeSet<[u8; 32]>>) {
        for sh in of.keys() {
            self.changed_at.insert(*sh, self.generation);
        }
    }

    /// A counter bumped by every change to the index.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `sh`'s history may have changed after generation `since`.
    pub fn changed_since(&self, sh: &ScriptHash, since: u64) -> bool {
        self.changed_at.get(sh).is_some_and(|g| *g > since)
    }

    /// Confirmed history of `sh` in chain order, then its mempool entries (height 0 before -1,
    /// each group by txid), as `blockchain.scripthash.get_history` returns it.
    pub fn history(&self, sh: &ScriptHash) -> Vec<HistoryItem> {
        let mut out: Vec<HistoryItem> = self
            .history
            .get(sh)
            .map(|h| {
                h.iter()
                    .map(|(height, txid)| HistoryItem {
                        height: i64::from(*height),
                        txid: *txid,
                        fee: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.extend(self.mempool_history(sh));
        out
    }

    /// Number of history entries of `sh` (to bound answers before building them).
    pub fn history_len(&self, sh: &ScriptHash) -> usize {
        self.history.get(sh).map_or(0, Vec::len) + self.mempool_of.get(sh).map_or(0, BTreeSet::len)
    }

    /// The mempool entries of `sh` (`blockchain.scripthash.get_mempool`).
    pub fn mempool_history(&self, sh: &ScriptHash) -> Vec<HistoryItem> {
        let mut m: Vec<HistoryItem> = self
            .mempool_of
            .get(sh)
            .map(|set| {
                set.iter()
                    .filter_map(|t| {
                        self.mempool.get(t).map(|e| HistoryItem {
                            height: if e.unconfirmed_parent { -1 } else { 0 },
                            txid: *t,
                            fee: Some(e.fee),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        m.sort_by(|a, b| {
            b.height
                .cmp(&a.height)
                .then_with(|| crate::hash_hex(&a.txid).cmp(&crate::hash_hex(&b.txid)))
        });
        m
    }

    /// The status hash of `sh`'s history.
    pub fn status(&self, sh: &ScriptHash) -> Option<String> {
        status_hash(&self.history(sh))
    }

    /// Confirmed balance, and what the mempool adds and takes away.
    pub fn balance(&self, sh: &ScriptHash) -> Balance {
        let confirmed = self
            .coins_of
            .get(sh)
            .map(|set| {
                set.iter()
                    .filter_map(|op| self.coins.get(op))
                    .fold(0u64, |a, c| a.saturating_add(c.value))
            })
            .unwrap_or(0);
        let mut unconfirmed: i64 = 0;
        for txid in self.mempool_of.get(sh).into_iter().flatten() {
            let Some(tx) = self.mempool_txs.get(txid) else {
                continue;
            };
            for vout in 0..tx.outputs.len() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                if let Some(c) = self.mempool_outs.get(&op) {
                    if c.sh == *sh {
                        unconfirmed = unconfirmed.saturating_add(c.value as i64);
                    }
                }
            }
            for i in &tx.inputs {
                if let Some(c) = self.mempool_spent.get(&i.prevout) {
                    if c.sh == *sh {
                        unconfirmed = unconfirmed.saturating_sub(c.value as i64);
                    }
                }
            }
        }
        Balance {
            confirmed,
            unconfirmed,
        }
    }

    /// Unspent outputs of `sh`: confirmed ones the mempool does not spend, then mempool ones.
    pub fn unspent(&self, sh: &ScriptHash) -> Vec<Unspent> {
        let mut out: Vec<Unspent> = self
            .coins_of
            .get(sh)
            .map(|set| {
                set.iter()
                    .filter(|op| !self.mempool_spent.contains_key(*op))
                    .filter_map(|op| {
                        self.coins.get(op).map(|c| Unspent {
                            outpoint: op.clone(),
                            height: c.height,
                            value: c.value,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|u| u.height);
        for txid in self.mempool_of.get(sh).into_iter().flatten() {
            let Some(tx) = self.mempool_txs.get(txid) else {
                continue;
            };
            for vout in 0..tx.outputs.len() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                match self.mempool_outs.get(&op) {
                    Some(c) if c.sh == *sh && !self.mempool_spent.contains_key(&op) => {
                        out.push(Unspent {
                            outpoint: op,
                            height: 0,
                            value: c.value,
                        });
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// A transaction's raw bytes, confirmed or in the mempool.
    pub fn transaction(&self, txid: &[u8; 32]) -> Option<&[u8]> {
        self.txs
            .get(txid)
            .map(|(_, r)| r.as_slice())
            .or_else(|| self.mempool.get(txid).map(|m| m.raw.as_slice()))
    }

    /// The height a transaction was confirmed at.
    pub fn tx_height(&self, txid: &[u8; 32]) -> Option<u32> {
        self.txs.get(txid).map(|(h, _)| *h)
    }

    /// The merkle branch of `txid` in the block at `height`: sibling hashes bottom-up and the
    /// transaction's position.
    pub fn merkle_branch(&self, txid: &[u8; 32], height: u32) -> Option<(Vec<[u8; 32]>, usize)> {
        let txids = &self.undo.get(height as usize)?.txids;
        let pos = txids.iter().position(|t| t == txid)?;
        Some((merkle_branch(txids, pos), pos))
    }

    /// Mempool fee rates (sat/vB) and sizes, for `mempool.get_fee_histogram`: `[rate, vsize]`
    /// pairs by falling rate, one per whole sat/vB.
    pub fn fee_histogram(&self) -> Vec<(u64, u64)> {
        let mut by_rate: BTreeMap<u64, u64> = BTreeMap::new();
        for m in self.mempool.values() {
            let rate = m.fee / m.vsize.max(1);
            let e = by_rate.entry(rate).or_default();
            *e = e.saturating_add(m.vsize);
        }
        by_rate.into_iter().rev().collect()
    }

    /// Transactions in the mempool view.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }
    /// Whether the mempool snapshot holds `txid` (so a poller fetches only new ones).
    pub fn mempool_has(&self, txid: &[u8; 32]) -> bool {
        self.mempool_txs.contains_key(txid)
    }
    /// Transactions in the mempool snapshot as last given.
    pub fn mempool_snapshot_len(&self) -> usize {
        self.mempool_txs.len()
    }
    /// The snapshot's transaction `txid`.
    pub fn mempool_tx(&self, txid: &[u8; 32]) -> Option<&Transaction> {
        self.mempool_txs.get(txid)
    }
}

pub use crate::{merkle_branch, merkle_root_from_branch};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{TxIn, TxOut};

    fn coinbase(tag: u8, script: &[u8], value: i64) -> Transaction {
        Transaction {
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
                value,
                script_pubkey: script.to_vec(),
            }],
            lock_time: 0,
        }
    }

    fn spend(from: &Transaction, vout: u32, outs: &[(&[u8], i64)]) -> Transaction {
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint {
                    txid: from.txid(),
                    vout,
                },
                script_sig: vec![0x51],
                sequence: u32::MAX,
            }],
            outputs: outs
                .iter()
                .map(|(s, v)| TxOut {
                    value: *v,
                    script_pubkey: s.to_vec(),
                })
                .collect(),
            lock_time: 0,
        }
    }

    fn block(prev: [u8; 32], nonce: u32, txs: Vec<Transaction>) -> Block {
        let ids: Vec<[u8; 32]> = txs.iter().map(Transaction::txid).collect();
        Block {
            header: BlockHeader {
                version: 1,
                prev,
                merkle_root: crate::merkle_root(&ids).0,
                time: 1_296_688_602 + nonce,
                bits: 0x207f_ffff,
                nonce,
            },
            txs,
        }
    }

    const A: &[u8] = &[0x76, 0xa9, 0x14, 1, 0x88, 0xac];
    const B: &[u8] = &[0x76, 0xa9, 0x14, 2, 0x88, 0xac];
    const C: &[u8] = &[0x76, 0xa9, 0x14, 3, 0x88, 0xac];

    #[test]
    fn scripthash_is_the_protocol_docs_example() {
        // The protocol documentation's P2PKH example (address 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa).
        let spk = hex::decode("76a91462e907b15cbf27d5425399ebf6f0fb50ebb88f1888ac").expect("hex");
        assert_eq!(
            scripthash_hex(&scripthash(&spk)),
            "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"
        );
    }

    #[test]
    fn status_hash_is_sha256_of_txid_height_pairs_as_the_protocol_defines() {
        // sha256("4a5e..a33b:0:" + "00..01:-1:"), computed by hand with Python's hashlib.
        let t1 = parse_hash_hex("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b")
            .expect("hash");
        let t2 = parse_hash_hex(&format!("{}01", "00".repeat(31))).expect("hash");
        let h = [
            HistoryItem {
                height: 0,
                txid: t1,
                fee: Some(0),
            },
            HistoryItem {
                height: -1,
                txid: t2,
                fee: Some(0),
            },
        ];
        assert_eq!(
            status_hash(&h).as_deref(),
            Some("39c8ef1c2b848feb69635e8b37651cd4150a94f91f597e95928347c4f57ea63d")
        );
        assert_eq!(status_hash(&[]), None);
    }

    #[test]
    fn blocks_credit_and_debit_scripts_and_a_reorg_undoes_them() {
        let mut ix = Index::new();
        let g = block([0; 32], 0, vec![coinbase(0, C, 50)]);
        ix.connect(&g).expect("genesis");
        let cb = coinbase(1, A, 5_000);
        let b1 = block(g.header.hash(), 1, vec![cb.clone()]);
        ix.connect(&b1).expect("b1");
        let pay = spend(&cb, 0, &[(B, 3_000), (A, 1_900)]);
        let b2 = block(b1.header.hash(), 2, vec![coinbase(2, C, 50), pay.clone()]);
        ix.connect(&b2).expect("b2");
        let (sa, sb) = (scripthash(A), scripthash(B));
        assert_eq!(ix.balance(&sa).confirmed, 1_900);
        assert_eq!(ix.balance(&sb).confirmed, 3_000);
        assert_eq!(
            ix.history(&sa)
                .iter()
                .map(|i| (i.height, i.txid))
                .collect::<Vec<_>>(),
            vec![(1, cb.txid()), (2, pay.txid())]
        );
        assert!(
            ix.connect(&b1).is_err(),
            "a block not on the tip is refused"
        );
        // Reorganise: b2 goes, b2' (paying nobody but C) comes.
        let status_after_b1 = {
            let mut other = Index::new();
            other.connect(&g).expect("g");
            other.connect(&b1).expect("b1");
            other.status(&sa)
        };
        assert!(ix.disconnect_tip());
        assert_eq!(ix.height(), Some(1));
        assert_eq!(ix.balance(&sa).confirmed, 5_000);
        assert_eq!(ix.balance(&sb).confirmed, 0);
        assert!(ix.history(&sb).is_empty());
        assert_eq!(ix.status(&sa), status_after_b1);
        assert_eq!(ix.transaction(&pay.txid()), None);
        let b2x = block(b1.header.hash(), 22, vec![coinbase(22, C, 50)]);
        ix.connect(&b2x).expect("b2'");
        assert_eq!(ix.tip_hash(), Some(b2x.header.hash()));
        assert_eq!(ix.unspent(&sa).len(), 1);
    }

    #[test]
    fn mempool_entries_have_height_0_or_minus_1_fees_and_pending_balances() {
        let mut ix = Index::new();
        let cb = coinbase(0, A, 10_000);
        ix.connect(&block([0; 32], 0, vec![cb.clone()])).expect("g");
        let parent = spend(&cb, 0, &[(B, 9_000)]);
        let child = spend(&parent, 0, &[(C, 8_500)]);
        ix.set_mempool(vec![child.clone(), parent.clone()]);
        let (sa, sb, sc) = (scripthash(A), scripthash(B), scripthash(C));
        assert_eq!(
            ix.balance(&sa),
            Balance {
                confirmed: 10_000,
                unconfirmed: -10_000
            }
        );
        assert_eq!(
            ix.balance(&sb).unconfirmed,
            0,
            "received then spent in the pool"
        );
        assert_eq!(ix.balance(&sc).unconfirmed, 8_500);
        let h = ix.history(&sb);
        assert_eq!(
            h.iter()
                .map(|i| (i.height, i.txid, i.fee))
                .collect::<Vec<_>>(),
            vec![
                (0, parent.txid(), Some(1_000)),
                (-1, child.txid(), Some(500))
            ]
        );
        assert!(ix.unspent(&sa).is_empty(), "spent by the pool");
        assert_eq!(ix.unspent(&sc)[0].height, 0);
        assert_eq!(ix.fee_histogram().len(), 2);
        // Mined: the pool empties of them, history turns confirmed.
        let tip = ix.tip_hash().expect("tip");
        ix.connect(&block(
            tip,
            1,
            vec![coinbase(1, C, 1), parent.clone(), child.clone()],
        ))
        .expect("b1");
        assert_eq!(ix.mempool_len(), 0);
        assert!(ix.history(&sb).iter().all(|i| i.height == 1));
        assert_eq!(ix.balance(&sc).confirmed, 8_501);
    }

    #[test]
    fn merkle_branches_prove_the_blocks_merkle_root() {
        for n in 1..=9u8 {
            let txs: Vec<Transaction> = (0..n).map(|i| coinbase(i, A, 1)).collect();
            let b = block([0; 32], 0, txs.clone());
            let mut ix = Index::new();
            ix.connect(&b).expect("block");
            for t in &txs {
                let (branch, pos) = ix.merkle_branch(&t.txid(), 0).expect("in block");
                assert_eq!(
                    merkle_root_from_branch(t.txid(), &branch, pos),
                    b.header.merkle_root,
                    "{n} txs, position {pos}"
                );
            }
        }
    }
}
