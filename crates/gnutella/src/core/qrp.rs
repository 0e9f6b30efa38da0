//! The Query Routing Protocol (QRP) of Gnutella 0.6: the keyword hash, query route tables,
//! and the [`Receiver`] that rebuilds a peer's table from its ROUTE_TABLE_UPDATE (0x30)
//! payloads RESET and PATCH (their codec is [`crate::wire::qrp`]).
//!
//! A leaf hashes every keyword of its shared file names into a table of `size` slots
//! ([`Table`]) and sends it to its ultrapeers as one RESET followed by a sequence of PATCH
//! fragments ([`Table::encode_updates`]). The receiver rebuilds the table with a
//! [`Receiver`]; an ultrapeer forwards a query to that leaf only when
//! [`Table::may_match_query`] says every keyword of the query may be there, and merges its
//! leaves' tables ([`Table::merge`]) into the table it sends to other ultrapeers.
//!
//! Everything here is pure: no I/O, no clock. Decoders return a [`QrpError`] on malformed,
//! truncated or oversized input and never allocate more than the announced (bounded) table.

use std::io::Write as _;

use flate2::{Decompress, FlushDecompress, Status};

pub use crate::wire::qrp::{
    Compressor, MAX_INFINITY, MAX_TABLE_BITS, MIN_TABLE_BITS, Patch, QrpError, ROUTE_TABLE_UPDATE,
    RouteUpdate, VARIANT_PATCH, VARIANT_RESET,
};
use crate::wire::qrp::{bits_of, valid_bits};

/// The multiplier of the QRP hash (the fractional part of the golden ratio, times 2^32).
pub const A_INT: u32 = 0x4F1B_BCDC;
/// Keywords shorter than this many characters are neither hashed nor checked (as gtk-gnutella).
pub const MIN_WORD_CHARS: usize = 3;
/// Default PATCH fragment payload (compressed bytes per fragment).
pub const DEFAULT_FRAGMENT: usize = 4096;
/// Most keywords taken from one text (bounds the work a hostile query can cause).
pub const MAX_KEYWORDS: usize = 64;

/// The QRP hash of `word` into a table of `2^bits` slots (`bits` in 1..=32): the word is
/// lowercased, its UTF-8 bytes are XORed into a 32-bit key four bytes little-endian at a
/// time, the key is multiplied by [`A_INT`] modulo 2^32 and the top `bits` bits are the slot.
pub fn hash(word: &str, bits: u8) -> u32 {
    let lower = word.to_lowercase();
    hash_bytes(lower.as_bytes(), bits)
}

/// [`hash`] over bytes that are already lowercased.
pub fn hash_bytes(bytes: &[u8], bits: u8) -> u32 {
    let mut key = 0u32;
    for (j, b) in bytes.iter().enumerate() {
        key ^= u32::from(*b) << ((j % 4) * 8);
    }
    hash_fast(key, bits)
}

/// The multiplicative step of the QRP hash.
pub fn hash_fast(key: u32, bits: u8) -> u32 {
    let bits = bits.clamp(1, 32);
    let prod = key.wrapping_mul(A_INT);
    if bits == 32 {
        prod
    } else {
        prod >> (32 - u32::from(bits))
    }
}

/// The QRP keywords of a text (a file name or a query): lowercased runs of alphanumeric
/// characters with at least [`MIN_WORD_CHARS`] characters, deduplicated, in order of first
/// appearance, at most [`MAX_KEYWORDS`].
pub fn keywords(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in text.split(|c: char| !c.is_alphanumeric()) {
        if w.chars().count() < MIN_WORD_CHARS {
            continue;
        }
        let w = w.to_lowercase();
        if !out.contains(&w) {
            if out.len() == MAX_KEYWORDS {
                break;
            }
            out.push(w);
        }
    }
    out
}

/// A query route table: `2^bits` slots holding a distance; a slot below `infinity` is
/// "present" (some file may have a keyword hashing there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    bits: u8,
    infinity: u8,
    slots: Vec<i8>,
}

impl Table {
    /// An empty table (every slot at `infinity`) of `size` slots.
    pub fn new(size: u32, infinity: u8) -> Result<Self, QrpError> {
        let bits = bits_of(size)?;
        if infinity == 0 || infinity > MAX_INFINITY {
            return Err(QrpError::BadInfinity(infinity));
        }
        let inf = infinity as i8;
        Ok(Table {
            bits,
            infinity,
            slots: vec![inf; 1usize << bits],
        })
    }

    /// Number of slots.
    pub fn size(&self) -> u32 {
        1u32 << self.bits
    }

    /// log2 of the size: the hash width.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The table's infinity.
    pub fn infinity(&self) -> u8 {
        self.infinity
    }

    /// The value a present slot gets in tables we build.
    fn present_value(&self) -> i8 {
        if self.infinity > 1 { 1 } else { 0 }
    }

    /// Whether `slot` is present (false for a slot outside the table).
    pub fn is_present(&self, slot: u32) -> bool {
        self.slots
            .get(slot as usize)
            .is_some_and(|v| *v < self.infinity as i8)
    }

    /// The raw distance of `slot`.
    pub fn value(&self, slot: u32) -> Option<i8> {
        self.slots.get(slot as usize).copied()
    }

    /// Marks `slot` present (ignored outside the table).
    pub fn set_present(&mut self, slot: u32) {
        let v = self.present_value();
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = (*s).min(v);
        }
    }

    /// Marks one keyword present.
    pub fn insert_word(&mut self, word: &str) {
        self.set_present(hash(word, self.bits));
    }

    /// Marks every keyword of `text` (a file name) present.
    pub fn insert_text(&mut self, text: &str) {
        for w in keywords(text) {
            self.insert_word(&w);
        }
    }

    /// Marks a URN (`urn:sha1:...`) present, hashed whole.
    pub fn insert_urn(&mut self, urn: &str) {
        self.insert_word(urn);
    }

    /// Number of present slots.
    pub fn present_count(&self) -> usize {
        let inf = self.infinity as i8;
        self.slots.iter().filter(|v| **v < inf).count()
    }

    /// Fraction of slots present, 0.0..=1.0.
    pub fn fill(&self) -> f64 {
        self.present_count() as f64 / f64::from(self.size())
    }

    /// Whether a file matching every keyword of `query` may be behind this table. A query
    /// with no hashable keyword (all shorter than [`MIN_WORD_CHARS`]) cannot be excluded.
    pub fn may_match_query(&self, query: &str) -> bool {
        keywords(query)
            .iter()
            .all(|w| self.is_present(hash(w, self.bits)))
    }

    /// As [`Table::may_match_query`] for a query that also names URNs (`urn:sha1:...`,
    /// hashed whole): URNs are OR-ed, so such a query may match when any of its URNs is
    /// present, whatever its words (as gtk-gnutella routes them); without URNs every word
    /// must be present.
    pub fn may_match(&self, query: &str, urns: &[&str]) -> bool {
        if urns.is_empty() {
            self.may_match_query(query)
        } else {
            urns.iter().any(|u| self.is_present(hash(u, self.bits)))
        }
    }

    /// Adds every present slot of `other` to this table (for an ultrapeer merging its
    /// leaves). Tables of different sizes map exactly because a slot is the top bits of
    /// the same 32-bit product: slot `i` of a `2^a` table covers slots
    /// `i << (b-a) .. (i+1) << (b-a)` of a `2^b` table, and `i >> (a-b)` when smaller.
    pub fn merge(&mut self, other: &Table) {
        let (a, b) = (other.bits, self.bits);
        for (i, v) in other.slots.iter().enumerate() {
            if *v >= other.infinity as i8 {
                continue;
            }
            let i = i as u32;
            if a >= b {
                self.set_present(i >> (a - b));
            } else {
                let shift = b - a;
                for j in (i << shift)..((i + 1) << shift) {
                    self.set_present(j);
                }
            }
        }
    }

    /// The updates that bring a peer from `from` (the table it holds; `None` after a fresh
    /// connection) to this table: a RESET when `from` is `None` or differs in size or
    /// infinity, then PATCH fragments of `entry_bits` (1, 2, 4 or 8) entries, optionally zlib
    /// compressed as one stream cut into fragments of at most `fragment` bytes. Nothing
    /// (an empty list) when the peer already holds this table.
    pub fn encode_updates(
        &self,
        from: Option<&Table>,
        entry_bits: u8,
        compress: bool,
        fragment: usize,
    ) -> Result<Vec<RouteUpdate>, QrpError> {
        if !valid_bits(entry_bits) {
            return Err(QrpError::BadEntryBits(entry_bits));
        }
        let base = match from {
            Some(t) if t.bits == self.bits && t.infinity == self.infinity => {
                if t.slots == self.slots {
                    return Ok(Vec::new());
                }
                Some(t)
            }
            _ => None,
        };
        let mut out = Vec::new();
        if base.is_none() {
            out.push(RouteUpdate::Reset {
                table_length: self.size(),
                infinity: self.infinity,
            });
        }
        let inf = self.infinity as i8;
        let delta = |i: usize, v: i8| -> i8 {
            let old = base.and_then(|t| t.slots.get(i).copied()).unwrap_or(inf);
            v - old // both in 0..=127
        };
        let mut raw = Vec::with_capacity(self.slots.len() * usize::from(entry_bits) / 8);
        let per_byte = 8 / usize::from(entry_bits);
        let mask = ((1u16 << entry_bits) - 1) as u8;
        // Signed range of one entry (1-bit entries are a presence toggle instead).
        let (lo, hi) = (-(1i16 << (entry_bits - 1)), (1i16 << (entry_bits - 1)) - 1);
        for (i, group) in self.slots.chunks(per_byte).enumerate() {
            let mut byte = 0u8;
            for (k, v) in group.iter().enumerate() {
                let j = i * per_byte + k;
                let field = if entry_bits == 1 {
                    let old = base.and_then(|t| t.slots.get(j).copied()).unwrap_or(inf);
                    u8::from((old < inf) != (*v < inf))
                } else {
                    let d = i16::from(delta(j, *v));
                    if d < lo || d > hi {
                        return Err(QrpError::EntryOutOfRange(entry_bits));
                    }
                    (d as u8) & mask
                };
                byte |= field << (8 - usize::from(entry_bits) * (k + 1));
            }
            raw.push(byte);
        }
        let (data, compressor) = if compress {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            // Writing into a Vec cannot fail.
            z.write_all(&raw).map_err(|_| QrpError::Zlib)?;
            (z.finish().map_err(|_| QrpError::Zlib)?, Compressor::Zlib)
        } else {
            (raw, Compressor::None)
        };
        let fragment = fragment.max(1);
        let count = data.len().div_ceil(fragment).max(1);
        let seq_size = u8::try_from(count).map_err(|_| QrpError::TooManyFragments)?;
        for (n, chunk) in data.chunks(fragment).enumerate() {
            out.push(RouteUpdate::Patch(Patch {
                seq_no: (n + 1) as u8,
                seq_size,
                compressor,
                entry_bits,
                data: chunk.to_vec(),
            }));
        }
        Ok(out)
    }
}

struct Pending {
    next: u8,
    seq_size: u8,
    compressor: Compressor,
    entry_bits: u8,
    want: usize,
    buf: Vec<u8>,
    inflate: Decompress,
}

/// The receiving side of one connection's route table: feed it every ROUTE_TABLE_UPDATE
/// in order. A patch sequence is applied only once its last fragment arrives and the
/// whole sequence decoded cleanly; on any error the sequence is dropped and the previous
/// table stays.
#[derive(Default)]
pub struct Receiver {
    table: Option<Table>,
    pending: Option<Pending>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("table_size", &self.table.as_ref().map(Table::size))
            .field("pending_next", &self.pending.as_ref().map(|p| p.next))
            .finish()
    }
}

/// What [`Receiver::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A RESET: the table is now empty.
    Reset,
    /// A fragment was buffered; more are expected.
    Fragment,
    /// The last fragment: the table changed.
    Patched,
}

impl Receiver {
    /// A receiver with no table yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current table (None before the first RESET).
    pub fn table(&self) -> Option<&Table> {
        self.table.as_ref()
    }

    /// Applies one decoded update.
    pub fn apply(&mut self, update: &RouteUpdate) -> Result<Applied, QrpError> {
        match update {
            RouteUpdate::Reset {
                table_length,
                infinity,
            } => {
                self.pending = None;
                self.table = Some(Table::new(*table_length, *infinity)?);
                Ok(Applied::Reset)
            }
            RouteUpdate::Patch(p) => {
                let r = self.patch(p);
                if r.is_err() {
                    self.pending = None;
                }
                r
            }
        }
    }

    fn patch(&mut self, p: &Patch) -> Result<Applied, QrpError> {
        let table = self.table.as_ref().ok_or(QrpError::NoTable)?;
        if p.seq_no == 1 {
            let want = table.slots.len() * usize::from(p.entry_bits) / 8;
            self.pending = Some(Pending {
                next: 1,
                seq_size: p.seq_size,
                compressor: p.compressor,
                entry_bits: p.entry_bits,
                want,
                buf: Vec::new(),
                inflate: Decompress::new(true),
            });
        }
        let pend = self.pending.as_mut().ok_or(QrpError::OutOfOrder {
            expected: 1,
            got: p.seq_no,
        })?;
        if p.seq_no != pend.next
            || p.seq_size != pend.seq_size
            || p.compressor != pend.compressor
            || p.entry_bits != pend.entry_bits
        {
            return Err(QrpError::OutOfOrder {
                expected: pend.next,
                got: p.seq_no,
            });
        }
        match pend.compressor {
            Compressor::None => {
                if pend.buf.len() + p.data.len() > pend.want {
                    return Err(QrpError::PatchTooLong(pend.want));
                }
                pend.buf.extend_from_slice(&p.data);
            }
            Compressor::Zlib => inflate_into(pend, &p.data)?,
        }
        pend.next = pend.next.wrapping_add(1);
        if p.seq_no < p.seq_size {
            return Ok(Applied::Fragment);
        }
        let Some(pend) = self.pending.take() else {
            return Err(QrpError::NoTable);
        };
        if pend.buf.len() != pend.want {
            return Err(QrpError::PatchLength {
                got: pend.buf.len(),
                want: pend.want,
            });
        }
        let table = self.table.as_mut().ok_or(QrpError::NoTable)?;
        let inf = table.infinity as i8;
        let bits = usize::from(pend.entry_bits);
        let per_byte = 8 / bits;
        let present = table.present_value();
        for (i, b) in pend.buf.iter().enumerate() {
            for k in 0..per_byte {
                let j = i * per_byte + k;
                // Shift the entry to the top of the byte, then sign-extend it down.
                let top = (*b << (bits * k)) as i8;
                let d = top >> (8 - bits);
                let Some(s) = table.slots.get_mut(j) else {
                    continue;
                };
                if bits == 1 {
                    // gtk-gnutella's 1-bit patches toggle presence.
                    if d != 0 {
                        *s = if *s < inf { inf } else { present };
                    }
                } else {
                    *s = (i16::from(*s) + i16::from(d)).clamp(0, i16::from(inf)) as i8;
                }
            }
        }
        Ok(Applied::Patched)
    }
}

/// Inflates `input` (the next piece of the one zlib stream) into `pend.buf`, never past
/// `pend.want` bytes.
fn inflate_into(pend: &mut Pending, mut input: &[u8]) -> Result<(), QrpError> {
    let mut scratch = [0u8; 4096];
    // Each round consumes input or produces output; bound the rounds anyway.
    for _ in 0..(input.len() + pend.want / 1024 + 64) * 4 {
        let before_in = pend.inflate.total_in();
        let before_out = pend.inflate.total_out();
        let status = pend
            .inflate
            .decompress(input, &mut scratch, FlushDecompress::None)
            .map_err(|_| QrpError::Zlib)?;
        let used = (pend.inflate.total_in() - before_in) as usize;
        let made = (pend.inflate.total_out() - before_out) as usize;
        input = input.get(used..).unwrap_or(&[]);
        let out = scratch.get(..made).unwrap_or(&[]);
        if pend.buf.len() + out.len() > pend.want {
            return Err(QrpError::PatchTooLong(pend.want));
        }
        pend.buf.extend_from_slice(out);
        if status == Status::StreamEnd || (input.is_empty() && made < scratch.len()) {
            return Ok(());
        }
        if used == 0 && made == 0 {
            return Err(QrpError::Zlib);
        }
    }
    Err(QrpError::Zlib)
}
