//! The wallet's view of the chain, sans-IO: its keys (BIP 44 account
//! `m/44'/coin'/0'`, receive chain 0 and change chain 1, with a gap limit of
//! [`GAP_LIMIT`] addresses looked ahead on both), its transactions and coins,
//! and how far it scanned. The caller feeds it blocks in height order
//! ([`Wallet::connect_block`]), takes blocks back on a reorganisation
//! ([`Wallet::disconnect_tip`]), and shows it mempool transactions
//! ([`Wallet::add_unconfirmed`]).
//!
//! Balances follow Bitcoin Core's `getbalances`: *confirmed* (Core's
//! `trusted`) is confirmed mature coins plus unconfirmed coins of our own
//! transactions (change); *pending* (`untrusted_pending`) is unconfirmed
//! coins from others; *immature* is coinbase outputs under 100
//! confirmations. Coins spent by any wallet transaction, confirmed or not,
//! are not spendable again.
use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use super::bip32::{Bip32Error, ExtendedPrivKey, HARDENED};
use super::build::Coin;
use super::file::{MAX_SCANNED, MAX_TXS, StoredTx, WalletPayload};
use super::keys::{Address, Network};
use crate::core::block::COINBASE_MATURITY;
use crate::wire::{Block, Encode, OutPoint, Transaction};

/// Unused addresses watched past the last used one, on each chain.
pub const GAP_LIMIT: u32 = 20;
/// The receive (external) chain.
pub const RECEIVE: u32 = 0;
/// The change (internal) chain.
pub const CHANGE: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("key derivation: {0}")]
    Derivation(#[from] Bip32Error),
    #[error("a saved transaction does not decode")]
    BadStoredTx,
    #[error("block at height {got} does not follow the scanned tip at {tip}")]
    NotNext { got: u32, tip: u32 },
    #[error("block does not build on the scanned tip")]
    NotChild,
    #[error("address index space exhausted")]
    IndexExhausted,
    #[error("the wallet holds {MAX_TXS} transactions, the most it keeps")]
    TooManyTxs,
}

/// One of the wallet's transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletTx {
    pub tx: Transaction,
    /// Height and hash of its block; `None` while unconfirmed.
    pub block: Option<(u32, [u8; 32])>,
    pub seq: u64,
}

/// One coin the wallet owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    pub outpoint: OutPoint,
    pub value: u64,
    pub script_pubkey: Vec<u8>,
    /// Keychain (receive 0, change 1) and index of the key.
    pub key: (u32, u32),
    pub height: Option<u32>,
    pub coinbase: bool,
    /// Confirmed, or unconfirmed from a transaction of ours.
    pub trusted: bool,
}

/// Balances in satoshis, as Core's `getbalances`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    pub confirmed: u64,
    pub pending: u64,
    pub immature: u64,
}

/// A line of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub txid: [u8; 32],
    /// What the wallet gained (positive) or paid including the fee (negative), in sat.
    pub amount: i64,
    /// The fee, when every input is the wallet's (its own payments).
    pub fee: Option<u64>,
    pub confirmations: u32,
    pub height: Option<u32>,
    pub coinbase: bool,
}

/// The coin type of BIP 44: 0 on mainnet, 1 on the test networks.
pub fn coin_type(network: Network) -> u32 {
    if network.is_mainnet() { 0 } else { 1 }
}

/// A wallet loaded from its payload.
pub struct Wallet {
    payload: WalletPayload,
    master: ExtendedPrivKey,
    chains: [ExtendedPrivKey; 2],
    /// Watched scripts: keychain and index.
    scripts: BTreeMap<Vec<u8>, (u32, u32)>,
    derived: [u32; 2],
    txs: BTreeMap<[u8; 32], WalletTx>,
    next_seq: u64,
}

impl Wallet {
    /// Loads `payload`: derives the keys and the watched scripts, decodes the transactions.
    pub fn new(mut payload: WalletPayload) -> Result<Self, ChainError> {
        let master = ExtendedPrivKey::master(payload.seed.as_bytes(), payload.network)?;
        let account = master
            .derive_child(44 | HARDENED)?
            .derive_child(coin_type(payload.network) | HARDENED)?
            .derive_child(HARDENED)?;
        let chains = [
            account.derive_child(RECEIVE)?,
            account.derive_child(CHANGE)?,
        ];
        let mut txs = BTreeMap::new();
        let mut next_seq = 0;
        for s in std::mem::take(&mut payload.txs) {
            let tx = Transaction::decode(&s.raw).map_err(|_| ChainError::BadStoredTx)?;
            next_seq = next_seq.max(s.seq.saturating_add(1));
            txs.insert(
                tx.txid(),
                WalletTx {
                    tx,
                    block: s.block,
                    seq: s.seq,
                },
            );
        }
        let mut w = Self {
            payload,
            master,
            chains,
            scripts: BTreeMap::new(),
            derived: [0, 0],
            txs,
            next_seq,
        };
        w.lookahead()?;
        Ok(w)
    }

    /// The payload to save: the wallet's state as it is now.
    pub fn to_payload(&self) -> WalletPayload {
        let mut p = self.payload.clone();
        let mut txs: Vec<&WalletTx> = self.txs.values().collect();
        txs.sort_by_key(|t| t.seq);
        p.txs = txs
            .into_iter()
            .map(|t| StoredTx {
                raw: t.tx.encode(),
                block: t.block,
                seq: t.seq,
            })
            .collect();
        p
    }

    pub fn network(&self) -> Network {
        self.payload.network
    }

    /// The master key (for `export` only).
    pub fn master(&self) -> &ExtendedPrivKey {
        &self.master
    }

    /// The mnemonic's entropy, when the wallet was made from words.
    pub fn entropy(&self) -> Option<&[u8]> {
        self.payload.entropy.as_ref().map(|e| e.as_slice())
    }

    /// The BIP 44 account path.
    pub fn account_path(&self) -> String {
        format!("m/44'/{}'/0'", coin_type(self.payload.network))
    }

    fn lookahead(&mut self) -> Result<(), ChainError> {
        for chain in [RECEIVE, CHANGE] {
            let next = if chain == RECEIVE {
                self.payload.next_receive
            } else {
                self.payload.next_change
            };
            let want = next
                .checked_add(GAP_LIMIT)
                .filter(|w| *w < HARDENED)
                .ok_or(ChainError::IndexExhausted)?;
            while self.derived[chain as usize] < want {
                let i = self.derived[chain as usize];
                let addr = self.chains[chain as usize].derive_child(i)?.address();
                self.scripts.insert(addr.script_pubkey(), (chain, i));
                self.derived[chain as usize] = i + 1;
            }
        }
        Ok(())
    }

    /// The address at `index` on `chain`.
    pub fn address_at(&self, chain: u32, index: u32) -> Result<Address, ChainError> {
        Ok(self.chains[chain as usize & 1]
            .derive_child(index)?
            .address())
    }

    /// A new receiving address: the next unused index, never handed out before.
    pub fn new_receive_address(&mut self) -> Result<Address, ChainError> {
        let i = self.payload.next_receive;
        let a = self.address_at(RECEIVE, i)?;
        self.payload.next_receive = i.checked_add(1).ok_or(ChainError::IndexExhausted)?;
        self.lookahead()?;
        Ok(a)
    }

    /// A new change address (one per payment).
    pub fn new_change_address(&mut self) -> Result<Address, ChainError> {
        let i = self.payload.next_change;
        let a = self.address_at(CHANGE, i)?;
        self.payload.next_change = i.checked_add(1).ok_or(ChainError::IndexExhausted)?;
        self.lookahead()?;
        Ok(a)
    }

    /// How many receive and change addresses were handed out.
    pub fn next_indexes(&self) -> (u32, u32) {
        (self.payload.next_receive, self.payload.next_change)
    }

    /// Height and hash of the last scanned block.
    pub fn tip(&self) -> Option<(u32, [u8; 32])> {
        self.payload
            .scanned
            .hashes
            .last()
            .map(|h| (self.payload.scanned.tip_height, *h))
    }

    /// Starts a new wallet's scan after the block `hash` at `height`: nothing
    /// before a wallet's first address can pay it. Refused once anything was scanned.
    pub fn start_at(&mut self, height: u32, hash: [u8; 32]) -> bool {
        if !self.payload.scanned.hashes.is_empty() || !self.txs.is_empty() {
            return false;
        }
        self.payload.scanned.hashes.push(hash);
        self.payload.scanned.tip_height = height;
        true
    }

    /// The height the next block to scan has.
    pub fn next_height(&self) -> u32 {
        self.tip().map_or(0, |(h, _)| h + 1)
    }

    /// Undoes the last scanned block (a reorganisation): its transactions
    /// become unconfirmed. `false` when no scanned block is left to undo (a
    /// reorganisation deeper than the kept hashes): then the scan restarts
    /// from the genesis block.
    pub fn disconnect_tip(&mut self) -> bool {
        let Some((h, _)) = self.tip() else {
            return false;
        };
        for t in self.txs.values_mut() {
            if t.block.is_some_and(|(bh, _)| bh >= h) {
                t.block = None;
            }
        }
        self.payload.scanned.hashes.pop();
        if self.payload.scanned.hashes.is_empty() {
            self.payload.scanned.tip_height = 0;
            if h > 0 {
                for t in self.txs.values_mut() {
                    t.block = None;
                }
                return false;
            }
        } else {
            self.payload.scanned.tip_height = h - 1;
        }
        true
    }

    /// Scans the block at `height` (the next one): keeps its transactions
    /// that pay or spend the wallet's coins.
    pub fn connect_block(
        &mut self,
        height: u32,
        hash: [u8; 32],
        block: &Block,
    ) -> Result<(), ChainError> {
        let next = self.next_height();
        if height != next {
            return Err(ChainError::NotNext {
                got: height,
                tip: next.saturating_sub(1),
            });
        }
        if let Some((_, tip)) = self.tip() {
            if block.header.prev != tip {
                return Err(ChainError::NotChild);
            }
        }
        for tx in &block.txs {
            self.add_tx(tx, Some((height, hash)))?;
        }
        let s = &mut self.payload.scanned;
        s.hashes.push(hash);
        s.tip_height = height;
        if s.hashes.len() > MAX_SCANNED {
            let cut = s.hashes.len() - MAX_SCANNED;
            s.hashes.drain(..cut);
        }
        Ok(())
    }

    /// Shows the wallet a transaction seen unconfirmed (in the mempool, or
    /// just sent); kept if it concerns the wallet. `true` if it is the wallet's.
    pub fn add_unconfirmed(&mut self, tx: &Transaction) -> Result<bool, ChainError> {
        self.add_tx(tx, None)
    }

    fn is_relevant(&self, tx: &Transaction) -> bool {
        tx.outputs
            .iter()
            .any(|o| self.scripts.contains_key(&o.script_pubkey))
            || tx
                .inputs
                .iter()
                .any(|i| self.owned_output(&i.prevout).is_some())
    }

    fn add_tx(
        &mut self,
        tx: &Transaction,
        block: Option<(u32, [u8; 32])>,
    ) -> Result<bool, ChainError> {
        let txid = tx.txid();
        if let Some(t) = self.txs.get_mut(&txid) {
            if block.is_some() {
                t.block = block;
            }
        } else {
            if !self.is_relevant(tx) {
                return Ok(false);
            }
            if self.txs.len() >= MAX_TXS {
                return Err(ChainError::TooManyTxs);
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.txs.insert(
                txid,
                WalletTx {
                    tx: tx.clone(),
                    block,
                    seq,
                },
            );
        }
        // Outputs to addresses past the handed-out ones (a restored wallet,
        // or another copy of it) move the indexes on, and the lookahead with them.
        for o in &tx.outputs {
            if let Some(&(chain, i)) = self.scripts.get(&o.script_pubkey) {
                let next = if chain == RECEIVE {
                    &mut self.payload.next_receive
                } else {
                    &mut self.payload.next_change
                };
                *next = (*next).max(i + 1);
            }
        }
        self.lookahead()?;
        if block.is_some() {
            // A confirmed spend evicts every unconfirmed wallet transaction that
            // spends the same coins (and their descendants): they can never confirm.
            let spent: BTreeSet<&OutPoint> = tx.inputs.iter().map(|i| &i.prevout).collect();
            let conflicted: Vec<[u8; 32]> = self
                .txs
                .iter()
                .filter(|(id, t)| {
                    **id != txid
                        && t.block.is_none()
                        && t.tx.inputs.iter().any(|i| spent.contains(&i.prevout))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in conflicted {
                self.remove_unconfirmed(&id);
            }
        }
        Ok(true)
    }

    /// Forgets an unconfirmed transaction and its unconfirmed descendants
    /// (one that the network no longer has and refuses again).
    pub fn remove_unconfirmed(&mut self, txid: &[u8; 32]) {
        let mut todo = vec![*txid];
        let mut guard = 0;
        while let Some(id) = todo.pop() {
            guard += 1;
            if guard > MAX_TXS {
                break;
            }
            if self.txs.get(&id).is_some_and(|t| t.block.is_none()) {
                self.txs.remove(&id);
                for (cid, c) in &self.txs {
                    if c.block.is_none() && c.tx.inputs.iter().any(|i| i.prevout.txid == id) {
                        todo.push(*cid);
                    }
                }
            }
        }
    }

    /// The wallet's unconfirmed transactions, oldest first.
    pub fn unconfirmed(&self) -> Vec<Transaction> {
        let mut v: Vec<&WalletTx> = self.txs.values().filter(|t| t.block.is_none()).collect();
        v.sort_by_key(|t| t.seq);
        v.into_iter().map(|t| t.tx.clone()).collect()
    }

    pub fn contains(&self, txid: &[u8; 32]) -> bool {
        self.txs.contains_key(txid)
    }

    pub fn tx(&self, txid: &[u8; 32]) -> Option<&WalletTx> {
        self.txs.get(txid)
    }

    /// The output at `op` if it is a wallet transaction's and pays a wallet script.
    fn owned_output(&self, op: &OutPoint) -> Option<(u64, &[u8], (u32, u32))> {
        let t = self.txs.get(&op.txid)?;
        let o = t.tx.outputs.get(op.vout as usize)?;
        let key = *self.scripts.get(&o.script_pubkey)?;
        Some((u64::try_from(o.value).ok()?, &o.script_pubkey, key))
    }

    /// Whether an unconfirmed transaction is our own: every input spends a
    /// coin of ours from a confirmed or (recursively) trusted transaction.
    fn trusted(&self, t: &WalletTx, depth: u32) -> bool {
        if t.block.is_some() {
            return true;
        }
        if depth > 100 || t.tx.is_coinbase() {
            return false;
        }
        t.tx.inputs.iter().all(|i| {
            self.owned_output(&i.prevout).is_some()
                && self
                    .txs
                    .get(&i.prevout.txid)
                    .is_some_and(|p| self.trusted(p, depth + 1))
        })
    }

    /// The wallet's unspent coins: outputs to its scripts that no wallet transaction spends.
    pub fn utxos(&self) -> Vec<Utxo> {
        let spent: BTreeSet<&OutPoint> = self
            .txs
            .values()
            .flat_map(|t| t.tx.inputs.iter().map(|i| &i.prevout))
            .collect();
        let mut out = Vec::new();
        let mut txs: Vec<(&[u8; 32], &WalletTx)> = self.txs.iter().collect();
        txs.sort_by_key(|(_, t)| t.seq);
        for (txid, t) in txs {
            let trusted = self.trusted(t, 0);
            for (vout, o) in t.tx.outputs.iter().enumerate() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                let Some(&key) = self.scripts.get(&o.script_pubkey) else {
                    continue;
                };
                if spent.contains(&op) {
                    continue;
                }
                let Ok(value) = u64::try_from(o.value) else {
                    continue;
                };
                out.push(Utxo {
                    outpoint: op,
                    value,
                    script_pubkey: o.script_pubkey.clone(),
                    key,
                    height: t.block.map(|b| b.0),
                    coinbase: t.tx.is_coinbase(),
                    trusted,
                });
            }
        }
        out
    }

    fn mature(u: &Utxo, tip: u32) -> bool {
        !u.coinbase
            || u.height
                .is_some_and(|h| tip.saturating_sub(h).saturating_add(1) >= COINBASE_MATURITY)
    }

    /// Balances at the scanned tip.
    pub fn balance(&self) -> Balance {
        let tip = self.tip().map_or(0, |t| t.0);
        let mut b = Balance::default();
        for u in self.utxos() {
            let slot = if !Self::mature(&u, tip) {
                &mut b.immature
            } else if u.trusted {
                &mut b.confirmed
            } else {
                &mut b.pending
            };
            *slot = slot.saturating_add(u.value);
        }
        b
    }

    /// The coins a payment may spend: trusted and mature, with their keys.
    pub fn spendable(&self) -> Result<Vec<Coin>, ChainError> {
        let tip = self.tip().map_or(0, |t| t.0);
        let mut out = Vec::new();
        for u in self.utxos() {
            if u.trusted && Self::mature(&u, tip) {
                let key = self.chains[u.key.0 as usize & 1]
                    .derive_child(u.key.1)?
                    .private_key();
                out.push(Coin {
                    outpoint: u.outpoint,
                    value: u.value,
                    script_pubkey: u.script_pubkey,
                    key,
                });
            }
        }
        Ok(out)
    }

    /// Whether `script` is one of the wallet's (receive or change).
    pub fn is_mine(&self, script: &[u8]) -> bool {
        self.scripts.contains_key(script)
    }

    /// The history, oldest first.
    pub fn history(&self) -> Vec<HistoryEntry> {
        let tip = self.tip().map_or(0, |t| t.0);
        let mut txs: Vec<&WalletTx> = self.txs.values().collect();
        txs.sort_by_key(|t| t.seq);
        txs.into_iter()
            .map(|t| {
                let received: i64 =
                    t.tx.outputs
                        .iter()
                        .filter(|o| self.scripts.contains_key(&o.script_pubkey))
                        .map(|o| o.value)
                        .fold(0i64, i64::saturating_add);
                let mut all_ours = !t.tx.is_coinbase();
                let mut paid: i64 = 0;
                for i in &t.tx.inputs {
                    match self.owned_output(&i.prevout) {
                        Some((v, _, _)) => paid = paid.saturating_add(v as i64),
                        None => all_ours = false,
                    }
                }
                let out_total: i64 =
                    t.tx.outputs
                        .iter()
                        .map(|o| o.value)
                        .fold(0i64, i64::saturating_add);
                let fee = (all_ours && paid >= out_total).then(|| (paid - out_total) as u64);
                HistoryEntry {
                    txid: t.tx.txid(),
                    amount: received.saturating_sub(paid),
                    fee,
                    confirmations: t
                        .block
                        .map_or(0, |(h, _)| tip.saturating_sub(h).saturating_add(1)),
                    height: t.block.map(|b| b.0),
                    coinbase: t.tx.is_coinbase(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wallet::build::{PaymentRequest, build_payment};
    use crate::wallet::secret::Seed;
    use crate::wire::{BlockHeader, TxIn, TxOut};

    fn wallet(n: u8) -> Wallet {
        Wallet::new(WalletPayload::new(
            Network::Regtest,
            Seed::from_bytes(&[n; 32]).expect("seed"),
        ))
        .expect("wallet")
    }

    fn coinbase(height: u32, script: Vec<u8>, value: i64) -> Transaction {
        Transaction {
            version: 1,
            inputs: vec![TxIn {
                prevout: OutPoint {
                    txid: [0; 32],
                    vout: u32::MAX,
                },
                script_sig: vec![4, height as u8, (height >> 8) as u8, 0, 0],
                sequence: u32::MAX,
            }],
            outputs: vec![TxOut {
                value,
                script_pubkey: script,
            }],
            lock_time: 0,
        }
    }

    struct Chain {
        hashes: Vec<[u8; 32]>,
    }

    impl Chain {
        /// A block on our tip (hash made up from the height and a fork tag).
        fn block(&mut self, txs: Vec<Transaction>, fork: u8) -> (u32, [u8; 32], Block) {
            let height = self.hashes.len() as u32;
            let prev = self.hashes.last().copied().unwrap_or([0; 32]);
            let mut hash = [fork; 32];
            hash[..4].copy_from_slice(&height.to_le_bytes());
            self.hashes.push(hash);
            let b = Block {
                header: BlockHeader {
                    version: 1,
                    prev,
                    merkle_root: [0; 32],
                    time: 0,
                    bits: 0,
                    nonce: 0,
                },
                txs,
            };
            (height, hash, b)
        }
    }

    fn connect(w: &mut Wallet, c: &mut Chain, txs: Vec<Transaction>) {
        let (h, hash, b) = c.block(txs, 0);
        w.connect_block(h, hash, &b).expect("connect");
    }

    fn pay_script() -> Vec<u8> {
        vec![
            0x76, 0xa9, 0x14, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0x88,
            0xac,
        ]
    }

    #[test]
    fn coinbase_matures_payments_reserve_inputs_and_change_is_trusted() {
        let mut a = wallet(1);
        let mut b = wallet(2);
        let mut c = Chain { hashes: vec![] };
        let to_a = a.new_receive_address().expect("addr").script_pubkey();
        connect(&mut a, &mut c, vec![coinbase(0, to_a, 50_0000_0000)]);
        for h in 1..100 {
            connect(&mut a, &mut c, vec![coinbase(h, pay_script(), 1)]);
            if h == 98 {
                assert_eq!(a.balance().immature, 50_0000_0000);
                assert_eq!(a.balance().confirmed, 0);
            }
        }
        assert_eq!(a.balance().confirmed, 50_0000_0000, "100 confirmations");
        let to_b = b.new_receive_address().expect("addr").script_pubkey();
        let change = a.new_change_address().expect("change").script_pubkey();
        let coins = a.spendable().expect("coins");
        let p = build_payment(
            &coins,
            &PaymentRequest {
                to_script: to_b,
                amount: 1_0000_0000,
                fee_rate: 2,
                change_script: change,
                lock_time: 99,
                change_first: true,
            },
        )
        .expect("pay");
        assert!(a.add_unconfirmed(&p.tx).expect("add"));
        assert!(b.add_unconfirmed(&p.tx).expect("add"));
        // The sender's change is trusted at once; the receiver's coin is pending.
        let ab = a.balance();
        assert_eq!(ab.confirmed, 49_0000_0000 - p.fee);
        assert_eq!(ab.pending, 0);
        assert!(
            a.spendable()
                .expect("coins")
                .iter()
                .all(|c| c.outpoint.txid != coins[0].outpoint.txid)
        );
        assert_eq!(b.balance().pending, 1_0000_0000);
        assert_eq!(b.balance().confirmed, 0);
        let hist = a.history();
        assert_eq!(
            hist.last().map(|e| e.amount),
            Some(-(1_0000_0000 + p.fee as i64))
        );
        assert_eq!(hist.last().and_then(|e| e.fee), Some(p.fee));
        // Mined: confirmed on both sides.
        connect(
            &mut a,
            &mut c,
            vec![coinbase(100, pay_script(), 1), p.tx.clone()],
        );
        assert_eq!(a.balance().confirmed, 49_0000_0000 - p.fee);
        // b, offline so far, scans the same chain and finds the payment confirmed.
        let mut b = wallet(2);
        let _ = b.new_receive_address();
        let mut chain_b = Chain { hashes: vec![] };
        for h in 0..100 {
            connect(&mut b, &mut chain_b, vec![coinbase(h, pay_script(), 1)]);
        }
        connect(&mut b, &mut chain_b, vec![p.tx.clone()]);
        assert_eq!(b.balance().confirmed, 1_0000_0000);
        assert_eq!(b.balance().pending, 0);
        assert_eq!(b.history()[0].confirmations, 1);
        assert_eq!(b.history()[0].fee, None);
    }

    #[test]
    fn a_reorganisation_unconfirms_and_a_rescan_of_the_new_branch_reconfirms() {
        let mut w = wallet(3);
        let mut c = Chain { hashes: vec![] };
        let to = w.new_receive_address().expect("addr").script_pubkey();
        for h in 0..5 {
            connect(&mut w, &mut c, vec![coinbase(h, pay_script(), 1)]);
        }
        let paying = coinbase(5, to, 7_000);
        connect(&mut w, &mut c, vec![paying.clone()]);
        assert_eq!(w.balance().immature, 7_000);
        assert_eq!(w.tip().map(|t| t.0), Some(5));
        assert!(w.disconnect_tip());
        assert_eq!(w.tip().map(|t| t.0), Some(4));
        assert_eq!(w.history()[0].height, None);
        // Another block at 5 without the payment: it stays unconfirmed (the
        // caller drops it when the network refuses it again).
        c.hashes.pop();
        let (h, hash, b) = c.block(vec![coinbase(5, pay_script(), 2)], 9);
        w.connect_block(h, hash, &b).expect("connect");
        assert_eq!(w.history()[0].height, None);
        w.remove_unconfirmed(&paying.txid());
        assert_eq!(w.balance(), Balance::default());
        // A block that does not build on the tip is refused.
        let (_, hash, b) = Chain {
            hashes: vec![[1; 32]; 6],
        }
        .block(vec![], 3);
        assert_eq!(w.connect_block(6, hash, &b), Err(ChainError::NotChild));
    }

    #[test]
    fn a_reorganisation_deeper_than_the_kept_hashes_rescans_from_genesis() {
        let mut w = wallet(6);
        let mut c = Chain { hashes: vec![] };
        let to = w.new_receive_address().expect("addr").script_pubkey();
        connect(&mut w, &mut c, vec![coinbase(0, to, 9_000)]);
        for h in 1..(MAX_SCANNED as u32 + 5) {
            connect(&mut w, &mut c, vec![coinbase(h, pay_script(), 1)]);
        }
        assert_eq!(w.history()[0].height, Some(0));
        let mut undone = 0;
        while w.tip().is_some() {
            undone += 1;
            if !w.disconnect_tip() {
                break;
            }
        }
        assert_eq!(
            undone, MAX_SCANNED,
            "only the kept hashes can be undone one by one"
        );
        assert_eq!(w.tip(), None);
        assert_eq!(
            w.next_height(),
            0,
            "the scan starts again at the genesis block"
        );
        assert_eq!(w.history()[0].height, None);
    }

    #[test]
    fn the_gap_limit_finds_payments_to_addresses_not_yet_handed_out() {
        let mut w = wallet(4);
        let far = w
            .address_at(RECEIVE, GAP_LIMIT - 1)
            .expect("addr")
            .script_pubkey();
        let mut c = Chain { hashes: vec![] };
        connect(&mut w, &mut c, vec![coinbase(0, far, 5_000)]);
        assert_eq!(w.balance().immature, 5_000);
        assert_eq!(w.next_indexes().0, GAP_LIMIT);
        // Beyond the gap limit from there, the next one is watched too.
        let next = w
            .address_at(RECEIVE, 2 * GAP_LIMIT - 1)
            .expect("addr")
            .script_pubkey();
        assert!(w.is_mine(&next));
        // The handed-out address is fresh.
        let a = w.new_receive_address().expect("addr");
        assert_eq!(a, w.address_at(RECEIVE, GAP_LIMIT).expect("addr"));
    }

    #[test]
    fn the_payload_round_trips_transactions_and_scan_state() {
        let mut w = wallet(5);
        let to = w.new_receive_address().expect("addr").script_pubkey();
        let mut c = Chain { hashes: vec![] };
        connect(&mut w, &mut c, vec![coinbase(0, to, 5_000)]);
        let mut p = w.to_payload();
        p.entropy = Some(zeroize::Zeroizing::new(vec![7; 16]));
        let pw = crate::wallet::Password::new("pw".into()).expect("pw");
        let fast = crate::wallet::KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        };
        let file = crate::wallet::encrypt_with(&p, &pw, &[1; 16], &[2; 24], fast).expect("enc");
        let back = crate::wallet::decrypt(&file, &pw).expect("dec");
        assert_eq!(back, p);
        let w2 = Wallet::new(back).expect("reload");
        assert_eq!(w2.entropy(), Some(&[7u8; 16][..]));
        assert_eq!(w2.tip(), w.tip());
        assert_eq!(w2.history(), w.history());
        assert_eq!(w2.next_indexes(), (1, 0));
    }
}
