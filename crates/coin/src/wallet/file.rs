//! The encrypted wallet file, bytes in and bytes out (the caller reads and
//! writes the disk, and brings the random salt and nonce).
//!
//! Layout, version 1 (integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `SVWALLET` |
//! | 1 | version (1) |
//! | 4, 4, 4 | argon2id memory (KiB), passes, lanes |
//! | 16 | argon2 salt |
//! | 24 | XChaCha20-Poly1305 nonce |
//! | 4 | ciphertext length *n* |
//! | *n* | ciphertext of the payload, with its 16-byte tag |
//! | 32 | SHA-256 of everything before it |
//!
//! The payload (plaintext) starts with [`PAYLOAD_V2`] and then holds the
//! network, the seed, the next receive and change indexes, the labels, the
//! mnemonic's entropy (for export), the scanned chain (the hashes of the
//! last scanned blocks and the tip's height) and the wallet's transactions.
//! A payload that starts with a network byte instead is the first layout
//! (seed, indexes and labels only), still read.
//!
//! The 65 header bytes are the AEAD's associated data, so the key
//! parameters, salt and nonce are authenticated with the payload. The
//! trailing SHA-256 is unkeyed: it tells a damaged or cut file
//! ([`WalletFileError::Corrupted`], [`WalletFileError::Truncated`]) from a
//! wrong password ([`WalletFileError::WrongPassword`]) without running the
//! key derivation; a deliberate edit that also recomputes it still fails the
//! AEAD, and then reads as a wrong password.
use std::collections::BTreeMap;
use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use super::keys::Network;
use super::secret::{MAX_SEED_LEN, Password, Seed};

/// The first eight bytes of every wallet file.
pub const MAGIC: [u8; 8] = *b"SVWALLET";
/// The format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 65;
const TAG_LEN: usize = 16;
const CHECKSUM_LEN: usize = 32;
/// Largest file accepted (and written).
pub const MAX_FILE_LEN: usize = 16 << 20;
/// Most labels a payload holds.
pub const MAX_LABELS: usize = 10_000;
/// The first plaintext byte of a payload in the current layout.
pub const PAYLOAD_V2: u8 = 0x82;
/// Most transactions a payload holds.
pub const MAX_TXS: usize = 50_000;
/// Most scanned block hashes kept (how deep a reorganisation the wallet follows).
pub const MAX_SCANNED: usize = 1_000;
/// Largest transaction kept.
pub const MAX_TX_BYTES: usize = 100_000;

/// One of the wallet's transactions as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTx {
    /// The serialized transaction.
    pub raw: Vec<u8>,
    /// Height and hash of the block it is in, `None` while unconfirmed.
    pub block: Option<(u32, [u8; 32])>,
    /// Position in the wallet's history (first seen first).
    pub seq: u64,
}

/// How far the wallet has scanned the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanned {
    /// Height of the last hash in `hashes` (meaningless when it is empty).
    pub tip_height: u32,
    /// Hashes of the last scanned blocks, oldest first, the tip last (at most [`MAX_SCANNED`]).
    pub hashes: Vec<[u8; 32]>,
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes over the memory.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// What `encrypt` uses: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// Most memory a file may ask for (256 MiB): a file cannot make us allocate more.
    pub const MAX_M_KIB: u32 = 256 * 1024;
    pub const MAX_T: u32 = 16;
    pub const MAX_P: u32 = 4;

    fn argon2(self) -> Result<Argon2<'static>, WalletFileError> {
        if self.m_kib > Self::MAX_M_KIB
            || !(1..=Self::MAX_T).contains(&self.t)
            || !(1..=Self::MAX_P).contains(&self.p)
        {
            return Err(WalletFileError::UnsupportedParams(self));
        }
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|_| WalletFileError::UnsupportedParams(self))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WalletFileError {
    #[error("not a servent wallet file")]
    NotAWalletFile,
    #[error("wallet file version {0}, this build reads version {VERSION}")]
    UnsupportedVersion(u8),
    #[error("wallet file truncated: {len} bytes of at least {need}")]
    Truncated { len: usize, need: usize },
    #[error("wallet file of {0} bytes is larger than any wallet ({MAX_FILE_LEN})")]
    TooLarge(usize),
    #[error("wallet file corrupted (checksum mismatch)")]
    Corrupted,
    #[error("wallet file asks for key derivation parameters out of range: {0:?}")]
    UnsupportedParams(KdfParams),
    #[error("wrong password (or the file was altered)")]
    WrongPassword,
    #[error("wallet contents malformed: {0}")]
    BadPayload(&'static str),
    #[error("wallet contents too large to save")]
    PayloadTooLarge,
}

/// What the wallet file holds.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletPayload {
    pub network: Network,
    /// The BIP 32 seed every key derives from.
    pub seed: Seed,
    /// Index of the next unused receiving address (external chain).
    pub next_receive: u32,
    /// Index of the next unused change address (internal chain).
    pub next_change: u32,
    /// User labels by address.
    pub labels: BTreeMap<String, String>,
    /// The BIP 39 entropy the seed was made from (for export), if the wallet was made from words.
    pub entropy: Option<Zeroizing<Vec<u8>>>,
    /// How far the chain was scanned.
    pub scanned: Scanned,
    /// The wallet's transactions.
    pub txs: Vec<StoredTx>,
}

impl fmt::Debug for WalletPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalletPayload")
            .field("network", &self.network)
            .field("seed", &self.seed)
            .field("next_receive", &self.next_receive)
            .field("next_change", &self.next_change)
            .field("labels", &self.labels.len())
            .field("entropy", &self.entropy.as_ref().map(|_| "<redacted>"))
            .field("scanned_height", &self.scanned.tip_height)
            .field("txs", &self.txs.len())
            .finish()
    }
}

impl WalletPayload {
    /// A new wallet's contents: no address handed out yet, no labels.
    pub fn new(network: Network, seed: Seed) -> Self {
        Self {
            network,
            seed,
            next_receive: 0,
            next_change: 0,
            labels: BTreeMap::new(),
            entropy: None,
            scanned: Scanned::default(),
            txs: Vec::new(),
        }
    }

    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, WalletFileError> {
        if self.labels.len() > MAX_LABELS {
            return Err(WalletFileError::PayloadTooLarge);
        }
        let seed = self.seed.as_bytes();
        if self.txs.len() > MAX_TXS || self.scanned.hashes.len() > MAX_SCANNED {
            return Err(WalletFileError::PayloadTooLarge);
        }
        let mut out = Zeroizing::new(Vec::with_capacity(64 + seed.len()));
        out.push(PAYLOAD_V2);
        out.push(self.network.to_byte());
        out.push(seed.len() as u8);
        out.extend_from_slice(seed);
        out.extend_from_slice(&self.next_receive.to_le_bytes());
        out.extend_from_slice(&self.next_change.to_le_bytes());
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        for (k, v) in &self.labels {
            for s in [k, v] {
                let len = u16::try_from(s.len()).map_err(|_| WalletFileError::PayloadTooLarge)?;
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            if out.len() > MAX_FILE_LEN {
                return Err(WalletFileError::PayloadTooLarge);
            }
        }
        match &self.entropy {
            Some(e) => {
                out.push(u8::try_from(e.len()).map_err(|_| WalletFileError::PayloadTooLarge)?);
                out.extend_from_slice(e);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.scanned.tip_height.to_le_bytes());
        out.extend_from_slice(&(self.scanned.hashes.len() as u32).to_le_bytes());
        for h in &self.scanned.hashes {
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&(self.txs.len() as u32).to_le_bytes());
        for t in &self.txs {
            if t.raw.len() > MAX_TX_BYTES {
                return Err(WalletFileError::PayloadTooLarge);
            }
            out.extend_from_slice(&(t.raw.len() as u32).to_le_bytes());
            out.extend_from_slice(&t.raw);
            match t.block {
                Some((h, hash)) => {
                    out.push(1);
                    out.extend_from_slice(&h.to_le_bytes());
                    out.extend_from_slice(&hash);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&t.seq.to_le_bytes());
            if out.len() > MAX_FILE_LEN {
                return Err(WalletFileError::PayloadTooLarge);
            }
        }
        Ok(out)
    }

    fn decode(b: &[u8]) -> Result<Self, WalletFileError> {
        let mut r = Reader(b);
        let first = r.u8()?;
        let v2 = first == PAYLOAD_V2;
        let net = if v2 { r.u8()? } else { first };
        let network = Network::from_byte(net).ok_or(WalletFileError::BadPayload("network"))?;
        let seed_len = usize::from(r.u8()?);
        if seed_len > MAX_SEED_LEN {
            return Err(WalletFileError::BadPayload("seed length"));
        }
        let seed =
            Seed::from_bytes(r.take(seed_len)?).ok_or(WalletFileError::BadPayload("seed"))?;
        let next_receive = r.u32()?;
        let next_change = r.u32()?;
        let n = r.u32()? as usize;
        if n > MAX_LABELS {
            return Err(WalletFileError::BadPayload("label count"));
        }
        let mut labels = BTreeMap::new();
        for _ in 0..n {
            let k = r.string()?;
            let v = r.string()?;
            if labels.insert(k, v).is_some() {
                return Err(WalletFileError::BadPayload("duplicate label"));
            }
        }
        let mut entropy = None;
        let mut scanned = Scanned::default();
        let mut txs = Vec::new();
        if v2 {
            let n = usize::from(r.u8()?);
            if n != 0 {
                if !matches!(n, 16 | 20 | 24 | 28 | 32) {
                    return Err(WalletFileError::BadPayload("entropy length"));
                }
                entropy = Some(Zeroizing::new(r.take(n)?.to_vec()));
            }
            scanned.tip_height = r.u32()?;
            let n = r.u32()? as usize;
            if n > MAX_SCANNED {
                return Err(WalletFileError::BadPayload("scanned block count"));
            }
            for _ in 0..n {
                let mut h = [0u8; 32];
                h.copy_from_slice(r.take(32)?);
                scanned.hashes.push(h);
            }
            if n > 0 && (scanned.tip_height as usize) + 1 < n {
                return Err(WalletFileError::BadPayload("scanned height"));
            }
            let n = r.u32()? as usize;
            if n > MAX_TXS {
                return Err(WalletFileError::BadPayload("transaction count"));
            }
            for _ in 0..n {
                let len = r.u32()? as usize;
                if len > MAX_TX_BYTES {
                    return Err(WalletFileError::BadPayload("transaction size"));
                }
                let raw = r.take(len)?.to_vec();
                let block = match r.u8()? {
                    0 => None,
                    1 => {
                        let h = r.u32()?;
                        let mut hash = [0u8; 32];
                        hash.copy_from_slice(r.take(32)?);
                        Some((h, hash))
                    }
                    _ => return Err(WalletFileError::BadPayload("transaction block flag")),
                };
                let b = r.take(8)?;
                let seq = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                txs.push(StoredTx { raw, block, seq });
            }
        }
        if !r.0.is_empty() {
            return Err(WalletFileError::BadPayload("trailing bytes"));
        }
        Ok(Self {
            network,
            seed,
            next_receive,
            next_change,
            labels,
            entropy,
            scanned,
            txs,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WalletFileError> {
        if self.0.len() < n {
            return Err(WalletFileError::BadPayload("ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WalletFileError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WalletFileError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Result<String, WalletFileError> {
        let b = self.take(2)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| WalletFileError::BadPayload("label not UTF-8"))
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn derive_key(
    params: KdfParams,
    password: &Password,
    salt: &[u8],
) -> Result<Zeroizing<[u8; 32]>, WalletFileError> {
    let mut key = Zeroizing::new([0u8; 32]);
    params
        .argon2()?
        .hash_password_into(password.as_bytes(), salt, key.as_mut())
        .map_err(|_| WalletFileError::UnsupportedParams(params))?;
    Ok(key)
}

/// Encrypts `payload` under `password` with [`KdfParams::DEFAULT`]; `salt`
/// and `nonce` must be fresh random bytes for every save.
pub fn encrypt(
    payload: &WalletPayload,
    password: &Password,
    salt: &[u8; 16],
    nonce: &[u8; 24],
) -> Result<Vec<u8>, WalletFileError> {
    encrypt_with(payload, password, salt, nonce, KdfParams::DEFAULT)
}

/// [`encrypt`] with chosen key derivation costs.
pub fn encrypt_with(
    payload: &WalletPayload,
    password: &Password,
    salt: &[u8; 16],
    nonce: &[u8; 24],
    params: KdfParams,
) -> Result<Vec<u8>, WalletFileError> {
    let plain = payload.encode()?;
    let ct_len = plain.len() + TAG_LEN;
    if HEADER_LEN + ct_len + CHECKSUM_LEN > MAX_FILE_LEN {
        return Err(WalletFileError::PayloadTooLarge);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + ct_len + CHECKSUM_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    for v in [params.m_kib, params.t, params.p] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&(ct_len as u32).to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    let key = derive_key(params, password, salt)?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &plain,
                aad: &out,
            },
        )
        .map_err(|_| WalletFileError::PayloadTooLarge)?;
    out.extend_from_slice(&ct);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Decrypts a wallet file. Every way a file can be wrong is an error: none
/// yields an empty or partial wallet.
pub fn decrypt(bytes: &[u8], password: &Password) -> Result<WalletPayload, WalletFileError> {
    let len = bytes.len();
    if len > MAX_FILE_LEN {
        return Err(WalletFileError::TooLarge(len));
    }
    let min = HEADER_LEN + TAG_LEN + CHECKSUM_LEN;
    if len < MAGIC.len() {
        return if MAGIC.starts_with(bytes) {
            Err(WalletFileError::Truncated { len, need: min })
        } else {
            Err(WalletFileError::NotAWalletFile)
        };
    }
    if bytes[..MAGIC.len()] != MAGIC {
        return Err(WalletFileError::NotAWalletFile);
    }
    if let Some(&v) = bytes.get(MAGIC.len()) {
        if v != VERSION {
            return Err(WalletFileError::UnsupportedVersion(v));
        }
    }
    if len < min {
        return Err(WalletFileError::Truncated { len, need: min });
    }
    let ct_len = le32(bytes, 61) as usize;
    let need = HEADER_LEN
        .saturating_add(ct_len)
        .saturating_add(CHECKSUM_LEN);
    let (body, sum) = bytes.split_at(len - CHECKSUM_LEN);
    if Sha256::digest(body)[..] != *sum {
        return Err(if len < need {
            WalletFileError::Truncated { len, need }
        } else {
            WalletFileError::Corrupted
        });
    }
    if need != len || ct_len < TAG_LEN {
        return Err(WalletFileError::Corrupted);
    }
    let params = KdfParams {
        m_kib: le32(bytes, 9),
        t: le32(bytes, 13),
        p: le32(bytes, 17),
    };
    let (header, ct) = body.split_at(HEADER_LEN);
    let key = derive_key(params, password, &header[21..37])?;
    let cipher = XChaCha20Poly1305::new(key.as_ref().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                XNonce::from_slice(&header[37..61]),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| WalletFileError::WrongPassword)?,
    );
    WalletPayload::decode(&plain)
}

#[cfg(test)]
mod payload_tests {
    use super::*;

    #[test]
    fn a_first_layout_payload_still_reads_with_nothing_scanned() {
        // network, seed length, seed, next receive, next change, no labels.
        let mut v1 = vec![2u8, 16];
        v1.extend_from_slice(&[5; 16]);
        v1.extend_from_slice(&3u32.to_le_bytes());
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&0u32.to_le_bytes());
        let p = WalletPayload::decode(&v1).expect("v1 payload");
        assert_eq!((p.next_receive, p.next_change), (3, 1));
        assert!(p.txs.is_empty() && p.scanned.hashes.is_empty() && p.entropy.is_none());
        // The same fields in the current layout, then its extensions, round-trip.
        let mut p2 = p.clone();
        p2.entropy = Some(Zeroizing::new(vec![1; 32]));
        p2.scanned = Scanned {
            tip_height: 7,
            hashes: vec![[7; 32], [8; 32]],
        };
        p2.txs.push(StoredTx {
            raw: vec![1, 2, 3],
            block: Some((7, [8; 32])),
            seq: 4,
        });
        let enc = p2.encode().expect("encode");
        assert_eq!(enc[0], PAYLOAD_V2);
        assert_eq!(WalletPayload::decode(&enc), Ok(p2));
        // Cut anywhere, it is an error, not a shorter wallet.
        for cut in 0..enc.len() {
            assert!(WalletPayload::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
    }
}
