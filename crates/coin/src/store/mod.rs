//! The chain store: block index, active chain, UTXO set, undo data and the
//! tip in one redb database file. This module does disk I/O by nature; it is
//! a driver-side component that the sans-IO core never calls.
//!
//! Every change of the active chain — one block connected, or a whole
//! reorganisation (disconnect to the fork point, connect the new branch) —
//! is ONE redb write transaction holding the UTXO changes, the undo data,
//! the active-chain rows, the tip and the UTXO counters. A `kill -9` at any
//! point leaves either the state before or the state after; on open the
//! store resumes by connecting any stored block heavier than its tip.
//!
//! Durability: a change of the active chain (and marking a block invalid)
//! commits with [`Durability::Immediate`] (redb writes, then fsyncs, then
//! flips its commit slot), so a connected block survives power loss as
//! well as a process crash. Storing a block that has not been connected yet
//! commits with [`Durability::None`]: no fsync, made durable by the next
//! immediate commit, which on a syncing node follows at once (the block is
//! connected); a crash in between forgets only that unconnected block,
//! which a peer offers again. So there is one fsync per block connected,
//! not two. The cost of that fsync is measured by `scripts/bench/coin-sync`
//! (figures in docs/coin.md).
//!
//! redb has no secondary indexes, so the store keeps them as tables:
//! `block_children` (prev → child, for marking an invalid block's
//! descendants) and `candidates` (work ‖ arrival order → hash over the valid
//! blocks, whose last entry is the heaviest, first seen on ties).
//!
//! Validation is the core's: [`check_block`] before a block is stored,
//! [`check_header_context`] and [`UtxoView::connect_block`] against the
//! active chain when it is connected. A block failing there is marked
//! invalid with every stored descendant, the transaction is rolled back
//! and the old chain stays.
//!
//! The path `":memory:"` opens a store held in memory (the simulator and
//! the in-memory harness).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod codec;
pub mod node;

use std::path::Path;

use redb::{
    Database, Durability, MultimapTable, MultimapTableDefinition, ReadableMultimapTable,
    ReadableTable, Table, TableDefinition, WriteTransaction,
};
use secp256k1::{Secp256k1, VerifyOnly};
use thiserror::Error;

use crate::core::block::{
    BlockError, Coin, Entry, UtxoView, check_block, check_header_context, script_flags,
};
use crate::core::pow::{U256, work_from_target};
use crate::wire::{Block, BlockHeader, Encode, OutPoint, Reader};
use crate::{Amount, Params, hash_hex, target_from_compact};

/// Most headers one `headers_after` answers (Bitcoin's `getheaders` limit).
pub const MAX_HEADERS: usize = 2000;

const STATUS_STORED: u8 = 0;
const STATUS_INVALID: u8 = 2;

type Hash = [u8; 32];
/// hash → prev ‖ height ‖ work ‖ status ‖ seq ‖ header (see [`IndexRow`]).
const INDEX: TableDefinition<&Hash, &[u8]> = TableDefinition::new("block_index");
/// hash → the block's wire bytes.
const DATA: TableDefinition<&Hash, &[u8]> = TableDefinition::new("block_data");
/// prev → every stored child.
const CHILDREN: MultimapTableDefinition<&Hash, &Hash> =
    MultimapTableDefinition::new("block_children");
/// work (big-endian) ‖ !seq (big-endian) → hash, for every valid block: the
/// last entry is the heaviest, the first seen among equals.
const CANDIDATES: TableDefinition<&[u8; 40], &Hash> = TableDefinition::new("candidates");
/// height → hash of the active chain.
const CHAIN: TableDefinition<u32, &Hash> = TableDefinition::new("chain");
/// outpoint → coin (layouts in `codec`).
const UTXO: TableDefinition<&[u8], &[u8]> = TableDefinition::new("utxo");
/// hash of a connected block → its undo data.
const UNDO: TableDefinition<&Hash, &[u8]> = TableDefinition::new("undo");
/// tip, utxo_count, utxo_total, seq (the next block's arrival number).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

#[derive(Debug, Error)]
pub enum StoreError {
    /// Boxed: redb's error is large, and every store call returns this type.
    #[error("database: {0}")]
    Db(Box<redb::Error>),
    #[error("block {hash} invalid: {err}")]
    Invalid { hash: String, err: BlockError },
    #[error("block {0}: previous block unknown")]
    UnknownParent(String),
    #[error("block {0}: descends from an invalid block")]
    InvalidParent(String),
    #[error("block {0}: already known to be invalid")]
    KnownInvalid(String),
    #[error("store belongs to another network (genesis {found}, expected {expected})")]
    WrongNetwork { found: String, expected: String },
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                Self::Db(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What accepting a block did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The block was already stored (nothing changed).
    pub known: bool,
    /// The block is on the active chain now.
    pub connected: bool,
    /// The active chain switched branches.
    pub reorged: bool,
    /// Blocks disconnected from the old chain (their transactions go back to the mempool).
    pub disconnected: Vec<Block>,
    /// Height of the tip afterwards.
    pub height: u32,
}

/// A block index row: prev (32) ‖ height (4, LE) ‖ work (32, BE) ‖ status
/// (1) ‖ seq (8, LE) ‖ header (80).
#[derive(Debug, Clone)]
struct IndexRow {
    prev: Hash,
    height: u32,
    work: U256,
    status: u8,
    seq: u64,
    header: Vec<u8>,
}

const INDEX_FIXED: usize = 32 + 4 + 32 + 1 + 8;

impl IndexRow {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(INDEX_FIXED + self.header.len());
        v.extend_from_slice(&self.prev);
        v.extend_from_slice(&self.height.to_le_bytes());
        v.extend_from_slice(&self.work.to_be_bytes());
        v.push(self.status);
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.header);
        v
    }

    fn decode(v: &[u8]) -> Result<Self, StoreError> {
        if v.len() < INDEX_FIXED {
            return Err(StoreError::Corrupt("block index row too short".into()));
        }
        Ok(Self {
            prev: codec::array(&v[..32])?,
            height: u32::from_le_bytes(codec::array(&v[32..36])?),
            work: U256::from_be_bytes(&codec::array(&v[36..68])?),
            status: v[68],
            seq: u64::from_le_bytes(codec::array(&v[69..77])?),
            header: v[INDEX_FIXED..].to_vec(),
        })
    }

    /// Its key in [`CANDIDATES`].
    fn candidate_key(&self) -> [u8; 40] {
        let mut k = [0; 40];
        k[..32].copy_from_slice(&self.work.to_be_bytes());
        k[32..].copy_from_slice(&(!self.seq).to_be_bytes());
        k
    }
}

/// The chain store.
pub struct Store {
    db: Database,
    params: Params,
    /// The active chain from genesis, index = height (hash, time, bits).
    chain: Vec<Entry>,
    secp: Secp256k1<VerifyOnly>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("height", &self.height())
            .field("tip", &hash_hex(&self.tip()))
            .finish()
    }
}

fn work_of(bits: u32) -> U256 {
    work_from_target(U256::from_be_bytes(&target_from_compact(bits).target))
}

fn entry_of(h: &BlockHeader) -> Entry {
    Entry {
        hash: h.hash(),
        time: h.time,
        bits: h.bits,
    }
}

/// The tables a write transaction changes.
struct Tables<'t> {
    index: Table<'t, &'static Hash, &'static [u8]>,
    data: Table<'t, &'static Hash, &'static [u8]>,
    children: MultimapTable<'t, &'static Hash, &'static Hash>,
    candidates: Table<'t, &'static [u8; 40], &'static Hash>,
    chain: Table<'t, u32, &'static Hash>,
    utxo: Table<'t, &'static [u8], &'static [u8]>,
    undo: Table<'t, &'static Hash, &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            index: tx.open_table(INDEX)?,
            data: tx.open_table(DATA)?,
            children: tx.open_multimap_table(CHILDREN)?,
            candidates: tx.open_table(CANDIDATES)?,
            chain: tx.open_table(CHAIN)?,
            utxo: tx.open_table(UTXO)?,
            undo: tx.open_table(UNDO)?,
            meta: tx.open_table(META)?,
        })
    }

    /// Store `b` under `row` (index, data, child link, candidate).
    fn insert_block(&mut self, hash: &Hash, row: &IndexRow, b: &Block) -> Result<(), StoreError> {
        self.index.insert(hash, &row.encode()[..])?;
        self.data.insert(hash, &b.encode()[..])?;
        self.children.insert(&row.prev, hash)?;
        self.candidates.insert(&row.candidate_key(), hash)?;
        Ok(())
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        Ok(())
    }

    fn meta_u64(&self, key: &str) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(codec::array(
            &get_meta(&self.meta, key)?.unwrap_or_default(),
        )?))
    }
}

/// Begin a write transaction committing with `durability`.
fn begin(db: &Database, durability: Durability) -> Result<WriteTransaction, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(durability);
    Ok(tx)
}

impl Store {
    /// Open (or create) the store at `path` (`":memory:"`: in memory) for
    /// `params`'s network, and connect any stored block heavier than the tip
    /// (resuming an interrupted sync).
    pub fn open(path: impl AsRef<Path>, params: Params) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = if path == Path::new(":memory:") {
            Database::builder().create_with_backend(redb::backends::InMemoryBackend::new())?
        } else {
            Database::create(path)?
        };
        let genesis = params.genesis.header.hash();
        let tx = begin(&db, Durability::Immediate)?;
        {
            let mut t = Tables::open(&tx)?;
            let found = t.chain.get(0)?.map(|g| *g.value());
            match found {
                Some(g) if g != genesis => {
                    return Err(StoreError::WrongNetwork {
                        found: hash_hex(&g),
                        expected: hash_hex(&genesis),
                    });
                }
                Some(_) => {}
                None => {
                    let h = &params.genesis.header;
                    let row = IndexRow {
                        prev: h.prev,
                        height: 0,
                        work: work_of(h.bits),
                        status: STATUS_STORED,
                        seq: 0,
                        header: h.encode(),
                    };
                    t.insert_block(&genesis, &row, &params.genesis)?;
                    t.chain.insert(0, &genesis)?;
                    t.set_meta("tip", &genesis)?;
                    t.set_meta("seq", &1u64.to_le_bytes())?;
                    t.set_meta("utxo_count", &0u64.to_le_bytes())?;
                    t.set_meta("utxo_total", &0i64.to_le_bytes())?;
                }
            }
        }
        tx.commit()?;
        let mut store = Self {
            db,
            params,
            chain: Vec::new(),
            secp: Secp256k1::verification_only(),
        };
        store.load_chain()?;
        store.activate_best()?;
        Ok(store)
    }

    fn load_chain(&mut self) -> Result<(), StoreError> {
        let rtx = self.db.begin_read()?;
        let chain_t = rtx.open_table(CHAIN)?;
        let index = rtx.open_table(INDEX)?;
        let mut chain = Vec::new();
        for row in chain_t.iter()? {
            let (height, hash) = row?;
            let (height, hash) = (height.value(), *hash.value());
            if height as usize != chain.len() {
                return Err(StoreError::Corrupt(format!(
                    "active chain has a gap at {height}"
                )));
            }
            let row = index_row(&index, &hash)?.ok_or_else(|| {
                StoreError::Corrupt(format!("chain block {} not indexed", hash_hex(&hash)))
            })?;
            chain.push(entry_of(&decode_header(&row.header)?));
        }
        let tip = get_meta(&rtx.open_table(META)?, "tip")?;
        if chain.is_empty() || tip.as_deref() != chain.last().map(|e| &e.hash[..]) {
            return Err(StoreError::Corrupt(
                "tip does not end the active chain".into(),
            ));
        }
        self.chain = chain;
        Ok(())
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    /// Hash of the active chain's tip.
    pub fn tip(&self) -> [u8; 32] {
        self.chain.last().map(|e| e.hash).unwrap_or_default()
    }
    /// Height of the tip.
    pub fn height(&self) -> u32 {
        self.chain.len().saturating_sub(1) as u32
    }
    /// Cumulative work of the tip.
    pub fn tip_work(&self) -> Result<U256, StoreError> {
        Ok(self.index(&self.tip())?.map(|r| r.work).unwrap_or_default())
    }
    /// Hash of the active chain at `height`.
    pub fn hash_at(&self, height: u32) -> Option<[u8; 32]> {
        self.chain.get(height as usize).map(|e| e.hash)
    }
    /// Whether the block is stored (valid, invalid, or not yet connected).
    pub fn has_block(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self.index(hash)?.is_some())
    }
    /// Whether the block is marked invalid.
    pub fn is_invalid(&self, hash: &[u8; 32]) -> Result<bool, StoreError> {
        Ok(self
            .index(hash)?
            .is_some_and(|r| r.status == STATUS_INVALID))
    }
    /// An unspent output of the active chain.
    pub fn utxo(&self, op: &OutPoint) -> Result<Option<Coin>, StoreError> {
        get_coin(&self.db.begin_read()?.open_table(UTXO)?, op)
    }
    /// Number of unspent outputs (a counter kept in the same transactions).
    pub fn utxo_count(&self) -> Result<u64, StoreError> {
        let v = self.meta("utxo_count")?.unwrap_or_default();
        Ok(u64::from_le_bytes(codec::array(&v)?))
    }
    /// Sum of every unspent output.
    pub fn utxo_total(&self) -> Result<Amount, StoreError> {
        let v = self.meta("utxo_total")?.unwrap_or_default();
        Amount::from_sat(i64::from_le_bytes(codec::array(&v)?))
            .ok_or_else(|| StoreError::Corrupt("utxo total out of range".into()))
    }
    /// Every unspent output, in outpoint order (for checks and exports; a
    /// full walk of the set).
    pub fn for_each_utxo(&self, mut f: impl FnMut(OutPoint, Coin)) -> Result<(), StoreError> {
        let rtx = self.db.begin_read()?;
        for r in rtx.open_table(UTXO)?.iter()? {
            let (op, coin) = r?;
            f(
                codec::decode_outpoint(op.value())?,
                codec::decode_coin(coin.value())?,
            );
        }
        Ok(())
    }
    /// A stored block (on any branch).
    pub fn block(&self, hash: &[u8; 32]) -> Result<Option<Block>, StoreError> {
        let rtx = self.db.begin_read()?;
        let data = rtx.open_table(DATA)?;
        let v = data.get(hash)?;
        v.map(|d| {
            Block::decode(d.value()).map_err(|e| StoreError::Corrupt(format!("stored block: {e}")))
        })
        .transpose()
    }
    /// A block locator for `getheaders`: the last 10 hashes, then doubling
    /// steps back, always ending with genesis.
    pub fn locator(&self) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let mut h = self.height() as i64;
        let mut step = 1;
        while h > 0 {
            out.push(self.chain[h as usize].hash);
            if out.len() >= 10 {
                step *= 2;
            }
            h -= step;
        }
        out.push(self.chain[0].hash);
        out
    }
    /// Headers of the active chain after the first locator hash found on
    /// it (genesis if none), up to and including `stop` (zero: no stop), at
    /// most `max` (capped at [`MAX_HEADERS`]).
    pub fn headers_after(
        &self,
        locator: &[[u8; 32]],
        stop: &[u8; 32],
        max: usize,
    ) -> Result<Vec<BlockHeader>, StoreError> {
        let rtx = self.db.begin_read()?;
        let index = rtx.open_table(INDEX)?;
        let mut start = 0u32;
        for h in locator {
            if let Some(row) = index_row(&index, h)? {
                if self.hash_at(row.height) == Some(*h) {
                    start = row.height;
                    break;
                }
            }
        }
        let max = max.min(MAX_HEADERS);
        let mut out = Vec::new();
        for e in self.chain.iter().skip(start as usize + 1).take(max) {
            let row = index_row(&index, &e.hash)?.ok_or_else(|| {
                StoreError::Corrupt(format!("chain block {} not indexed", hash_hex(&e.hash)))
            })?;
            let h = decode_header(&row.header)?;
            out.push(h);
            if &e.hash == stop {
                break;
            }
        }
        Ok(out)
    }

    /// Height of the stored block `hash` (on any branch), `None` if unknown.
    pub fn block_height(&self, hash: &[u8; 32]) -> Result<Option<u32>, StoreError> {
        Ok(self.index(hash)?.map(|r| r.height))
    }

    fn index(&self, hash: &[u8; 32]) -> Result<Option<IndexRow>, StoreError> {
        index_row(&self.db.begin_read()?.open_table(INDEX)?, hash)
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        get_meta(&self.db.begin_read()?.open_table(META)?, key)
    }

    /// Store `b` (after the core's context-free checks) and make the
    /// heaviest valid chain active. `now` is the caller's clock (unix
    /// seconds) for the 2-hour future rule.
    ///
    /// Errors: the block fails [`check_block`] (not stored), its parent is
    /// unknown or invalid, or connecting it (or the branch it completes)
    /// fails validation — then the block is marked invalid and the old
    /// chain stays active.
    pub fn accept_block(&mut self, b: &Block, now: i64) -> Result<Accepted, StoreError> {
        let hash = b.header.hash();
        if let Some(row) = self.index(&hash)? {
            if row.status == STATUS_INVALID {
                return Err(StoreError::KnownInvalid(hash_hex(&hash)));
            }
            return Ok(Accepted {
                known: true,
                connected: self.hash_at(row.height) == Some(hash),
                reorged: false,
                disconnected: Vec::new(),
                height: self.height(),
            });
        }
        let parent = self
            .index(&b.header.prev)?
            .ok_or_else(|| StoreError::UnknownParent(hash_hex(&hash)))?;
        if parent.status == STATUS_INVALID {
            return Err(StoreError::InvalidParent(hash_hex(&hash)));
        }
        check_block(b, &self.params, now).map_err(|err| StoreError::Invalid {
            hash: hash_hex(&hash),
            err,
        })?;
        let work = parent
            .work
            .checked_add(work_of(b.header.bits))
            .ok_or_else(|| StoreError::Corrupt("chain work overflows".into()))?;
        // Not fsynced: the commit connecting it (next, if it extends the
        // heaviest chain) makes it durable.
        let tx = begin(&self.db, Durability::None)?;
        {
            let mut t = Tables::open(&tx)?;
            let seq = t.meta_u64("seq")?;
            let row = IndexRow {
                prev: b.header.prev,
                height: parent.height + 1,
                work,
                status: STATUS_STORED,
                seq,
                header: b.header.encode(),
            };
            t.insert_block(&hash, &row, b)?;
            t.set_meta("seq", &(seq + 1).to_le_bytes())?;
        }
        tx.commit()?;
        let mut disconnected = Vec::new();
        let failure = self.activate_best_collect(&mut disconnected)?;
        if self.is_invalid(&hash)? {
            let err = failure
                .filter(|(h, _)| *h == hash)
                .map(|(_, e)| e)
                .ok_or_else(|| StoreError::InvalidParent(hash_hex(&hash)))?;
            return Err(StoreError::Invalid {
                hash: hash_hex(&hash),
                err,
            });
        }
        let connected = self
            .index(&hash)?
            .is_some_and(|r| self.hash_at(r.height) == Some(hash));
        Ok(Accepted {
            known: false,
            connected,
            reorged: !disconnected.is_empty(),
            disconnected,
            height: self.height(),
        })
    }

    fn activate_best(&mut self) -> Result<(), StoreError> {
        self.activate_best_collect(&mut Vec::new()).map(|_| ())
    }

    /// Switch to the heaviest stored valid block while it has more work
    /// than the tip (ties: the first seen stays). Returns the last
    /// validation failure met (block hash and reason).
    fn activate_best_collect(
        &mut self,
        disconnected: &mut Vec<Block>,
    ) -> Result<Option<([u8; 32], BlockError)>, StoreError> {
        let mut failure = None;
        loop {
            let tip_work = self.tip_work()?;
            let best = {
                let rtx = self.db.begin_read()?;
                let c = rtx.open_table(CANDIDATES)?;
                c.last()?.map(|(k, v)| (*k.value(), *v.value()))
            };
            let Some((key, best)) = best else {
                return Ok(failure);
            };
            let work = U256::from_be_bytes(&codec::array(&key[..32])?);
            if work <= tip_work {
                return Ok(failure);
            }
            match self.switch_to(&best)? {
                Ok(mut gone) => disconnected.append(&mut gone),
                Err((bad, err)) => {
                    self.mark_invalid(&bad)?;
                    failure = Some((bad, err));
                }
            }
        }
    }

    /// Make `target` the tip in one transaction: disconnect to the fork
    /// point, connect the branch. On a validation failure (or any error)
    /// nothing is committed and the in-memory chain is restored; the
    /// failing block is returned.
    #[allow(clippy::type_complexity)]
    fn switch_to(
        &mut self,
        target: &[u8; 32],
    ) -> Result<Result<Vec<Block>, ([u8; 32], BlockError)>, StoreError> {
        let saved = self.chain.clone();
        let r = (|| {
            let tx = begin(&self.db, Durability::Immediate)?;
            let r = {
                let mut t = Tables::open(&tx)?;
                switch_in(&mut t, &self.params, &mut self.chain, &self.secp, target)?
            };
            if r.is_ok() {
                tx.commit()?;
            } // else tx dropped: rolled back
            Ok(r)
        })();
        if !matches!(r, Ok(Ok(_))) {
            self.chain = saved;
        }
        r
    }

    /// Mark `hash` and every stored descendant invalid.
    fn mark_invalid(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        let tx = begin(&self.db, Durability::Immediate)?;
        {
            let mut t = Tables::open(&tx)?;
            let mut todo = vec![*hash];
            while let Some(h) = todo.pop() {
                let Some(mut row) = index_row(&t.index, &h)? else {
                    continue;
                };
                t.candidates.remove(&row.candidate_key())?;
                row.status = STATUS_INVALID;
                t.index.insert(&h, &row.encode()[..])?;
                for k in t.children.get(&h)? {
                    todo.push(*k?.value());
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The body of [`Store::switch_to`], inside its transaction.
#[allow(clippy::type_complexity)]
fn switch_in(
    t: &mut Tables<'_>,
    params: &Params,
    chain: &mut Vec<Entry>,
    secp: &Secp256k1<VerifyOnly>,
    target: &[u8; 32],
) -> Result<Result<Vec<Block>, ([u8; 32], BlockError)>, StoreError> {
    let on_active = |chain: &[Entry], h: &[u8; 32], height: u32| {
        chain.get(height as usize).map(|e| &e.hash) == Some(h)
    };
    // The branch from the fork point to target, oldest first.
    let mut branch = Vec::new();
    let mut cur = *target;
    let fork_height = loop {
        let row = index_row(&t.index, &cur)?
            .ok_or_else(|| StoreError::Corrupt(format!("missing ancestor {}", hash_hex(&cur))))?;
        if on_active(chain, &cur, row.height) {
            break row.height;
        }
        branch.push(cur);
        cur = row.prev;
    };
    branch.reverse();
    let mut gone = Vec::new();
    let mut count: i64 = 0;
    let mut total: i64 = 0;
    while chain.len() > fork_height as usize + 1 {
        let tip = chain.last().map(|e| e.hash).unwrap_or_default();
        let b = load_block(&t.data, &tip)?;
        let undo = t
            .undo
            .remove(&tip)?
            .map(|v| codec::decode_undo(v.value()))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt(format!("no undo for {}", hash_hex(&tip))))?;
        let mut keys = created_outpoints(&b);
        keys.extend(undo.spent.iter().map(|(op, _)| op.clone()));
        let mut view = load_view(&t.utxo, &keys)?;
        view.disconnect_block(&b, &undo);
        write_view(&mut t.utxo, &keys, &view, &mut count, &mut total)?;
        t.chain.remove(chain.len() as u32 - 1)?;
        chain.pop();
        gone.push(b);
    }
    for hash in &branch {
        let b = load_block(&t.data, hash)?;
        if let Err(err) = connect_in(t, params, chain, secp, &b, &mut count, &mut total)? {
            return Ok(Err((*hash, err)));
        }
    }
    let tip = chain.last().map(|e| e.hash).unwrap_or_default();
    t.set_meta("tip", &tip)?;
    let old_count = t.meta_u64("utxo_count")?;
    let old_total = i64::from_le_bytes(codec::array(
        &get_meta(&t.meta, "utxo_total")?.unwrap_or_default(),
    )?);
    let new_count = u64::try_from(old_count as i64 + count)
        .map_err(|_| StoreError::Corrupt("utxo count below zero".into()))?;
    t.set_meta("utxo_count", &new_count.to_le_bytes())?;
    t.set_meta("utxo_total", &(old_total + total).to_le_bytes())?;
    Ok(Ok(gone))
}

/// Validate and connect `b` on the tip of `chain` inside `t`'s transaction.
fn connect_in(
    t: &mut Tables<'_>,
    params: &Params,
    chain: &mut Vec<Entry>,
    secp: &Secp256k1<VerifyOnly>,
    b: &Block,
    count: &mut i64,
    total: &mut i64,
) -> Result<Result<(), BlockError>, StoreError> {
    if let Err(e) = check_header_context(params, chain, &b.header) {
        return Ok(Err(e));
    }
    let height = chain.len() as u32;
    let flags = script_flags(params, height, b.header.time);
    let mut keys = created_outpoints(b);
    for tx in b.txs.iter().skip(1) {
        keys.extend(tx.inputs.iter().map(|i| i.prevout.clone()));
    }
    let mut view = load_view(&t.utxo, &keys)?;
    let connected = match view.connect_block(b, height, params, flags, secp) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    write_view(&mut t.utxo, &keys, &view, count, total)?;
    let hash = b.header.hash();
    t.undo
        .insert(&hash, &codec::encode_undo(&connected.undo)[..])?;
    t.chain.insert(height, &hash)?;
    chain.push(entry_of(&b.header));
    Ok(Ok(()))
}

fn decode_header(b: &[u8]) -> Result<BlockHeader, StoreError> {
    let mut r = Reader::new(b);
    let h = BlockHeader::decode_from(&mut r)
        .map_err(|e| StoreError::Corrupt(format!("stored header: {e}")))?;
    r.finish()
        .map_err(|e| StoreError::Corrupt(format!("stored header: {e}")))?;
    Ok(h)
}

fn index_row(
    t: &impl ReadableTable<&'static Hash, &'static [u8]>,
    hash: &Hash,
) -> Result<Option<IndexRow>, StoreError> {
    t.get(hash)?
        .map(|v| IndexRow::decode(v.value()))
        .transpose()
}

fn load_block(
    t: &impl ReadableTable<&'static Hash, &'static [u8]>,
    hash: &Hash,
) -> Result<Block, StoreError> {
    let v = t
        .get(hash)?
        .ok_or_else(|| StoreError::Corrupt(format!("block {} missing", hash_hex(hash))))?;
    Block::decode(v.value()).map_err(|e| StoreError::Corrupt(format!("stored block: {e}")))
}

fn get_meta(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(t.get(key)?.map(|v| v.value().to_vec()))
}

fn get_coin(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    op: &OutPoint,
) -> Result<Option<Coin>, StoreError> {
    t.get(&codec::encode_outpoint(op)[..])?
        .map(|v| codec::decode_coin(v.value()))
        .transpose()
}

fn created_outpoints(b: &Block) -> Vec<OutPoint> {
    let mut out = Vec::new();
    for t in &b.txs {
        let txid = t.txid();
        out.extend((0..t.outputs.len() as u32).map(|vout| OutPoint { txid, vout }));
    }
    out
}

/// The coins stored under `keys`, as a view for the core.
fn load_view(
    t: &impl ReadableTable<&'static [u8], &'static [u8]>,
    keys: &[OutPoint],
) -> Result<UtxoView, StoreError> {
    let mut view = UtxoView::default();
    for op in keys {
        if let Some(c) = get_coin(t, op)? {
            view.coins.insert(op.clone(), c);
        }
    }
    Ok(view)
}

/// Write back the view's final state for every key it was built from or
/// touched: present → stored, absent → deleted; count and value deltas.
fn write_view(
    t: &mut Table<'_, &'static [u8], &'static [u8]>,
    keys: &[OutPoint],
    view: &UtxoView,
    count: &mut i64,
    total: &mut i64,
) -> Result<(), StoreError> {
    let mut seen = std::collections::BTreeSet::new();
    for op in keys {
        if !seen.insert(op) {
            continue;
        }
        let key = codec::encode_outpoint(op);
        let before = get_coin(t, op)?;
        match view.coins.get(op) {
            Some(c) => {
                if before.as_ref() != Some(c) {
                    t.insert(&key[..], &codec::encode_coin(c)[..])?;
                }
                if before.is_none() {
                    *count += 1;
                }
                *total += c.out.value - before.map_or(0, |b| b.out.value);
            }
            None => {
                if let Some(b) = before {
                    t.remove(&key[..])?;
                    *count -= 1;
                    *total -= b.out.value;
                }
            }
        }
    }
    Ok(())
}
