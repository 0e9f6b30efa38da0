//! The ROUTE_TABLE_UPDATE (0x30) descriptor payloads of the Query Routing Protocol: RESET
//! and PATCH, byte for byte. Decoding checks every field (table size a power of two in
//! 2^3..=2^21, infinity, entry bits, compressor, sequence numbers) and returns a typed
//! [`QrpError`]; the tables themselves are [`crate::core::qrp`].

use thiserror::Error;

pub(crate) fn valid_bits(b: u8) -> bool {
    matches!(b, 1 | 2 | 4 | 8)
}

/// The ROUTE_TABLE_UPDATE descriptor's payload type.
pub const ROUTE_TABLE_UPDATE: u8 = 0x30;
/// Variant byte of a RESET.
pub const VARIANT_RESET: u8 = 0x00;
/// Variant byte of a PATCH.
pub const VARIANT_PATCH: u8 = 0x01;
/// Smallest table we accept: 2^3 slots.
pub const MIN_TABLE_BITS: u8 = 3;
/// Largest table we accept: 2^21 slots (2 MiB of 8-bit entries); real servents send 2^13..2^17.
pub const MAX_TABLE_BITS: u8 = 21;
/// Largest infinity we accept (entries are stored as `i8`).
pub const MAX_INFINITY: u8 = 127;
/// What can go wrong decoding or applying QRP data.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QrpError {
    #[error("empty ROUTE_TABLE_UPDATE payload")]
    Empty,
    #[error("unknown ROUTE_TABLE_UPDATE variant {0:#04x}")]
    UnknownVariant(u8),
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("trailing bytes after RESET")]
    Trailing,
    #[error("table size {0} is not a power of two in 2^3..=2^21")]
    BadTableSize(u32),
    #[error("infinity {0} outside 1..=127")]
    BadInfinity(u8),
    #[error("entry bits {0} (1, 2, 4 or 8 are allowed)")]
    BadEntryBits(u8),
    #[error("unknown compressor {0}")]
    BadCompressor(u8),
    #[error("patch sequence number {seq_no} of {seq_size} is invalid")]
    BadSequence { seq_no: u8, seq_size: u8 },
    #[error("patch fragment out of order: expected {expected}, got {got}")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("patch before any RESET")]
    NoTable,
    #[error("patch decodes to more than the table's {0} bytes")]
    PatchTooLong(usize),
    #[error("patch decodes to {got} bytes, the table needs {want}")]
    PatchLength { got: usize, want: usize },
    #[error("zlib data is corrupt")]
    Zlib,
    #[error("a patch entry does not fit in {0} bits")]
    EntryOutOfRange(u8),
    #[error("more than 255 patch fragments needed")]
    TooManyFragments,
    #[error("tables differ in size or infinity")]
    Mismatch,
}

pub(crate) fn bits_of(size: u32) -> Result<u8, QrpError> {
    if !size.is_power_of_two() {
        return Err(QrpError::BadTableSize(size));
    }
    let bits = u8::try_from(size.trailing_zeros()).map_err(|_| QrpError::BadTableSize(size))?;
    if !(MIN_TABLE_BITS..=MAX_TABLE_BITS).contains(&bits) {
        return Err(QrpError::BadTableSize(size));
    }
    Ok(bits)
}

/// How a PATCH's data is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compressor {
    /// 0x00: raw entries.
    None,
    /// 0x01: one zlib stream over the whole fragment sequence.
    Zlib,
}

/// One PATCH fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    /// 1-based position in the sequence.
    pub seq_no: u8,
    /// Number of fragments in the sequence.
    pub seq_size: u8,
    pub compressor: Compressor,
    /// 4 or 8.
    pub entry_bits: u8,
    /// This fragment's share of the (possibly compressed) entry data.
    pub data: Vec<u8>,
}

/// The payload of a ROUTE_TABLE_UPDATE (0x30) descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteUpdate {
    /// `00 | table_length u32 LE | infinity u8`: start over with an empty table.
    Reset { table_length: u32, infinity: u8 },
    /// `01 | seq_no | seq_size | compressor | entry_bits | data`.
    Patch(Patch),
}

impl RouteUpdate {
    /// Appends the payload bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            RouteUpdate::Reset {
                table_length,
                infinity,
            } => {
                out.push(VARIANT_RESET);
                out.extend_from_slice(&table_length.to_le_bytes());
                out.push(*infinity);
            }
            RouteUpdate::Patch(p) => {
                out.push(VARIANT_PATCH);
                out.push(p.seq_no);
                out.push(p.seq_size);
                out.push(match p.compressor {
                    Compressor::None => 0,
                    Compressor::Zlib => 1,
                });
                out.push(p.entry_bits);
                out.extend_from_slice(&p.data);
            }
        }
    }

    /// The payload bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }

    /// Decodes and validates one payload (the caller bounds the payload length, as for
    /// every descriptor). The table size and infinity of a RESET are checked here.
    pub fn decode(payload: &[u8]) -> Result<Self, QrpError> {
        let (&variant, rest) = payload.split_first().ok_or(QrpError::Empty)?;
        match variant {
            VARIANT_RESET => {
                if rest.len() < 5 {
                    return Err(QrpError::Truncated("RESET"));
                }
                if rest.len() > 5 {
                    return Err(QrpError::Trailing);
                }
                let table_length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                let infinity = rest[4];
                bits_of(table_length)?;
                if infinity == 0 || infinity > MAX_INFINITY {
                    return Err(QrpError::BadInfinity(infinity));
                }
                Ok(RouteUpdate::Reset {
                    table_length,
                    infinity,
                })
            }
            VARIANT_PATCH => {
                let [seq_no, seq_size, comp, entry_bits, data @ ..] = rest else {
                    return Err(QrpError::Truncated("PATCH"));
                };
                if *seq_no == 0 || seq_no > seq_size {
                    return Err(QrpError::BadSequence {
                        seq_no: *seq_no,
                        seq_size: *seq_size,
                    });
                }
                let compressor = match comp {
                    0 => Compressor::None,
                    1 => Compressor::Zlib,
                    c => return Err(QrpError::BadCompressor(*c)),
                };
                if !valid_bits(*entry_bits) {
                    return Err(QrpError::BadEntryBits(*entry_bits));
                }
                Ok(RouteUpdate::Patch(Patch {
                    seq_no: *seq_no,
                    seq_size: *seq_size,
                    compressor,
                    entry_bits: *entry_bits,
                    data: data.to_vec(),
                }))
            }
            v => Err(QrpError::UnknownVariant(v)),
        }
    }
}
