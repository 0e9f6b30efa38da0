//! The chain store: block index, active chain, UTXO set, undo data and the
//! tip in one SQLite database (WAL). This module does disk I/O by nature;
//! it is a driver-side component that the sans-IO core never calls.
//!
//! Every change of the active chain — one block connected, or a whole
//! reorganisation (disconnect to the fork point, connect the new branch) —
//! is ONE write transaction holding the UTXO changes, the undo data, the
//! active-chain rows, the tip and the UTXO counters. A `kill -9` at any
//! point leaves either the state before or the state after; on open the
//! store resumes by connecting any stored block heavier than its tip.
//!
//! Validation is the core's: [`check_block`] before a block is stored,
//! [`check_header_context`] and [`UtxoView::connect_block`] against the
//! active chain when it is connected. A block failing there is marked
//! invalid with every stored descendant, the transaction is rolled back
//! and the old chain stays.
//!
//! Redb was the plan (issue 17); it is not in this machine's offline Cargo
//! registry, so the store uses rusqlite (bundled SQLite), which the
//! workspace already had.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod codec;
pub mod node;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
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

const STATUS_STORED: i64 = 0;
const STATUS_INVALID: i64 = 2;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
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

/// A block index row.
#[derive(Debug, Clone)]
struct IndexRow {
    prev: [u8; 32],
    height: u32,
    work: U256,
    status: i64,
}

/// The chain store.
pub struct Store {
    conn: Connection,
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

fn hash32(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt("hash is not 32 bytes".into()))
}

fn entry_of(h: &BlockHeader) -> Entry {
    Entry {
        hash: h.hash(),
        time: h.time,
        bits: h.bits,
    }
}

impl Store {
    /// Open (or create) the store at `path` for `params`'s network, and
    /// connect any stored block heavier than the tip (resuming an
    /// interrupted sync).
    pub fn open(path: impl AsRef<Path>, params: Params) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        // WAL: a commit is atomic under a process crash; NORMAL sync may
        // lose the last commits on power loss, never consistency.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS block (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 hash BLOB NOT NULL UNIQUE, prev BLOB NOT NULL, height INTEGER NOT NULL,
                 work BLOB NOT NULL, status INTEGER NOT NULL,
                 header BLOB NOT NULL, data BLOB NOT NULL);
             CREATE INDEX IF NOT EXISTS block_prev ON block(prev);
             CREATE INDEX IF NOT EXISTS block_work ON block(status, work);
             CREATE TABLE IF NOT EXISTS chain (height INTEGER PRIMARY KEY, hash BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS utxo (outpoint BLOB PRIMARY KEY, coin BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS undo (hash BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        let genesis = params.genesis.header.hash();
        let found: Option<Vec<u8>> = conn
            .query_row("SELECT hash FROM chain WHERE height = 0", [], |r| r.get(0))
            .optional()?;
        match found {
            Some(g) if g != genesis => {
                return Err(StoreError::WrongNetwork {
                    found: hash_hex(&hash32(g)?),
                    expected: hash_hex(&genesis),
                });
            }
            Some(_) => {}
            None => {
                let tx = conn.unchecked_transaction()?;
                let h = &params.genesis.header;
                tx.execute(
                    "INSERT INTO block (hash, prev, height, work, status, header, data)
                     VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6)",
                    params![
                        &genesis[..],
                        &h.prev[..],
                        &work_of(h.bits).to_be_bytes()[..],
                        STATUS_STORED,
                        h.encode(),
                        params.genesis.encode()
                    ],
                )?;
                tx.execute(
                    "INSERT INTO chain (height, hash) VALUES (0, ?1)",
                    [&genesis[..]],
                )?;
                set_meta(&tx, "tip", &genesis)?;
                set_meta(&tx, "utxo_count", &0u64.to_le_bytes())?;
                set_meta(&tx, "utxo_total", &0i64.to_le_bytes())?;
                tx.commit()?;
            }
        }
        let mut store = Self {
            conn,
            params,
            chain: Vec::new(),
            secp: Secp256k1::verification_only(),
        };
        store.load_chain()?;
        store.activate_best()?;
        Ok(store)
    }

    fn load_chain(&mut self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT chain.height, block.header FROM chain JOIN block ON block.hash = chain.hash
             ORDER BY chain.height",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut chain = Vec::new();
        for row in rows {
            let (height, header) = row?;
            if height as usize != chain.len() {
                return Err(StoreError::Corrupt(format!(
                    "active chain has a gap at {height}"
                )));
            }
            chain.push(entry_of(&decode_header(&header)?));
        }
        drop(stmt);
        let tip: Option<Vec<u8>> = get_meta(&self.conn, "tip")?;
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
        get_coin(&self.conn, op)
    }
    /// Number of unspent outputs (a counter kept in the same transactions).
    pub fn utxo_count(&self) -> Result<u64, StoreError> {
        let v = get_meta(&self.conn, "utxo_count")?.unwrap_or_default();
        Ok(u64::from_le_bytes(codec::array(&v)?))
    }
    /// Sum of every unspent output.
    pub fn utxo_total(&self) -> Result<Amount, StoreError> {
        let v = get_meta(&self.conn, "utxo_total")?.unwrap_or_default();
        Amount::from_sat(i64::from_le_bytes(codec::array(&v)?))
            .ok_or_else(|| StoreError::Corrupt("utxo total out of range".into()))
    }
    /// Every unspent output, in outpoint order (for checks and exports; a
    /// full walk of the set).
    pub fn for_each_utxo(&self, mut f: impl FnMut(OutPoint, Coin)) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT outpoint, coin FROM utxo ORDER BY outpoint")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let op = codec::decode_outpoint(&r.get::<_, Vec<u8>>(0)?)?;
            let coin = codec::decode_coin(&r.get::<_, Vec<u8>>(1)?)?;
            f(op, coin);
        }
        Ok(())
    }
    /// A stored block (on any branch).
    pub fn block(&self, hash: &[u8; 32]) -> Result<Option<Block>, StoreError> {
        let data: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM block WHERE hash = ?1", [&hash[..]], |r| {
                r.get(0)
            })
            .optional()?;
        data.map(|d| {
            Block::decode(&d).map_err(|e| StoreError::Corrupt(format!("stored block: {e}")))
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
        let mut start = 0u32;
        for h in locator {
            if let Some(row) = self.index(h)? {
                if self.hash_at(row.height) == Some(*h) {
                    start = row.height;
                    break;
                }
            }
        }
        let max = max.min(MAX_HEADERS);
        let mut out = Vec::new();
        let mut stmt = self.conn.prepare(
            "SELECT block.header FROM chain JOIN block ON block.hash = chain.hash
             WHERE chain.height > ?1 ORDER BY chain.height LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![start, max as i64])?;
        while let Some(r) = rows.next()? {
            let h = decode_header(&r.get::<_, Vec<u8>>(0)?)?;
            let done = &h.hash() == stop;
            out.push(h);
            if done {
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
        index_row(&self.conn, hash)
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
        self.conn.execute(
            "INSERT INTO block (hash, prev, height, work, status, header, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                &hash[..],
                &b.header.prev[..],
                parent.height + 1,
                &work.to_be_bytes()[..],
                STATUS_STORED,
                b.header.encode(),
                b.encode()
            ],
        )?;
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
            let best: Option<(Vec<u8>, Vec<u8>)> = self
                .conn
                .query_row(
                    "SELECT hash, work FROM block WHERE status = ?1 ORDER BY work DESC, seq ASC LIMIT 1",
                    [STATUS_STORED],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((best, work)) = best else {
                return Ok(failure);
            };
            let best = hash32(best)?;
            let work = U256::from_be_bytes(&codec::array(&work)?);
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
        let Self {
            conn,
            params,
            chain,
            secp,
        } = self;
        let r = switch_in(conn, params, chain, secp, target);
        if !matches!(r, Ok(Ok(_))) {
            self.chain = saved;
        }
        r
    }

    /// Mark `hash` and every stored descendant invalid.
    fn mark_invalid(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let mut todo = vec![*hash];
        while let Some(h) = todo.pop() {
            tx.execute(
                "UPDATE block SET status = ?1 WHERE hash = ?2",
                params![STATUS_INVALID, &h[..]],
            )?;
            let mut stmt = tx.prepare("SELECT hash FROM block WHERE prev = ?1")?;
            let kids = stmt.query_map([&h[..]], |r| r.get::<_, Vec<u8>>(0))?;
            for k in kids {
                todo.push(hash32(k?)?);
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// The body of [`Store::switch_to`].
#[allow(clippy::type_complexity)]
fn switch_in(
    conn: &Connection,
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
        let row = index_row(conn, &cur)?
            .ok_or_else(|| StoreError::Corrupt(format!("missing ancestor {}", hash_hex(&cur))))?;
        if on_active(chain, &cur, row.height) {
            break row.height;
        }
        branch.push(cur);
        cur = row.prev;
    };
    branch.reverse();
    let tx = conn.unchecked_transaction()?;
    let mut gone = Vec::new();
    let mut count: i64 = 0;
    let mut total: i64 = 0;
    while chain.len() > fork_height as usize + 1 {
        let tip = chain.last().map(|e| e.hash).unwrap_or_default();
        let b = load_block(&tx, &tip)?;
        let undo_bytes: Vec<u8> = tx
            .query_row("SELECT data FROM undo WHERE hash = ?1", [&tip[..]], |r| {
                r.get(0)
            })
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("no undo for {}", hash_hex(&tip))))?;
        let undo = codec::decode_undo(&undo_bytes)?;
        let mut keys = created_outpoints(&b);
        keys.extend(undo.spent.iter().map(|(op, _)| op.clone()));
        let mut view = load_view(&tx, &keys)?;
        view.disconnect_block(&b, &undo);
        write_view(&tx, &keys, &view, &mut count, &mut total)?;
        tx.execute("DELETE FROM undo WHERE hash = ?1", [&tip[..]])?;
        tx.execute(
            "DELETE FROM chain WHERE height = ?1",
            [chain.len() as i64 - 1],
        )?;
        chain.pop();
        gone.push(b);
    }
    for hash in &branch {
        let b = load_block(&tx, hash)?;
        if let Err(err) = connect_in(&tx, params, chain, secp, &b, &mut count, &mut total)? {
            return Ok(Err((*hash, err))); // tx dropped: rolled back
        }
    }
    let tip = chain.last().map(|e| e.hash).unwrap_or_default();
    set_meta(&tx, "tip", &tip)?;
    let old_count = u64::from_le_bytes(codec::array(
        &get_meta(&tx, "utxo_count")?.unwrap_or_default(),
    )?);
    let old_total = i64::from_le_bytes(codec::array(
        &get_meta(&tx, "utxo_total")?.unwrap_or_default(),
    )?);
    let new_count = u64::try_from(old_count as i64 + count)
        .map_err(|_| StoreError::Corrupt("utxo count below zero".into()))?;
    set_meta(&tx, "utxo_count", &new_count.to_le_bytes())?;
    set_meta(&tx, "utxo_total", &(old_total + total).to_le_bytes())?;
    tx.commit()?;
    Ok(Ok(gone))
}

/// Validate and connect `b` on the tip of `chain` inside `tx`.
fn connect_in(
    tx: &Connection,
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
    for t in b.txs.iter().skip(1) {
        keys.extend(t.inputs.iter().map(|i| i.prevout.clone()));
    }
    let mut view = load_view(tx, &keys)?;
    let connected = match view.connect_block(b, height, params, flags, secp) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    write_view(tx, &keys, &view, count, total)?;
    let hash = b.header.hash();
    tx.execute(
        "INSERT OR REPLACE INTO undo (hash, data) VALUES (?1, ?2)",
        params![&hash[..], codec::encode_undo(&connected.undo)],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO chain (height, hash) VALUES (?1, ?2)",
        params![height, &hash[..]],
    )?;
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

fn index_row(conn: &Connection, hash: &[u8; 32]) -> Result<Option<IndexRow>, StoreError> {
    let row: Option<(Vec<u8>, u32, Vec<u8>, i64)> = conn
        .query_row(
            "SELECT prev, height, work, status FROM block WHERE hash = ?1",
            [&hash[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    row.map(|(prev, height, work, status)| {
        Ok(IndexRow {
            prev: hash32(prev)?,
            height,
            work: U256::from_be_bytes(&codec::array(&work)?),
            status,
        })
    })
    .transpose()
}

fn load_block(conn: &Connection, hash: &[u8; 32]) -> Result<Block, StoreError> {
    let data: Vec<u8> = conn
        .query_row("SELECT data FROM block WHERE hash = ?1", [&hash[..]], |r| {
            r.get(0)
        })
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("block {} missing", hash_hex(hash))))?;
    Block::decode(&data).map_err(|e| StoreError::Corrupt(format!("stored block: {e}")))
}

fn get_meta(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn set_meta(conn: &Connection, key: &str, value: &[u8]) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}

fn get_coin(conn: &Connection, op: &OutPoint) -> Result<Option<Coin>, StoreError> {
    let v: Option<Vec<u8>> = conn
        .query_row(
            "SELECT coin FROM utxo WHERE outpoint = ?1",
            [codec::encode_outpoint(op)],
            |r| r.get(0),
        )
        .optional()?;
    v.map(|v| codec::decode_coin(&v)).transpose()
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
fn load_view(conn: &Connection, keys: &[OutPoint]) -> Result<UtxoView, StoreError> {
    let mut view = UtxoView::default();
    for op in keys {
        if let Some(c) = get_coin(conn, op)? {
            view.coins.insert(op.clone(), c);
        }
    }
    Ok(view)
}

/// Write back the view's final state for every key it was built from or
/// touched: present → stored, absent → deleted; count and value deltas.
fn write_view(
    conn: &Connection,
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
        let before = get_coin(conn, op)?;
        match view.coins.get(op) {
            Some(c) => {
                if before.as_ref() != Some(c) {
                    conn.execute(
                        "INSERT OR REPLACE INTO utxo (outpoint, coin) VALUES (?1, ?2)",
                        params![key, codec::encode_coin(c)],
                    )?;
                }
                if before.is_none() {
                    *count += 1;
                }
                *total += c.out.value - before.map_or(0, |b| b.out.value);
            }
            None => {
                if let Some(b) = before {
                    conn.execute("DELETE FROM utxo WHERE outpoint = ?1", [key])?;
                    *count -= 1;
                    *total -= b.out.value;
                }
            }
        }
    }
    Ok(())
}
