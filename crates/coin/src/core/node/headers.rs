//! The header tree: every header the node accepted (active chain and side branches), with
//! height and cumulative work, the best header (most work) and the active chain (what the
//! store has connected). Headers are checked as Core's `CheckBlockHeader` and
//! `ContextualCheckBlockHeader` before they enter: proof of work against nBits and the pow
//! limit, the expected nBits (retarget every 2016 blocks unless the network never retargets),
//! time after the median of the last 11, no more than 2 hours ahead, version by height.
use std::collections::BTreeMap;

use crate::core::block::{BlockError, check_header};
use crate::core::pow::{U256, next_target, work_from_target};
use crate::wire::BlockHeader;
use crate::{Params, target_from_compact};

/// Blocks between retargets.
const RETARGET_INTERVAL: u32 = 2016;

/// Most headers kept (about 80 MB with the index); a peer feeding more is refused.
pub const MAX_HEADERS_KEPT: usize = 1_000_000;

/// One header of the tree.
#[derive(Debug, Clone)]
pub struct HeaderEntry {
    pub header: BlockHeader,
    pub height: u32,
    pub work: U256,
    /// The full block is stored (connected or on a side branch).
    pub have_block: bool,
    /// The block (or an ancestor) failed validation.
    pub invalid: bool,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("prev-blk-not-found: the header does not connect to a known header")]
    Unconnected,
    #[error("bad-prevblk: the header builds on an invalid block")]
    InvalidParent,
    #[error("{0}")]
    Invalid(BlockError),
    #[error("header tree full")]
    Full,
}

impl HeaderError {
    /// Core's misbehaviour score for a peer that sent this header (0: not its fault).
    pub fn score(&self) -> u32 {
        match self {
            HeaderError::Unconnected => 20,
            HeaderError::InvalidParent | HeaderError::Invalid(_) => 100,
            HeaderError::Full => 0,
        }
    }
}

/// The tree.
#[derive(Debug)]
pub struct HeaderTree {
    params: Params,
    entries: BTreeMap<[u8; 32], HeaderEntry>,
    /// Active chain hashes by height (what the store connected).
    active: Vec<[u8; 32]>,
    best: [u8; 32],
    /// Genesis, the answer of [`HeaderTree::best`] should the index lose its tip.
    genesis: HeaderEntry,
}

pub(crate) fn work_of(bits: u32) -> U256 {
    work_from_target(U256::from_be_bytes(&target_from_compact(bits).target))
}

impl HeaderTree {
    /// A tree holding `chain` (genesis first) as the active chain, every block stored.
    /// Returns `None` if `chain` does not start with the network's genesis or is not linked.
    pub fn new(params: Params, chain: &[BlockHeader]) -> Option<Self> {
        let genesis = params.genesis.header.clone();
        if chain.first().map(BlockHeader::hash) != Some(genesis.hash()) {
            return None;
        }
        let genesis_entry = HeaderEntry {
            header: genesis.clone(),
            height: 0,
            work: work_of(genesis.bits),
            have_block: true,
            invalid: false,
        };
        let mut t = Self {
            params,
            entries: BTreeMap::new(),
            active: Vec::new(),
            best: genesis.hash(),
            genesis: genesis_entry,
        };
        let mut work = U256::default();
        for (height, h) in chain.iter().enumerate() {
            if height > 0 && h.prev != t.active[height - 1] {
                return None;
            }
            work = work.checked_add(work_of(h.bits))?;
            let hash = h.hash();
            t.entries.insert(
                hash,
                HeaderEntry {
                    header: h.clone(),
                    height: height as u32,
                    work,
                    have_block: true,
                    invalid: false,
                },
            );
            t.active.push(hash);
        }
        t.best = *t.active.last()?;
        Some(t)
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn get(&self, hash: &[u8; 32]) -> Option<&HeaderEntry> {
        self.entries.get(hash)
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Active tip hash.
    pub fn tip(&self) -> [u8; 32] {
        self.active.last().copied().unwrap_or_default()
    }
    /// Active tip height.
    pub fn height(&self) -> u32 {
        self.active.len().saturating_sub(1) as u32
    }
    pub fn tip_entry(&self) -> Option<&HeaderEntry> {
        self.entries.get(&self.tip())
    }
    /// The header with the most work that is not invalid.
    pub fn best(&self) -> &HeaderEntry {
        self.entries
            .get(&self.best)
            .or_else(|| self.tip_entry())
            .unwrap_or(&self.genesis)
    }
    /// Hash of the active chain at `height`.
    pub fn active_at(&self, height: u32) -> Option<[u8; 32]> {
        self.active.get(height as usize).copied()
    }
    /// Whether `hash` is on the active chain.
    pub fn is_active(&self, hash: &[u8; 32]) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|e| self.active_at(e.height) == Some(*hash))
    }

    /// Median time past of the chain ending at `hash`.
    pub fn median_time_past(&self, hash: &[u8; 32]) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cur = self.entries.get(hash);
        while let Some(e) = cur {
            times.push(e.header.time);
            if times.len() == 11 || e.height == 0 {
                break;
            }
            cur = self.entries.get(&e.header.prev);
        }
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or(0)
    }

    /// The ancestor of `hash` at `height` (walks back; heights are small steps in practice).
    pub fn ancestor(&self, hash: &[u8; 32], height: u32) -> Option<&HeaderEntry> {
        let mut e = self.entries.get(hash)?;
        if e.height < height {
            return None;
        }
        // On the active chain the answer is a lookup.
        if self.is_active(hash) {
            return self.entries.get(&self.active_at(height)?);
        }
        while e.height > height {
            e = self.entries.get(&e.header.prev)?;
            if self.is_active(&e.header.hash()) {
                return self.entries.get(&self.active_at(height)?);
            }
        }
        Some(e)
    }

    /// nBits a child of `parent` must carry.
    pub fn next_bits(&self, parent: &HeaderEntry) -> u32 {
        let next = parent.height + 1;
        if self.params.no_retarget || next % RETARGET_INTERVAL != 0 {
            return parent.header.bits;
        }
        let parent_hash = parent.header.hash();
        match self.ancestor(&parent_hash, next - RETARGET_INTERVAL) {
            Some(first) => next_target(
                parent.header.bits,
                first.header.time,
                parent.header.time,
                self.params.pow_limit(),
            ),
            None => parent.header.bits,
        }
    }

    /// Check `h` and add it; `now_unix` is the caller's clock. Returns whether it was new.
    pub fn accept(&mut self, h: &BlockHeader, now_unix: i64) -> Result<bool, HeaderError> {
        let hash = h.hash();
        if let Some(e) = self.entries.get(&hash) {
            return if e.invalid {
                Err(HeaderError::InvalidParent)
            } else {
                Ok(false)
            };
        }
        let parent = self.entries.get(&h.prev).ok_or(HeaderError::Unconnected)?;
        if parent.invalid {
            return Err(HeaderError::InvalidParent);
        }
        check_header(h, &self.params, now_unix).map_err(HeaderError::Invalid)?;
        let want = self.next_bits(parent);
        if h.bits != want {
            return Err(HeaderError::Invalid(BlockError::WrongBits {
                got: h.bits,
                want,
            }));
        }
        if h.time <= self.median_time_past(&h.prev) {
            return Err(HeaderError::Invalid(BlockError::TimeTooOld));
        }
        let height = parent.height + 1;
        let p = &self.params;
        if (h.version < 2 && height >= p.bip34_height)
            || (h.version < 3 && height >= p.bip66_height)
            || (h.version < 4 && height >= p.bip65_height)
        {
            return Err(HeaderError::Invalid(BlockError::BadVersion(h.version)));
        }
        if self.entries.len() >= MAX_HEADERS_KEPT {
            return Err(HeaderError::Full);
        }
        let work = parent
            .work
            .checked_add(work_of(h.bits))
            .ok_or(HeaderError::Full)?;
        self.entries.insert(
            hash,
            HeaderEntry {
                header: h.clone(),
                height,
                work,
                have_block: false,
                invalid: false,
            },
        );
        if work > self.best().work {
            self.best = hash;
        }
        Ok(true)
    }

    /// The store holds the block `hash`.
    pub fn set_have_block(&mut self, hash: &[u8; 32]) {
        if let Some(e) = self.entries.get_mut(hash) {
            e.have_block = true;
        }
    }

    /// The block `hash` failed validation: it and every known descendant are invalid; the
    /// best header is recomputed.
    pub fn mark_invalid(&mut self, hash: &[u8; 32]) {
        let Some(root) = self.entries.get(hash) else {
            return;
        };
        let root_height = root.height;
        let bad: Vec<[u8; 32]> = self
            .entries
            .iter()
            .filter(|(h, e)| {
                e.height >= root_height
                    && self.ancestor(h, root_height).map(|a| a.header.hash()) == Some(*hash)
            })
            .map(|(h, _)| *h)
            .collect();
        for h in bad {
            if let Some(e) = self.entries.get_mut(&h) {
                e.invalid = true;
            }
        }
        self.recompute_best();
    }

    fn recompute_best(&mut self) {
        let tip = self.tip();
        let mut best = tip;
        let mut best_work = self.entries.get(&tip).map(|e| e.work).unwrap_or_default();
        for (h, e) in &self.entries {
            if !e.invalid && e.work > best_work {
                best = *h;
                best_work = e.work;
            }
        }
        self.best = best;
    }

    /// The store's active chain changed: `disconnected` blocks left the tip (newest first),
    /// then `connected` headers were appended (oldest first).
    pub fn set_active(&mut self, disconnected: usize, connected: &[BlockHeader]) {
        let keep = self.active.len().saturating_sub(disconnected).max(1);
        self.active.truncate(keep);
        for h in connected {
            let hash = h.hash();
            if !self.entries.contains_key(&hash) {
                // The store connected a block whose header we had not seen (a local submit).
                let parent = self.entries.get(&h.prev);
                let (height, work) = match parent {
                    Some(p) => (
                        p.height + 1,
                        p.work.checked_add(work_of(h.bits)).unwrap_or(p.work),
                    ),
                    None => continue,
                };
                self.entries.insert(
                    hash,
                    HeaderEntry {
                        header: h.clone(),
                        height,
                        work,
                        have_block: true,
                        invalid: false,
                    },
                );
            }
            if let Some(e) = self.entries.get_mut(&hash) {
                e.have_block = true;
            }
            self.active.push(hash);
        }
        if self.best().work <= self.tip_entry().map(|e| e.work).unwrap_or_default() {
            self.best = self.tip();
        }
    }

    /// A block locator from `hash`: the last 10 ancestors, then doubling steps back, ending
    /// with genesis (Core's `GetLocator`).
    pub fn locator(&self, hash: &[u8; 32]) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        let Some(start) = self.entries.get(hash) else {
            return self.active.first().copied().into_iter().collect();
        };
        let mut height = i64::from(start.height);
        let mut step = 1i64;
        while height > 0 {
            if let Some(e) = self.ancestor(hash, height as u32) {
                out.push(e.header.hash());
            }
            if out.len() >= 10 {
                step *= 2;
            }
            height -= step;
        }
        out.extend(self.active.first().copied());
        out
    }

    /// Headers of the active chain after the first locator hash on it (genesis if none), up
    /// to and including `stop` (zero: none), at most `max` (Core's `getheaders` answer).
    pub fn headers_after(
        &self,
        locator: &[[u8; 32]],
        stop: &[u8; 32],
        max: usize,
    ) -> Vec<BlockHeader> {
        let start = locator
            .iter()
            .find_map(|h| {
                let e = self.entries.get(h)?;
                self.is_active(h).then_some(e.height)
            })
            .unwrap_or(0);
        let mut out = Vec::new();
        for hash in self.active.iter().skip(start as usize + 1).take(max) {
            let Some(e) = self.entries.get(hash) else {
                break;
            };
            out.push(e.header.clone());
            if hash == stop {
                break;
            }
        }
        out
    }

    /// Up to `max` hashes on the path from the active tip's fork point to the best header
    /// whose blocks are not stored, oldest first, skipping `skip`.
    pub fn missing_blocks(&self, max: usize, skip: impl Fn(&[u8; 32]) -> bool) -> Vec<[u8; 32]> {
        let best = self.best();
        if best.invalid || best.work <= self.tip_entry().map(|e| e.work).unwrap_or_default() {
            return Vec::new();
        }
        // Walk back from the best header to the active chain.
        let mut path = Vec::new();
        let mut cur = best.header.hash();
        while !self.is_active(&cur) {
            let Some(e) = self.entries.get(&cur) else {
                break;
            };
            path.push(cur);
            cur = e.header.prev;
        }
        path.reverse();
        path.into_iter()
            .filter(|h| self.entries.get(h).is_some_and(|e| !e.have_block) && !skip(h))
            .take(max)
            .collect()
    }
}
