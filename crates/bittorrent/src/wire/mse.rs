//! Message Stream Encryption (MSE, also called Protocol Encryption), as Vuze, libtorrent and
//! Transmission speak it: a Diffie–Hellman exchange that hides the BitTorrent handshake and,
//! when both sides choose it, RC4 over the rest of the connection.
//!
//! # The exchange (A connects, B accepts)
//! ```text
//! 1 A→B  Ya, PadA
//! 2 B→A  Yb, PadB
//! 3 A→B  HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!        ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//! 4 B→A  ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//! 5 A→B  ENCRYPT2(payload)
//! ```
//! Y = G^X mod P with the well-known 768-bit prime P, G = 2 and 160-bit private keys X; Y and
//! the shared secret S are 96 bytes big-endian. SKEY is the torrent's info-hash. HASH is
//! SHA-1. A encrypts with RC4 keyed HASH('keyA', S, SKEY), B with HASH('keyB', S, SKEY); both
//! RC4 streams drop their first 1024 bytes. VC is 8 zero bytes; crypto_provide/crypto_select
//! are 32-bit big-endian bitmasks (plaintext 0x01, RC4 0x02), the lengths 16-bit big-endian;
//! pads are 0..=512 random bytes. PadA and PadB are unencrypted and of unknown length, so B
//! finds the start of step 3 by searching for HASH('req1', S), and A finds step 4 by
//! searching for ENCRYPT(VC) (both searches are bounded by the largest pad: a peer that does
//! not produce the marker in time is refused). IA (A's initial payload, usually its BitTorrent
//! handshake) is always RC4-encrypted; ENCRYPT2 is RC4 (continuing the same streams) when RC4
//! was selected, plain bytes when plaintext was.
//!
//! # How a driver uses it
//! Sans-IO: each side is a state machine fed the bytes that arrived and appending the bytes
//! to send to a caller-owned buffer.
//! - Outgoing: `Initiator::new(info_hash, &cfg, &mut rng, &bt_handshake, &mut out)`, send
//!   `out`; then for each read, `initiator.handle_input(&bytes, &mut out)`, send `out`, until
//!   it returns `Ok(Some(established))`.
//! - Incoming: [`classify`] the first bytes. [`Incoming::Plaintext`] is an ordinary
//!   BitTorrent handshake; for [`Incoming::Encrypted`] make a [`Responder`] with the
//!   info-hashes we serve and feed it every byte received so far, the same way.
//! - [`Established`] holds the [`MseStream`] (call [`MseStream::encrypt`] on everything sent
//!   and [`MseStream::decrypt`] on everything received from then on; both are no-ops when
//!   plaintext was selected), the torrent, the method chosen, and `received`: the plaintext of
//!   bytes already read past the handshake (for the responder: A's IA first), to be handled
//!   as the start of the BitTorrent stream.
//! - Any `Err` means: close the connection. The driver also bounds the whole handshake in
//!   time (libtorrent and Transmission allow a few tens of seconds).
//!
//! Nothing here reads a clock or draws unseeded randomness: private keys and pads come from
//! the caller's [`Rng`] (or are handed in, for golden vectors). Buffers are bounded by the
//! protocol's own limits (pads of at most 512 bytes, IA of at most 64 KiB).

use num_bigint::BigUint;
use servent_core::Rng;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::metainfo::InfoHash;

/// The 768-bit prime of the exchange (the Oakley group 1 prime as Vuze/libtorrent use it).
pub const P: [u8; 96] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xC9, 0x0F, 0xDA, 0xA2, 0x21, 0x68, 0xC2, 0x34,
    0xC4, 0xC6, 0x62, 0x8B, 0x80, 0xDC, 0x1C, 0xD1, 0x29, 0x02, 0x4E, 0x08, 0x8A, 0x67, 0xCC, 0x74,
    0x02, 0x0B, 0xBE, 0xA6, 0x3B, 0x13, 0x9B, 0x22, 0x51, 0x4A, 0x08, 0x79, 0x8E, 0x34, 0x04, 0xDD,
    0xEF, 0x95, 0x19, 0xB3, 0xCD, 0x3A, 0x43, 0x1B, 0x30, 0x2B, 0x0A, 0x6D, 0xF2, 0x5F, 0x14, 0x37,
    0x4F, 0xE1, 0x35, 0x6D, 0x6D, 0x51, 0xC2, 0x45, 0xE4, 0x85, 0xB5, 0x76, 0x62, 0x5E, 0x7E, 0xC6,
    0xF4, 0x4C, 0x42, 0xE9, 0xA6, 0x3A, 0x36, 0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, 0x05, 0x63,
];
/// Bytes of a public key or shared secret.
pub const KEY_LEN: usize = 96;
/// Bytes of a private key.
pub const PRIVATE_KEY_LEN: usize = 20;
/// The longest pad either side may send.
pub const MAX_PAD: usize = 512;
/// The verification constant.
pub const VC: [u8; 8] = [0; 8];
/// `crypto_provide`/`crypto_select` bit for plaintext after the handshake.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// `crypto_provide`/`crypto_select` bit for RC4.
pub const CRYPTO_RC4: u32 = 0x02;
/// Bytes of keystream each RC4 stream drops before use.
pub const RC4_DISCARD: usize = 1024;
/// The first bytes of a plaintext BitTorrent handshake.
pub const BT_PROTOCOL_PREFIX: &[u8; 20] = b"\x13BitTorrent protocol";

/// Why a handshake failed; the connection is to be closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MseError {
    /// The peer's public key is not in 2 ..= P-2.
    #[error("mse: invalid Diffie-Hellman public key")]
    BadPublicKey,
    /// The synchronisation marker (HASH('req1', S) or ENCRYPT(VC)) did not come within the
    /// largest pad.
    #[error("mse: synchronisation marker not found within {0} bytes")]
    SyncNotFound(usize),
    /// The obfuscated info-hash matches none of ours.
    #[error("mse: the peer asks for a torrent we do not serve")]
    UnknownTorrent,
    /// The decrypted verification constant is not zero (wrong key or not MSE).
    #[error("mse: verification constant mismatch")]
    BadVc,
    /// A pad longer than 512 bytes.
    #[error("mse: pad of {0} bytes")]
    PadTooLong(usize),
    /// The peer offers no method we allow.
    #[error("mse: no common method (peer provides {provided:#x}, we allow {allowed:#x})")]
    NoCommonMethod {
        /// The peer's crypto_provide.
        provided: u32,
        /// Our allowed set.
        allowed: u32,
    },
    /// The responder selected zero or several methods, or one we did not provide.
    #[error("mse: invalid crypto_select {0:#x}")]
    BadSelect(u32),
    /// The initial payload handed to [`Initiator::new`] is longer than 65535 bytes.
    #[error("mse: initial payload of {0} bytes")]
    IaTooLong(usize),
    /// Input after the handshake finished or failed.
    #[error("mse: handshake already finished")]
    Finished,
}

/// The method in use after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crypto {
    /// Payload in the clear (only the handshake was obfuscated).
    Plaintext,
    /// Payload RC4-encrypted.
    Rc4,
}

impl Crypto {
    /// Its `crypto_select` bit.
    pub fn bit(self) -> u32 {
        match self {
            Crypto::Plaintext => CRYPTO_PLAINTEXT,
            Crypto::Rc4 => CRYPTO_RC4,
        }
    }
}

/// What we offer (initiator) or accept (responder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MseConfig {
    /// Methods allowed: a mask of [`CRYPTO_PLAINTEXT`] and [`CRYPTO_RC4`] (the initiator's
    /// crypto_provide).
    pub allowed: u32,
    /// When responding to a peer that provides both, select plaintext instead of RC4.
    pub prefer_plaintext: bool,
    /// The longest pad we send (PadA/PadB/PadC/PadD are each 0..=this, at most 512).
    pub max_pad: usize,
}

impl Default for MseConfig {
    /// Both methods, RC4 preferred, pads up to 512 bytes (Transmission's "prefer encryption").
    fn default() -> MseConfig {
        MseConfig {
            allowed: CRYPTO_PLAINTEXT | CRYPTO_RC4,
            prefer_plaintext: false,
            max_pad: MAX_PAD,
        }
    }
}

/// What the first bytes of an incoming connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A plaintext BitTorrent handshake (`19` then `BitTorrent protocol`).
    Plaintext,
    /// Anything else: an MSE handshake (or garbage, which the [`Responder`] will refuse).
    Encrypted,
    /// Too few bytes to tell (a prefix of the plaintext handshake so far).
    NeedMore,
}

/// Tells a plaintext BitTorrent handshake from MSE by the first bytes received.
pub fn classify(first: &[u8]) -> Incoming {
    let n = first.len().min(BT_PROTOCOL_PREFIX.len());
    if first.get(..n) != BT_PROTOCOL_PREFIX.get(..n) {
        Incoming::Encrypted
    } else if n < BT_PROTOCOL_PREFIX.len() {
        Incoming::NeedMore
    } else {
        Incoming::Plaintext
    }
}

// ---------------------------------------------------------------------------------------
// RC4

/// The RC4 stream cipher (encryption and decryption are the same operation).
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4 { .. }")
    }
}

impl Rc4 {
    /// Key schedule (an empty key is treated as one zero byte).
    pub fn new(key: &[u8]) -> Rc4 {
        let key = if key.is_empty() { &[0u8][..] } else { key };
        let mut s = [0u8; 256];
        for (i, v) in s.iter_mut().enumerate() {
            *v = i as u8;
        }
        let mut j: u8 = 0;
        for i in 0..256 {
            let k = key.get(i % key.len()).copied().unwrap_or(0);
            j = j.wrapping_add(s[i]).wrapping_add(k);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    fn next(&mut self) -> u8 {
        self.i = self.i.wrapping_add(1);
        let si = self.s[usize::from(self.i)];
        self.j = self.j.wrapping_add(si);
        self.s.swap(usize::from(self.i), usize::from(self.j));
        let t = self.s[usize::from(self.i)].wrapping_add(self.s[usize::from(self.j)]);
        self.s[usize::from(t)]
    }

    /// XORs the keystream into `buf`.
    pub fn apply(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b ^= self.next();
        }
    }

    /// Drops `n` bytes of keystream.
    pub fn discard(&mut self, n: usize) {
        for _ in 0..n {
            self.next();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Diffie–Hellman

/// A Diffie–Hellman key pair over [`P`].
#[derive(Clone)]
pub struct DhKey {
    private: BigUint,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhKey")
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

fn prime() -> BigUint {
    BigUint::from_bytes_be(&P)
}

fn to_key_bytes(n: &BigUint) -> [u8; KEY_LEN] {
    let b = n.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    let skip = KEY_LEN.saturating_sub(b.len());
    if let Some(dst) = out.get_mut(skip..) {
        let src = b.get(b.len().saturating_sub(KEY_LEN)..).unwrap_or_default();
        dst.copy_from_slice(src);
    }
    out
}

impl DhKey {
    /// A fresh 160-bit private key from the caller's RNG.
    pub fn generate(rng: &mut Rng) -> DhKey {
        let mut x = [0u8; PRIVATE_KEY_LEN];
        for chunk in x.chunks_mut(8) {
            let r = rng.next_u64().to_be_bytes();
            chunk.copy_from_slice(r.get(..chunk.len()).unwrap_or_default());
        }
        DhKey::from_private(x)
    }

    /// The key pair for a given private key (big-endian; zero is replaced by one).
    pub fn from_private(x: [u8; PRIVATE_KEY_LEN]) -> DhKey {
        let mut private = BigUint::from_bytes_be(&x);
        if private == BigUint::ZERO {
            private = BigUint::from(1u8);
        }
        let public = to_key_bytes(&BigUint::from(2u8).modpow(&private, &prime()));
        DhKey { private, public }
    }

    /// Our public key Y, 96 bytes big-endian.
    pub fn public(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    /// The shared secret S from the peer's public key (refused unless 2 <= Y <= P-2).
    pub fn shared_secret(&self, peer_public: &[u8; KEY_LEN]) -> Result<[u8; KEY_LEN], MseError> {
        let p = prime();
        let y = BigUint::from_bytes_be(peer_public);
        if y < BigUint::from(2u8) || y >= &p - 1u8 {
            return Err(MseError::BadPublicKey);
        }
        Ok(to_key_bytes(&y.modpow(&self.private, &p)))
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn rc4_for(name: &[u8], s: &[u8; KEY_LEN], skey: &InfoHash) -> Rc4 {
    let mut r = Rc4::new(&hash(&[name, s, &skey.0]));
    r.discard(RC4_DISCARD);
    r
}

fn xor20(a: [u8; 20], b: [u8; 20]) -> [u8; 20] {
    let mut o = a;
    for (x, y) in o.iter_mut().zip(b) {
        *x ^= y;
    }
    o
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn random_pad(rng: &mut Rng, max: usize) -> Vec<u8> {
    let len = rng.below(max.min(MAX_PAD) as u64 + 1) as usize;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend(rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------------------
// The established stream

/// The connection after the handshake: RC4 both ways, or plaintext passthrough.
#[derive(Clone, Debug)]
pub struct MseStream {
    enc: Option<Rc4>,
    dec: Option<Rc4>,
}

impl MseStream {
    /// A stream that changes nothing (plaintext connections).
    pub fn plaintext() -> MseStream {
        MseStream {
            enc: None,
            dec: None,
        }
    }

    /// The method in use.
    pub fn crypto(&self) -> Crypto {
        if self.enc.is_some() {
            Crypto::Rc4
        } else {
            Crypto::Plaintext
        }
    }

    /// Encrypts bytes about to be sent, in place.
    pub fn encrypt(&mut self, buf: &mut [u8]) {
        if let Some(r) = &mut self.enc {
            r.apply(buf);
        }
    }

    /// Decrypts bytes just received, in place.
    pub fn decrypt(&mut self, buf: &mut [u8]) {
        if let Some(r) = &mut self.dec {
            r.apply(buf);
        }
    }
}

/// A finished handshake.
#[derive(Debug)]
pub struct Established {
    /// The stream for everything sent and received from now on.
    pub stream: MseStream,
    /// The torrent (SKEY).
    pub info_hash: InfoHash,
    /// The method selected.
    pub crypto: Crypto,
    /// Plaintext of the bytes already received past the handshake (the responder gets the
    /// initiator's IA first), to be handled as the start of the BitTorrent stream.
    pub received: Vec<u8>,
}

// ---------------------------------------------------------------------------------------
// Initiator

#[derive(Debug)]
enum IState {
    WaitYb,
    WaitVc {
        dec: Rc4,
        enc: Rc4,
        marker: [u8; 8],
    },
    WaitSelect {
        dec: Rc4,
        enc: Rc4,
    },
    WaitPadD {
        dec: Rc4,
        enc: Rc4,
        select: Crypto,
        pad: usize,
    },
    Done,
}

/// The connecting side (A). See the module docs.
#[derive(Debug)]
pub struct Initiator {
    state: IState,
    key: DhKey,
    info_hash: InfoHash,
    provide: u32,
    pad_c: Vec<u8>,
    ia: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
}

impl Initiator {
    /// Starts a handshake for `info_hash` with initial payload `ia` (usually our BitTorrent
    /// handshake; may be empty), appending step 1 (Ya, PadA) to `out`.
    pub fn new(
        info_hash: InfoHash,
        cfg: &MseConfig,
        rng: &mut Rng,
        ia: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Initiator, MseError> {
        let key = DhKey::generate(rng);
        let pad_a = random_pad(rng, cfg.max_pad);
        let pad_c = random_pad(rng, cfg.max_pad);
        Initiator::with_parts(info_hash, cfg.allowed, key, &pad_a, &pad_c, ia, out)
    }

    /// Like [`Initiator::new`] with the key and pads given (for golden vectors and tests).
    /// Pads are cut to 512 bytes.
    pub fn with_parts(
        info_hash: InfoHash,
        provide: u32,
        key: DhKey,
        pad_a: &[u8],
        pad_c: &[u8],
        ia: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Initiator, MseError> {
        if ia.len() > usize::from(u16::MAX) {
            return Err(MseError::IaTooLong(ia.len()));
        }
        out.extend_from_slice(key.public());
        out.extend_from_slice(pad_a.get(..pad_a.len().min(MAX_PAD)).unwrap_or_default());
        Ok(Initiator {
            state: IState::WaitYb,
            key,
            info_hash,
            provide: provide & (CRYPTO_PLAINTEXT | CRYPTO_RC4),
            pad_c: pad_c
                .get(..pad_c.len().min(MAX_PAD))
                .unwrap_or_default()
                .to_vec(),
            ia: ia.to_vec(),
            buf: Vec::new(),
            pos: 0,
        })
    }

    /// Feeds received bytes; appends what to send to `out`. `Ok(None)`: more input is
    /// needed; `Ok(Some(_))`: done (further calls are errors); `Err`: close the connection.
    pub fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Established>, MseError> {
        if matches!(self.state, IState::Done) {
            return Err(MseError::Finished);
        }
        self.buf.extend_from_slice(input);
        let r = self.advance(out);
        if r.is_err() {
            self.state = IState::Done;
        }
        r
    }

    fn advance(&mut self, out: &mut Vec<u8>) -> Result<Option<Established>, MseError> {
        loop {
            let avail = self.buf.get(self.pos..).unwrap_or_default();
            match std::mem::replace(&mut self.state, IState::Done) {
                IState::WaitYb => {
                    let Some(yb) = avail.get(..KEY_LEN) else {
                        self.state = IState::WaitYb;
                        return Ok(None);
                    };
                    let mut y = [0u8; KEY_LEN];
                    y.copy_from_slice(yb);
                    let s = self.key.shared_secret(&y)?;
                    self.pos += KEY_LEN;
                    let skey = self.info_hash;
                    out.extend_from_slice(&hash(&[b"req1", &s]));
                    out.extend_from_slice(&xor20(hash(&[b"req2", &skey.0]), hash(&[b"req3", &s])));
                    let mut enc = rc4_for(b"keyA", &s, &skey);
                    let start = out.len();
                    out.extend_from_slice(&VC);
                    out.extend_from_slice(&self.provide.to_be_bytes());
                    out.extend_from_slice(&(self.pad_c.len() as u16).to_be_bytes());
                    out.extend_from_slice(&self.pad_c);
                    out.extend_from_slice(&(self.ia.len() as u16).to_be_bytes());
                    out.extend_from_slice(&self.ia);
                    if let Some(tail) = out.get_mut(start..) {
                        enc.apply(tail);
                    }
                    let dec = rc4_for(b"keyB", &s, &skey);
                    let mut marker = VC;
                    dec.clone().apply(&mut marker);
                    self.state = IState::WaitVc { dec, enc, marker };
                }
                IState::WaitVc {
                    mut dec,
                    enc,
                    marker,
                } => {
                    // PadB (0..=512 bytes) comes before ENCRYPT(VC).
                    let window = avail.get(..(MAX_PAD + VC.len()).min(avail.len()));
                    match window.and_then(|w| find(w, &marker)) {
                        Some(k) => {
                            dec.discard(VC.len());
                            self.pos += k + VC.len();
                            self.state = IState::WaitSelect { dec, enc };
                        }
                        None if avail.len() >= MAX_PAD + VC.len() => {
                            return Err(MseError::SyncNotFound(MAX_PAD + VC.len()));
                        }
                        None => {
                            self.state = IState::WaitVc { dec, enc, marker };
                            return Ok(None);
                        }
                    }
                }
                IState::WaitSelect { mut dec, enc } => {
                    let Some(b) = avail.get(..6) else {
                        self.state = IState::WaitSelect { dec, enc };
                        return Ok(None);
                    };
                    let mut h = [0u8; 6];
                    h.copy_from_slice(b);
                    dec.apply(&mut h);
                    self.pos += 6;
                    let select = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                    let pad = usize::from(u16::from_be_bytes([h[4], h[5]]));
                    let chosen = match select {
                        CRYPTO_PLAINTEXT => Crypto::Plaintext,
                        CRYPTO_RC4 => Crypto::Rc4,
                        _ => return Err(MseError::BadSelect(select)),
                    };
                    if self.provide & select == 0 {
                        return Err(MseError::BadSelect(select));
                    }
                    if pad > MAX_PAD {
                        return Err(MseError::PadTooLong(pad));
                    }
                    self.state = IState::WaitPadD {
                        dec,
                        enc,
                        select: chosen,
                        pad,
                    };
                }
                IState::WaitPadD {
                    mut dec,
                    enc,
                    select,
                    pad,
                } => {
                    let Some(p) = avail.get(..pad) else {
                        self.state = IState::WaitPadD {
                            dec,
                            enc,
                            select,
                            pad,
                        };
                        return Ok(None);
                    };
                    let mut scratch = p.to_vec();
                    dec.apply(&mut scratch);
                    self.pos += pad;
                    let mut received = self.buf.get(self.pos..).unwrap_or_default().to_vec();
                    let mut stream = match select {
                        Crypto::Rc4 => MseStream {
                            enc: Some(enc),
                            dec: Some(dec),
                        },
                        Crypto::Plaintext => MseStream::plaintext(),
                    };
                    stream.decrypt(&mut received);
                    self.buf = Vec::new();
                    return Ok(Some(Established {
                        stream,
                        info_hash: self.info_hash,
                        crypto: select,
                        received,
                    }));
                }
                IState::Done => return Err(MseError::Finished),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Responder

#[derive(Debug)]
enum RState {
    WaitYa,
    WaitReq1 {
        s: [u8; KEY_LEN],
        marker: [u8; 20],
    },
    WaitReq2 {
        s: [u8; KEY_LEN],
    },
    WaitProvide {
        dec: Rc4,
        enc: Rc4,
        skey: InfoHash,
    },
    WaitPadC {
        dec: Rc4,
        enc: Rc4,
        skey: InfoHash,
        provide: u32,
        pad: usize,
    },
    WaitIa {
        dec: Rc4,
        enc: Rc4,
        skey: InfoHash,
        provide: u32,
        ia: usize,
    },
    Done,
}

/// The accepting side (B). See the module docs.
#[derive(Debug)]
pub struct Responder {
    state: RState,
    key: DhKey,
    allowed: u32,
    prefer_plaintext: bool,
    pad_b: Vec<u8>,
    pad_d: Vec<u8>,
    /// HASH('req2', info-hash) of every torrent we serve.
    req2: Vec<([u8; 20], InfoHash)>,
    buf: Vec<u8>,
    pos: usize,
}

impl Responder {
    /// A responder for a connection whose first bytes [`classify`] called encrypted; it
    /// accepts the torrents in `info_hashes`.
    pub fn new(cfg: &MseConfig, rng: &mut Rng, info_hashes: &[InfoHash]) -> Responder {
        let key = DhKey::generate(rng);
        let pad_b = random_pad(rng, cfg.max_pad);
        let pad_d = random_pad(rng, cfg.max_pad);
        Responder::with_parts(cfg, key, &pad_b, &pad_d, info_hashes)
    }

    /// Like [`Responder::new`] with the key and pads given (for golden vectors and tests).
    pub fn with_parts(
        cfg: &MseConfig,
        key: DhKey,
        pad_b: &[u8],
        pad_d: &[u8],
        info_hashes: &[InfoHash],
    ) -> Responder {
        let cut = |p: &[u8]| p.get(..p.len().min(MAX_PAD)).unwrap_or_default().to_vec();
        Responder {
            state: RState::WaitYa,
            key,
            allowed: cfg.allowed & (CRYPTO_PLAINTEXT | CRYPTO_RC4),
            prefer_plaintext: cfg.prefer_plaintext,
            pad_b: cut(pad_b),
            pad_d: cut(pad_d),
            req2: info_hashes
                .iter()
                .map(|h| (hash(&[b"req2", &h.0]), *h))
                .collect(),
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Feeds received bytes; appends what to send to `out`. Same contract as
    /// [`Initiator::handle_input`].
    pub fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Established>, MseError> {
        if matches!(self.state, RState::Done) {
            return Err(MseError::Finished);
        }
        self.buf.extend_from_slice(input);
        let r = self.advance(out);
        if r.is_err() {
            self.state = RState::Done;
        }
        r
    }

    fn select(&self, provide: u32) -> Result<Crypto, MseError> {
        let common = provide & self.allowed;
        let both = CRYPTO_PLAINTEXT | CRYPTO_RC4;
        Ok(match common {
            c if c & both == both => {
                if self.prefer_plaintext {
                    Crypto::Plaintext
                } else {
                    Crypto::Rc4
                }
            }
            c if c & CRYPTO_RC4 != 0 => Crypto::Rc4,
            c if c & CRYPTO_PLAINTEXT != 0 => Crypto::Plaintext,
            _ => {
                return Err(MseError::NoCommonMethod {
                    provided: provide,
                    allowed: self.allowed,
                });
            }
        })
    }

    fn advance(&mut self, out: &mut Vec<u8>) -> Result<Option<Established>, MseError> {
        loop {
            let avail = self.buf.get(self.pos..).unwrap_or_default();
            match std::mem::replace(&mut self.state, RState::Done) {
                RState::WaitYa => {
                    let Some(ya) = avail.get(..KEY_LEN) else {
                        self.state = RState::WaitYa;
                        return Ok(None);
                    };
                    let mut y = [0u8; KEY_LEN];
                    y.copy_from_slice(ya);
                    let s = self.key.shared_secret(&y)?;
                    self.pos += KEY_LEN;
                    out.extend_from_slice(self.key.public());
                    out.extend_from_slice(&self.pad_b);
                    self.state = RState::WaitReq1 {
                        s,
                        marker: hash(&[b"req1", &s]),
                    };
                }
                RState::WaitReq1 { s, marker } => {
                    // PadA (0..=512 bytes) comes before HASH('req1', S).
                    let window = avail.get(..(MAX_PAD + 20).min(avail.len()));
                    match window.and_then(|w| find(w, &marker)) {
                        Some(k) => {
                            self.pos += k + 20;
                            self.state = RState::WaitReq2 { s };
                        }
                        None if avail.len() >= MAX_PAD + 20 => {
                            return Err(MseError::SyncNotFound(KEY_LEN + MAX_PAD + 20));
                        }
                        None => {
                            self.state = RState::WaitReq1 { s, marker };
                            return Ok(None);
                        }
                    }
                }
                RState::WaitReq2 { s } => {
                    let Some(b) = avail.get(..20) else {
                        self.state = RState::WaitReq2 { s };
                        return Ok(None);
                    };
                    let mut x = [0u8; 20];
                    x.copy_from_slice(b);
                    let want = xor20(x, hash(&[b"req3", &s]));
                    let skey = self
                        .req2
                        .iter()
                        .find(|(h, _)| *h == want)
                        .map(|(_, ih)| *ih)
                        .ok_or(MseError::UnknownTorrent)?;
                    self.pos += 20;
                    self.state = RState::WaitProvide {
                        dec: rc4_for(b"keyA", &s, &skey),
                        enc: rc4_for(b"keyB", &s, &skey),
                        skey,
                    };
                }
                RState::WaitProvide { mut dec, enc, skey } => {
                    let Some(b) = avail.get(..14) else {
                        self.state = RState::WaitProvide { dec, enc, skey };
                        return Ok(None);
                    };
                    let mut h = [0u8; 14];
                    h.copy_from_slice(b);
                    dec.apply(&mut h);
                    if h[..8] != VC {
                        return Err(MseError::BadVc);
                    }
                    self.pos += 14;
                    let provide = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                    let pad = usize::from(u16::from_be_bytes([h[12], h[13]]));
                    if pad > MAX_PAD {
                        return Err(MseError::PadTooLong(pad));
                    }
                    self.state = RState::WaitPadC {
                        dec,
                        enc,
                        skey,
                        provide,
                        pad,
                    };
                }
                RState::WaitPadC {
                    mut dec,
                    enc,
                    skey,
                    provide,
                    pad,
                } => {
                    let Some(b) = avail.get(..pad + 2) else {
                        self.state = RState::WaitPadC {
                            dec,
                            enc,
                            skey,
                            provide,
                            pad,
                        };
                        return Ok(None);
                    };
                    let mut h = b.to_vec();
                    dec.apply(&mut h);
                    self.pos += pad + 2;
                    let ia = match h.get(pad..pad + 2) {
                        Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                        _ => return Err(MseError::Finished),
                    };
                    self.state = RState::WaitIa {
                        dec,
                        enc,
                        skey,
                        provide,
                        ia,
                    };
                }
                RState::WaitIa {
                    mut dec,
                    mut enc,
                    skey,
                    provide,
                    ia,
                } => {
                    if avail.len() < ia {
                        self.state = RState::WaitIa {
                            dec,
                            enc,
                            skey,
                            provide,
                            ia,
                        };
                        return Ok(None);
                    }
                    let select = self.select(provide)?;
                    let mut received = avail.to_vec();
                    // IA is always RC4; what follows it is RC4 only if RC4 was selected.
                    let (ia_part, rest) = received.split_at_mut(ia);
                    dec.apply(ia_part);
                    let mut stream = match select {
                        Crypto::Rc4 => MseStream {
                            enc: None,
                            dec: Some(dec),
                        },
                        Crypto::Plaintext => MseStream::plaintext(),
                    };
                    stream.decrypt(rest);
                    let start = out.len();
                    out.extend_from_slice(&VC);
                    out.extend_from_slice(&select.bit().to_be_bytes());
                    out.extend_from_slice(&(self.pad_d.len() as u16).to_be_bytes());
                    out.extend_from_slice(&self.pad_d);
                    if let Some(tail) = out.get_mut(start..) {
                        enc.apply(tail);
                    }
                    if select == Crypto::Rc4 {
                        stream.enc = Some(enc);
                    }
                    self.buf = Vec::new();
                    return Ok(Some(Established {
                        stream,
                        info_hash: skey,
                        crypto: select,
                        received,
                    }));
                }
                RState::Done => return Err(MseError::Finished),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_tells_plaintext_from_mse() {
        assert_eq!(classify(b""), Incoming::NeedMore);
        assert_eq!(classify(b"\x13BitTorr"), Incoming::NeedMore);
        assert_eq!(
            classify(b"\x13BitTorrent protocol\0\0"),
            Incoming::Plaintext
        );
        assert_eq!(classify(b"\x13BitTorrenX"), Incoming::Encrypted);
        assert_eq!(classify(&[0x80; 96]), Incoming::Encrypted);
    }

    #[test]
    fn public_keys_outside_the_group_are_refused() {
        let k = DhKey::from_private([7; 20]);
        assert_eq!(k.shared_secret(&[0; 96]), Err(MseError::BadPublicKey));
        let mut one = [0; 96];
        one[95] = 1;
        assert_eq!(k.shared_secret(&one), Err(MseError::BadPublicKey));
        assert_eq!(k.shared_secret(&P), Err(MseError::BadPublicKey));
        assert_eq!(k.shared_secret(&[0xFF; 96]), Err(MseError::BadPublicKey));
    }
}
