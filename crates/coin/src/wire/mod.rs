//! Bitcoin serialization: strict, bounded, no state.
use thiserror::Error;

pub mod electrum;
pub mod p2p;
pub mod stratum;

/// Why bytes did not decode.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("input truncated")]
    Truncated,
    #[error("non-canonical CompactSize")]
    NonCanonical,
    #[error("count {0} exceeds remaining input")]
    Oversized(u64),
    #[error("segwit marker: a witness serialization where only legacy is accepted")]
    SegwitMarker,
    #[error("superfluous witness record: the witness flag is set but every stack is empty")]
    SuperfluousWitness,
    #[error("unknown transaction optional data: flag bits {0:#04x}")]
    UnknownOptionalData(u8),
    #[error("unexpected-witness: transaction {0} of a block carries witness data (no SegWit here)")]
    UnexpectedWitness(usize),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Encoding to the wire format.
pub trait Encode {
    fn encode_to(&self, out: &mut Vec<u8>);
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_to(&mut v);
        v
    }
}

/// A cursor over input bytes.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    pub fn hash(&mut self) -> Result<[u8; 32], DecodeError> {
        self.arr()
    }
    /// CompactSize, rejecting non-minimal encodings.
    pub fn compact_size(&mut self) -> Result<u64, DecodeError> {
        let (v, min) = match self.u8()? {
            0xfd => (u64::from(u16::from_le_bytes(self.arr()?)), 0xfd),
            0xfe => (u64::from(u32::from_le_bytes(self.arr()?)), 0x1_0000),
            0xff => (u64::from_le_bytes(self.arr()?), 0x1_0000_0000),
            b => return Ok(u64::from(b)),
        };
        if v < min {
            return Err(DecodeError::NonCanonical);
        }
        Ok(v)
    }
    /// A count of items each at least `min_size` bytes, checked against the
    /// remaining input before anything is allocated.
    pub fn count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let n = self.compact_size()?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_size.max(1)))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(DecodeError::Oversized(n));
        }
        usize::try_from(n).map_err(|_| DecodeError::Oversized(n))
    }
    pub fn var_bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let n = self.count(1)?;
        Ok(self.take(n)?.to_vec())
    }
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

pub fn write_compact_size(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub(crate) fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_compact_size(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutPoint {
    pub txid: [u8; 32],
    pub vout: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxIn {
    pub prevout: OutPoint,
    pub script_sig: Vec<u8>,
    pub sequence: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOut {
    /// Satoshis.
    pub value: i64,
    pub script_pubkey: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub version: i32,
    pub inputs: Vec<TxIn>,
    pub outputs: Vec<TxOut>,
    pub lock_time: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    pub version: i32,
    pub prev: [u8; 32],
    pub merkle_root: [u8; 32],
    pub time: u32,
    pub bits: u32,
    pub nonce: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<Transaction>,
}

/// Inputs and outputs, each list with its count.
fn encode_body(t: &Transaction, out: &mut Vec<u8>) {
    write_compact_size(out, t.inputs.len() as u64);
    for i in &t.inputs {
        out.extend_from_slice(&i.prevout.txid);
        out.extend_from_slice(&i.prevout.vout.to_le_bytes());
        write_bytes(out, &i.script_sig);
        out.extend_from_slice(&i.sequence.to_le_bytes());
    }
    write_compact_size(out, t.outputs.len() as u64);
    for o in &t.outputs {
        out.extend_from_slice(&o.value.to_le_bytes());
        write_bytes(out, &o.script_pubkey);
    }
}

impl Encode for Transaction {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        encode_body(self, out);
        out.extend_from_slice(&self.lock_time.to_le_bytes());
    }
}

fn decode_inputs(r: &mut Reader<'_>, n_in: usize) -> Result<Vec<TxIn>, DecodeError> {
    let mut inputs = Vec::with_capacity(n_in);
    for _ in 0..n_in {
        let txid = r.hash()?;
        let vout = r.u32()?;
        let script_sig = r.var_bytes()?;
        let sequence = r.u32()?;
        inputs.push(TxIn {
            prevout: OutPoint { txid, vout },
            script_sig,
            sequence,
        });
    }
    Ok(inputs)
}

fn decode_outputs(r: &mut Reader<'_>) -> Result<Vec<TxOut>, DecodeError> {
    let n_out = r.count(9)?;
    let mut outputs = Vec::with_capacity(n_out);
    for _ in 0..n_out {
        let value = r.i64()?;
        let script_pubkey = r.var_bytes()?;
        outputs.push(TxOut {
            value,
            script_pubkey,
        });
    }
    Ok(outputs)
}

/// One input's witness: a stack of byte strings.
pub type WitnessStack = Vec<Vec<u8>>;

/// A transaction with its witness, as BIP 144 serializes it: version,
/// marker `00`, flag `01`, inputs, outputs, one stack per input, lock time;
/// without witness data, the legacy serialization. The txid stays the hash
/// of the legacy serialization ([`Transaction::txid`]); the witness is not
/// interpreted here (no SegWit rules: scripts run as legacy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTx {
    pub tx: Transaction,
    /// Empty, or one stack per input of `tx` (at least one of them not empty).
    pub witness: Vec<WitnessStack>,
}

impl WitnessTx {
    /// Either serialization, as Core reads a transaction that may carry a
    /// witness: no inputs then a nonzero byte is the marker and flags; flag
    /// bit 1 means a witness follows (refused if every stack is empty), any
    /// other bit is refused. Every count is checked against the input left.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.i32()?;
        // 41 = minimal TxIn size (36 outpoint + 1 script len + 4 sequence).
        let n_in = r.count(41)?;
        let (mut flags, inputs, outputs) = if n_in == 0 {
            match r.u8()? {
                // No inputs and no outputs (the byte was the output count).
                0 => (0, Vec::new(), Vec::new()),
                flags => {
                    let n_in = r.count(41)?;
                    (flags, decode_inputs(r, n_in)?, decode_outputs(r)?)
                }
            }
        } else {
            (0, decode_inputs(r, n_in)?, decode_outputs(r)?)
        };
        let mut witness = Vec::new();
        if flags & 1 != 0 {
            flags ^= 1;
            witness.reserve(inputs.len());
            for _ in 0..inputs.len() {
                let n = r.count(1)?;
                let mut stack = Vec::with_capacity(n);
                for _ in 0..n {
                    stack.push(r.var_bytes()?);
                }
                witness.push(stack);
            }
            if witness.iter().all(Vec::is_empty) {
                return Err(DecodeError::SuperfluousWitness);
            }
        }
        if flags != 0 {
            return Err(DecodeError::UnknownOptionalData(flags));
        }
        let lock_time = r.u32()?;
        Ok(Self {
            tx: Transaction {
                version,
                inputs,
                outputs,
                lock_time,
            },
            witness,
        })
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let t = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(t)
    }
    /// Whether any input has a non-empty witness stack.
    pub fn has_witness(&self) -> bool {
        self.witness.iter().any(|s| !s.is_empty())
    }
    /// The transaction id: the legacy serialization's hash, witness excluded.
    pub fn txid(&self) -> [u8; 32] {
        self.tx.txid()
    }
    /// The witness transaction id (BIP 141): the hash of this serialization.
    pub fn wtxid(&self) -> [u8; 32] {
        crate::sha256d(&self.encode())
    }
}

impl Encode for WitnessTx {
    fn encode_to(&self, out: &mut Vec<u8>) {
        if !self.has_witness() {
            return self.tx.encode_to(out);
        }
        let t = &self.tx;
        out.extend_from_slice(&t.version.to_le_bytes());
        out.extend_from_slice(&[0x00, 0x01]);
        encode_body(t, out);
        for i in 0..t.inputs.len() {
            let stack = self.witness.get(i).map_or(&[][..], Vec::as_slice);
            write_compact_size(out, stack.len() as u64);
            for item in stack {
                write_bytes(out, item);
            }
        }
        out.extend_from_slice(&t.lock_time.to_le_bytes());
    }
}

impl Transaction {
    /// The legacy serialization only: a witness marker (no inputs, then
    /// `01`) is [`DecodeError::SegwitMarker`]; [`WitnessTx`] reads both.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let version = r.i32()?;
        // 41 = minimal TxIn size (36 outpoint + 1 script len + 4 sequence).
        let n_in = r.count(41)?;
        if n_in == 0 && r.buf.first() == Some(&1) {
            return Err(DecodeError::SegwitMarker);
        }
        let inputs = decode_inputs(r, n_in)?;
        let outputs = decode_outputs(r)?;
        let lock_time = r.u32()?;
        Ok(Self {
            version,
            inputs,
            outputs,
            lock_time,
        })
    }
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let t = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(t)
    }
    /// Transaction id (SHA-256d of the serialization).
    pub fn txid(&self) -> [u8; 32] {
        crate::sha256d(&self.encode())
    }
}

impl Encode for BlockHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.merkle_root);
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
    }
}

impl BlockHeader {
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            version: r.i32()?,
            prev: r.hash()?,
            merkle_root: r.hash()?,
            time: r.u32()?,
            bits: r.u32()?,
            nonce: r.u32()?,
        })
    }
    pub fn hash(&self) -> [u8; 32] {
        crate::sha256d(&self.encode())
    }
    pub fn hash_hex(&self) -> String {
        crate::hash_hex(&self.hash())
    }
}

impl Encode for Block {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        write_compact_size(out, self.txs.len() as u64);
        for t in &self.txs {
            t.encode_to(out);
        }
    }
}

impl Block {
    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let header = BlockHeader::decode_from(&mut r)?;
        // 60 = minimal legacy transaction size with one input and one output.
        let n = r.count(60)?;
        let mut txs = Vec::with_capacity(n);
        for i in 0..n {
            // Read as Core reads a block; witness data before SegWit (here:
            // always) is Core's "unexpected-witness", a mutated block.
            let t = WitnessTx::decode_from(&mut r)?;
            if t.has_witness() {
                return Err(DecodeError::UnexpectedWitness(i));
            }
            txs.push(t.tx);
        }
        r.finish()?;
        Ok(Self { header, txs })
    }
}
