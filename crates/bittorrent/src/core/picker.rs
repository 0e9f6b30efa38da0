//! Which blocks to request next: rarest-first piece picking with random first pieces, strict
//! priority to finish started pieces, and endgame mode.
//!
//! The picker knows how many connected peers have each piece (availability), which pieces we
//! have, and the state of every block of every started piece. It never sees peers' identities
//! beyond a small handle used to remember who sent what (to penalise senders of bad pieces).

use std::collections::BTreeMap;

use servent_core::Rng;

use crate::wire::{BLOCK_LEN, BlockRef};

/// A set of pieces, stored as the wire bitfield (high bit of byte 0 is piece 0).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl Bitfield {
    /// `len` pieces, none set.
    pub fn new(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; (len as usize).div_ceil(8)],
            len,
            count: 0,
        }
    }

    /// `len` pieces, all set.
    pub fn full(len: u32) -> Bitfield {
        let mut b = Bitfield::new(len);
        for i in 0..len {
            b.set(i);
        }
        b
    }

    /// From wire bytes: the length must match and spare bits must be zero (BEP 3).
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Bitfield> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let spare = (8 - len % 8) % 8;
        if spare > 0 && bytes.last().is_some_and(|b| b & ((1u8 << spare) - 1) != 0) {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bits: bytes.to_vec(),
            len,
            count,
        })
    }

    /// Wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Number of pieces.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Whether there are no pieces at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pieces set.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether every piece is set.
    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    /// Whether piece `i` is set (false when out of range).
    pub fn get(&self, i: u32) -> bool {
        i < self.len
            && self
                .bits
                .get(i as usize / 8)
                .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
    }

    /// Sets piece `i`; returns whether it was newly set.
    pub fn set(&mut self, i: u32) -> bool {
        if i >= self.len || self.get(i) {
            return false;
        }
        if let Some(b) = self.bits.get_mut(i as usize / 8) {
            *b |= 0x80 >> (i % 8);
            self.count += 1;
        }
        true
    }

    /// Iterates the set pieces.
    pub fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|i| self.get(*i))
    }
}

/// Endgame starts when at most this many blocks are still missing (all requested).
pub const ENDGAME_BLOCKS: usize = 32;

/// Names a peer to the picker.
pub type PeerKey = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Free,
    /// Requested from this many peers (more than one only in endgame).
    Requested(u8),
    Received,
}

#[derive(Debug, Clone)]
struct Partial {
    blocks: Vec<Block>,
    received: u32,
    senders: Vec<PeerKey>,
}

/// The piece picker.
#[derive(Debug, Clone)]
pub struct Picker {
    piece_length: u64,
    total: u64,
    have: Bitfield,
    availability: Vec<u32>,
    /// A random rank per piece: ties in availability are broken by it.
    rank: Vec<u32>,
    partial: BTreeMap<u32, Partial>,
    /// Pieces that are complete and waiting for verification.
    pending_verify: BTreeMap<u32, Vec<PeerKey>>,
    /// How many pieces are picked at random before switching to rarest first.
    random_first: u32,
    /// Bytes of new pieces [`Picker::pick`] may still start (see
    /// [`Picker::set_new_piece_budget`]); started pieces are always finished.
    new_budget: u64,
    /// Sum of the lengths of the `partial` pieces.
    partial_bytes: u64,
}

impl Picker {
    /// A picker for content of `total` bytes in pieces of `piece_length`, with `have`
    /// already verified.
    pub fn new(piece_length: u64, total: u64, have: Bitfield, rng: &mut Rng) -> Picker {
        let n = have.len();
        let mut rank: Vec<u32> = (0..n).collect();
        rng.shuffle(&mut rank);
        Picker {
            piece_length,
            total,
            availability: vec![0; n as usize],
            rank,
            partial: BTreeMap::new(),
            pending_verify: BTreeMap::new(),
            have,
            random_first: 4,
            new_budget: u64::MAX,
            partial_bytes: 0,
        }
    }

    /// Lets [`Picker::pick`] start new pieces only while their lengths fit in `bytes`
    /// (each started piece takes its length off); blocks of started pieces are picked
    /// regardless. The caller that holds pieces in memory sets it before each pick, so
    /// what it holds stays bounded without a started piece ever waiting forever.
    pub fn set_new_piece_budget(&mut self, bytes: u64) {
        self.new_budget = bytes;
    }

    /// Pieces we have (verified).
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.have.len()
    }

    /// Length of piece `i`.
    pub fn piece_len(&self, i: u32) -> u32 {
        let start = u64::from(i) * self.piece_length;
        self.total.saturating_sub(start).min(self.piece_length) as u32
    }

    fn blocks_in(&self, i: u32) -> u32 {
        self.piece_len(i).div_ceil(BLOCK_LEN)
    }

    fn block_ref(&self, i: u32, b: u32) -> BlockRef {
        let begin = b * BLOCK_LEN;
        BlockRef {
            index: i,
            begin,
            length: (self.piece_len(i) - begin).min(BLOCK_LEN),
        }
    }

    /// A peer announced it has piece `i`.
    pub fn peer_has(&mut self, i: u32) {
        if let Some(a) = self.availability.get_mut(i as usize) {
            *a += 1;
        }
    }

    /// A peer with these pieces left.
    pub fn peer_gone(&mut self, has: &Bitfield) {
        for i in has.ones() {
            if let Some(a) = self.availability.get_mut(i as usize) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// How many connected peers have piece `i`.
    pub fn availability(&self, i: u32) -> u32 {
        self.availability.get(i as usize).copied().unwrap_or(0)
    }

    /// Whether a peer with `has` has anything we want.
    pub fn interesting(&self, has: &Bitfield) -> bool {
        if has.is_full() {
            return !self.have.is_full();
        }
        has.ones().any(|i| !self.have.get(i))
    }

    fn wanted(&self, i: u32) -> bool {
        !self.have.get(i) && !self.pending_verify.contains_key(&i)
    }

    /// Whether every missing block has been requested at least once and few are left
    /// (endgame): then outstanding blocks may be requested from a second peer.
    pub fn in_endgame(&self) -> bool {
        let missing = (0..self.piece_count()).filter(|i| self.wanted(*i)).count();
        missing > 0
            && missing == self.partial.len()
            && self
                .partial
                .values()
                .all(|p| p.blocks.iter().all(|b| *b != Block::Free))
            && self
                .partial
                .values()
                .map(|p| p.blocks.len() - p.received as usize)
                .sum::<usize>()
                <= ENDGAME_BLOCKS
    }

    /// Up to `n` blocks to request from a peer that has `has`, skipping blocks in `inflight`
    /// (what this peer already has outstanding). `allowed` restricts pieces (allowed-fast
    /// while choked).
    pub fn pick(
        &mut self,
        has: &Bitfield,
        n: usize,
        inflight: &[BlockRef],
        allowed: Option<&[u32]>,
        rng: &mut Rng,
    ) -> Vec<BlockRef> {
        let mut out = Vec::new();
        let ok_piece = |i: u32| has.get(i) && allowed.is_none_or(|a| a.contains(&i));
        // 1. Finish started pieces first (strict priority), rarest of them first.
        let mut started: Vec<u32> = self
            .partial
            .keys()
            .copied()
            .filter(|i| ok_piece(*i))
            .collect();
        started.sort_by_key(|i| {
            (
                self.availability(*i),
                self.rank.get(*i as usize).copied().unwrap_or(0),
            )
        });
        for i in started {
            self.take_free(i, n, &mut out);
            if out.len() >= n {
                return out;
            }
        }
        // 2. New pieces: random while we have few, then rarest first.
        while out.len() < n {
            let candidates = (0..self.piece_count())
                .filter(|i| ok_piece(*i) && self.wanted(*i) && !self.partial.contains_key(i));
            let choice = if self.have.count() < self.random_first {
                let c: Vec<u32> = candidates.collect();
                rng.pick(&c).copied()
            } else {
                candidates.min_by_key(|i| {
                    (
                        self.availability(*i),
                        self.rank.get(*i as usize).copied().unwrap_or(0),
                    )
                })
            };
            let Some(i) = choice else { break };
            let len = u64::from(self.piece_len(i));
            if len > self.new_budget {
                break;
            }
            self.new_budget -= len;
            self.partial_bytes += len;
            let blocks = self.blocks_in(i) as usize;
            self.partial.insert(
                i,
                Partial {
                    blocks: vec![Block::Free; blocks],
                    received: 0,
                    senders: Vec::new(),
                },
            );
            self.take_free(i, n, &mut out);
        }
        // 3. Endgame: request again blocks already requested from others.
        if out.is_empty() && self.in_endgame() {
            let mut dup: Vec<BlockRef> = Vec::new();
            for (&i, p) in &self.partial {
                if !ok_piece(i) {
                    continue;
                }
                for (b, st) in p.blocks.iter().enumerate() {
                    // At most two peers are asked for the same block.
                    if matches!(st, Block::Requested(1)) {
                        let r = self.block_ref(i, b as u32);
                        if !inflight.contains(&r) {
                            dup.push(r);
                        }
                    }
                }
            }
            rng.shuffle(&mut dup);
            dup.truncate(n);
            for r in &dup {
                if let Some(Block::Requested(c)) = self
                    .partial
                    .get_mut(&r.index)
                    .and_then(|p| p.blocks.get_mut((r.begin / BLOCK_LEN) as usize))
                {
                    *c = c.saturating_add(1);
                }
            }
            out = dup;
        }
        out
    }

    fn take_free(&mut self, i: u32, n: usize, out: &mut Vec<BlockRef>) {
        let Some(p) = self.partial.get_mut(&i) else {
            return;
        };
        let mut idx = Vec::new();
        for (b, st) in p.blocks.iter_mut().enumerate() {
            if out.len() + idx.len() >= n {
                break;
            }
            if *st == Block::Free {
                *st = Block::Requested(1);
                idx.push(b as u32);
            }
        }
        for b in idx {
            out.push(self.block_ref(i, b));
        }
    }

    /// A request was dropped (timeout, choke, reject, disconnect): the block is free again
    /// unless another peer also has it outstanding.
    pub fn unrequest(&mut self, r: &BlockRef) {
        if let Some(st) = self
            .partial
            .get_mut(&r.index)
            .and_then(|p| p.blocks.get_mut((r.begin / BLOCK_LEN) as usize))
        {
            if let Block::Requested(c) = st {
                *st = if *c > 1 {
                    Block::Requested(*c - 1)
                } else {
                    Block::Free
                };
            }
        }
    }

    /// Whether `r` is a block we want right now (requested, not yet received).
    pub fn expects(&self, r: &BlockRef) -> bool {
        r.begin % BLOCK_LEN == 0
            && self
                .partial
                .get(&r.index)
                .and_then(|p| p.blocks.get((r.begin / BLOCK_LEN) as usize))
                .is_some_and(|b| matches!(b, Block::Requested(_)))
            && r.length == self.block_ref(r.index, r.begin / BLOCK_LEN).length
    }

    /// A block arrived from `from`; returns `true` when its piece is now complete (then call
    /// [`Picker::verified`] or [`Picker::failed`] after hashing it).
    pub fn received(&mut self, r: &BlockRef, from: PeerKey) -> bool {
        if !self.expects(r) {
            return false;
        }
        let Some(p) = self.partial.get_mut(&r.index) else {
            return false;
        };
        if let Some(st) = p.blocks.get_mut((r.begin / BLOCK_LEN) as usize) {
            *st = Block::Received;
            p.received += 1;
        }
        if !p.senders.contains(&from) {
            p.senders.push(from);
        }
        if p.received as usize == p.blocks.len() {
            if let Some(p) = self.remove_partial(r.index) {
                self.pending_verify.insert(r.index, p.senders);
            }
            return true;
        }
        false
    }

    /// Piece `i` hashed correctly: we have it.
    pub fn verified(&mut self, i: u32) {
        self.pending_verify.remove(&i);
        self.remove_partial(i);
        self.have.set(i);
    }

    /// Piece `i` hashed wrong: it is dropped and will be downloaded again; returns who sent
    /// its blocks.
    pub fn failed(&mut self, i: u32) -> Vec<PeerKey> {
        self.remove_partial(i);
        self.pending_verify.remove(&i).unwrap_or_default()
    }

    fn remove_partial(&mut self, i: u32) -> Option<Partial> {
        let p = self.partial.remove(&i)?;
        self.partial_bytes -= u64::from(self.piece_len(i));
        Some(p)
    }

    /// Bytes of the started pieces not yet complete (the ones [`Picker::pick`] finishes
    /// before starting others).
    pub fn partial_bytes(&self) -> u64 {
        self.partial_bytes
    }

    /// Number of started, unfinished pieces.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }

    /// Bytes of verified pieces.
    pub fn have_bytes(&self) -> u64 {
        self.have.ones().map(|i| u64::from(self.piece_len(i))).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use servent_core::Rng;

    #[test]
    fn bitfield_wire_form_rejects_spare_bits_and_wrong_lengths() {
        let mut b = Bitfield::new(10);
        b.set(0);
        b.set(9);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(Bitfield::from_bytes(&[0x80, 0x40], 10), Some(b));
        assert_eq!(
            Bitfield::from_bytes(&[0x80, 0x60], 10),
            None,
            "spare bit set"
        );
        assert_eq!(Bitfield::from_bytes(&[0x80], 10), None);
        assert!(!Bitfield::new(3).get(100));
    }

    fn picker(pieces: u32, have: &[u32]) -> (Picker, Rng) {
        let mut rng = Rng::new(3);
        let mut h = Bitfield::new(pieces);
        for i in have {
            h.set(*i);
        }
        let p = Picker::new(
            2 * u64::from(BLOCK_LEN),
            u64::from(pieces) * 2 * u64::from(BLOCK_LEN),
            h,
            &mut rng,
        );
        (p, rng)
    }

    #[test]
    fn rarest_piece_is_picked_after_the_random_start() {
        let (mut p, mut rng) = picker(10, &[0, 1, 2, 3]);
        let all = Bitfield::full(10);
        for i in 0..10 {
            for _ in 0..(if i == 7 { 1 } else { 3 }) {
                p.peer_has(i);
            }
        }
        let r = p.pick(&all, 2, &[], None, &mut rng);
        assert_eq!(r.iter().map(|b| b.index).collect::<Vec<_>>(), vec![7, 7]);
    }

    #[test]
    fn started_pieces_are_finished_before_new_ones() {
        let (mut p, mut rng) = picker(10, &[0, 1, 2, 3]);
        let all = Bitfield::full(10);
        let first = p.pick(&all, 1, &[], None, &mut rng);
        let second = p.pick(&all, 1, &[], None, &mut rng);
        assert_eq!(first[0].index, second[0].index);
        assert_eq!(second[0].begin, BLOCK_LEN);
    }

    #[test]
    fn a_spent_new_piece_budget_starts_no_piece_but_still_finishes_started_ones() {
        let (mut p, mut rng) = picker(10, &[]);
        let all = Bitfield::full(10);
        let piece = 2 * u64::from(BLOCK_LEN);
        // Room for one piece and a half: one piece starts, its two blocks are picked.
        p.set_new_piece_budget(piece + piece / 2);
        let first = p.pick(&all, 10, &[], None, &mut rng);
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|b| b.index == first[0].index));
        assert_eq!(p.partial_count(), 1);
        // Nothing left: no new piece, but a freed block of the started one is picked again.
        p.set_new_piece_budget(0);
        assert!(p.pick(&all, 10, &[], None, &mut rng).is_empty());
        p.unrequest(&first[1]);
        assert_eq!(p.pick(&all, 10, &[], None, &mut rng), vec![first[1]]);
        assert_eq!(p.partial_count(), 1);
    }

    #[test]
    fn endgame_requests_outstanding_blocks_again_and_unrequest_frees() {
        let (mut p, mut rng) = picker(2, &[0]);
        let all = Bitfield::full(2);
        let a = p.pick(&all, 10, &[], None, &mut rng);
        assert_eq!(a.len(), 2);
        assert!(p.in_endgame());
        let b = p.pick(&all, 10, &[a[0]], None, &mut rng);
        assert_eq!(b, vec![a[1]]);
        assert!(
            !p.received(
                &BlockRef {
                    index: 1,
                    begin: 0,
                    length: 5
                },
                1
            ),
            "wrong length"
        );
        assert!(!p.received(&a[0], 1));
        assert!(p.received(&a[1], 2));
        assert_eq!(p.failed(1), vec![1, 2]);
        let again = p.pick(&all, 10, &[], None, &mut rng);
        assert_eq!(again.len(), 2);
        p.unrequest(&again[0]);
        assert_eq!(p.pick(&all, 10, &[], None, &mut rng), vec![again[0]]);
    }

    #[test]
    fn allowed_fast_restricts_picks_while_choked() {
        let (mut p, mut rng) = picker(10, &[]);
        let all = Bitfield::full(10);
        let r = p.pick(&all, 10, &[], Some(&[5]), &mut rng);
        assert!(r.iter().all(|b| b.index == 5) && r.len() == 2);
    }

    proptest! {
        #[test]
        fn bitfield_from_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..20), len in 0u32..200) {
            if let Some(b) = Bitfield::from_bytes(&data, len) {
                prop_assert_eq!(b.ones().count() as u32, b.count());
            }
        }

        #[test]
        fn every_piece_gets_downloaded_exactly_once(pieces in 1u32..20, seed in any::<u64>()) {
            let mut rng = Rng::new(seed);
            let total = u64::from(pieces) * 40_000 - 123;
            let mut p = Picker::new(40_000, total, Bitfield::new(pieces), &mut rng);
            let all = Bitfield::full(pieces);
            let mut done = 0;
            for _ in 0..10_000 {
                let r = p.pick(&all, 3, &[], None, &mut rng);
                if r.is_empty() { break; }
                for b in r {
                    if p.received(&b, 1) { p.verified(b.index); done += 1; }
                }
            }
            prop_assert_eq!(done, pieces);
            prop_assert!(p.have().is_full());
        }
    }
}
