//! BIP 32 hierarchical deterministic keys: the master key from a seed,
//! private (hardened and normal) and public child derivation, paths such as
//! `m/44'/1'/0'/0/5`, and the 78-byte xprv/xpub (tprv/tpub) serialization.
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use secp256k1::{PublicKey, Scalar, Secp256k1, SecretKey};
use sha2::Sha512;
use thiserror::Error;
use zeroize::Zeroizing;

use super::base58::{self, Base58Error};
use super::keys::{Address, Network, PrivateKey, hash160};

/// Index bit of a hardened child.
pub const HARDENED: u32 = 0x8000_0000;

const XPRV: [u8; 4] = [0x04, 0x88, 0xad, 0xe4];
const XPUB: [u8; 4] = [0x04, 0x88, 0xb2, 0x1e];
const TPRV: [u8; 4] = [0x04, 0x35, 0x83, 0x94];
const TPUB: [u8; 4] = [0x04, 0x35, 0x87, 0xcf];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Bip32Error {
    #[error("a seed holds 16 to 64 bytes, this one {0}")]
    BadSeedLength(usize),
    #[error("the derived key is invalid (probability below 2^-127): use the next index")]
    InvalidChild,
    #[error("a hardened child cannot be derived from a public key")]
    HardenedFromPublic,
    #[error("depth 255 reached")]
    TooDeep,
    #[error(transparent)]
    Base58(#[from] Base58Error),
    #[error("an extended key holds 78 bytes, this one {0}")]
    BadLength(usize),
    #[error("unknown extended key version {0:02x?}")]
    UnknownVersion([u8; 4]),
    #[error("an extended {0} key was expected")]
    WrongKind(&'static str),
    #[error("invalid key material in an extended key")]
    InvalidKey,
    #[error("a depth-0 key with a parent fingerprint or child number")]
    BadMaster,
    #[error("bad derivation path: {0}")]
    BadPath(String),
}

fn hmac512(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let mut mac = <Hmac<Sha512>>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    Zeroizing::new(mac.finalize().into_bytes().into())
}

fn split(i: &[u8; 64]) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let mut il = Zeroizing::new([0u8; 32]);
    let mut ir = [0u8; 32];
    il.copy_from_slice(&i[..32]);
    ir.copy_from_slice(&i[32..]);
    (il, ir)
}

/// An extended private key. `Debug` prints no key material; secret bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtendedPrivKey {
    pub network: Network,
    pub depth: u8,
    pub parent_fingerprint: [u8; 4],
    pub child_number: u32,
    chain_code: Zeroizing<[u8; 32]>,
    secret: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for ExtendedPrivKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExtendedPrivKey(<redacted>)")
    }
}

/// An extended public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedPubKey {
    pub network: Network,
    pub depth: u8,
    pub parent_fingerprint: [u8; 4],
    pub child_number: u32,
    pub chain_code: [u8; 32],
    pub public_key: PublicKey,
}

impl ExtendedPrivKey {
    /// The master key of a 16..=64-byte seed (HMAC-SHA512 keyed "Bitcoin seed").
    pub fn master(seed: &[u8], network: Network) -> Result<Self, Bip32Error> {
        if !(16..=64).contains(&seed.len()) {
            return Err(Bip32Error::BadSeedLength(seed.len()));
        }
        let i = hmac512(b"Bitcoin seed", &[seed]);
        let (il, ir) = split(&i);
        SecretKey::from_byte_array(&il).map_err(|_| Bip32Error::InvalidChild)?;
        Ok(Self {
            network,
            depth: 0,
            parent_fingerprint: [0; 4],
            child_number: 0,
            chain_code: Zeroizing::new(ir),
            secret: il,
        })
    }

    fn secret_key(&self) -> SecretKey {
        SecretKey::from_byte_array(&self.secret).expect("checked when the key was made")
    }

    /// The compressed-key [`PrivateKey`] at this node.
    pub fn private_key(&self) -> PrivateKey {
        PrivateKey::from_bytes(*self.secret, true).expect("checked when the key was made")
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.secret_key())
    }

    /// The P2PKH address of this node's compressed public key.
    pub fn address(&self) -> Address {
        Address::p2pkh(&self.public_key())
    }

    /// First four bytes of the hash160 of the public key.
    pub fn fingerprint(&self) -> [u8; 4] {
        fingerprint(&self.public_key())
    }

    pub fn chain_code(&self) -> &[u8; 32] {
        &self.chain_code
    }

    /// CKDpriv: child `index` (hardened if `index >= HARDENED`).
    pub fn derive_child(&self, index: u32) -> Result<Self, Bip32Error> {
        let depth = self.depth.checked_add(1).ok_or(Bip32Error::TooDeep)?;
        let idx = index.to_be_bytes();
        let i = if index >= HARDENED {
            hmac512(
                self.chain_code.as_ref(),
                &[&[0], self.secret.as_ref(), &idx],
            )
        } else {
            hmac512(
                self.chain_code.as_ref(),
                &[&self.public_key().serialize(), &idx],
            )
        };
        let (il, ir) = split(&i);
        let tweak = Scalar::from_be_bytes(*il).map_err(|_| Bip32Error::InvalidChild)?;
        let child = self
            .secret_key()
            .add_tweak(&tweak)
            .map_err(|_| Bip32Error::InvalidChild)?;
        Ok(Self {
            network: self.network,
            depth,
            parent_fingerprint: self.fingerprint(),
            child_number: index,
            chain_code: Zeroizing::new(ir),
            secret: Zeroizing::new(child.secret_bytes()),
        })
    }

    /// Derives every step of `path` in turn.
    pub fn derive_path(&self, path: &DerivationPath) -> Result<Self, Bip32Error> {
        let mut k = self.clone();
        for &i in &path.0 {
            k = k.derive_child(i)?;
        }
        Ok(k)
    }

    /// N(): the extended public key of this node.
    pub fn to_public(&self) -> ExtendedPubKey {
        ExtendedPubKey {
            network: self.network,
            depth: self.depth,
            parent_fingerprint: self.parent_fingerprint,
            child_number: self.child_number,
            chain_code: *self.chain_code,
            public_key: self.public_key(),
        }
    }

    /// The xprv (tprv off mainnet) text.
    pub fn to_base58(&self) -> Zeroizing<String> {
        let version = if self.network.is_mainnet() {
            XPRV
        } else {
            TPRV
        };
        let mut key = Zeroizing::new([0u8; 33]);
        key[1..].copy_from_slice(self.secret.as_ref());
        let data = serialize(
            version,
            self.depth,
            self.parent_fingerprint,
            self.child_number,
            &self.chain_code,
            &key,
        );
        Zeroizing::new(base58::check_encode(data.as_ref()))
    }

    /// Parses an xprv or tprv (a tprv reads as [`Network::Testnet`]).
    pub fn from_base58(s: &str) -> Result<Self, Bip32Error> {
        let (network, raw) = Raw::parse(s, true)?;
        if raw.key[0] != 0 {
            return Err(Bip32Error::InvalidKey);
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&raw.key[1..]);
        SecretKey::from_byte_array(&secret).map_err(|_| Bip32Error::InvalidKey)?;
        Ok(Self {
            network,
            depth: raw.depth,
            parent_fingerprint: raw.parent_fingerprint,
            child_number: raw.child_number,
            chain_code: Zeroizing::new(*raw.chain_code),
            secret,
        })
    }
}

impl ExtendedPubKey {
    pub fn fingerprint(&self) -> [u8; 4] {
        fingerprint(&self.public_key)
    }

    /// The P2PKH address of this node's public key.
    pub fn address(&self) -> Address {
        Address::p2pkh(&self.public_key)
    }

    /// CKDpub: normal child `index`; a hardened index is [`Bip32Error::HardenedFromPublic`].
    pub fn derive_child(&self, index: u32) -> Result<Self, Bip32Error> {
        if index >= HARDENED {
            return Err(Bip32Error::HardenedFromPublic);
        }
        let depth = self.depth.checked_add(1).ok_or(Bip32Error::TooDeep)?;
        let i = hmac512(
            &self.chain_code,
            &[&self.public_key.serialize(), &index.to_be_bytes()],
        );
        let (il, ir) = split(&i);
        let tweak = Scalar::from_be_bytes(*il).map_err(|_| Bip32Error::InvalidChild)?;
        let public_key = self
            .public_key
            .add_exp_tweak(&Secp256k1::verification_only(), &tweak)
            .map_err(|_| Bip32Error::InvalidChild)?;
        Ok(Self {
            network: self.network,
            depth,
            parent_fingerprint: self.fingerprint(),
            child_number: index,
            chain_code: ir,
            public_key,
        })
    }

    /// Derives every step of `path` (all normal) in turn.
    pub fn derive_path(&self, path: &DerivationPath) -> Result<Self, Bip32Error> {
        let mut k = *self;
        for &i in &path.0 {
            k = k.derive_child(i)?;
        }
        Ok(k)
    }

    /// The xpub (tpub off mainnet) text.
    pub fn to_base58(&self) -> String {
        let version = if self.network.is_mainnet() {
            XPUB
        } else {
            TPUB
        };
        let data = serialize(
            version,
            self.depth,
            self.parent_fingerprint,
            self.child_number,
            &self.chain_code,
            &self.public_key.serialize(),
        );
        base58::check_encode(data.as_ref())
    }

    /// Parses an xpub or tpub (a tpub reads as [`Network::Testnet`]).
    pub fn from_base58(s: &str) -> Result<Self, Bip32Error> {
        let (network, raw) = Raw::parse(s, false)?;
        if !matches!(raw.key[0], 2 | 3) {
            return Err(Bip32Error::InvalidKey);
        }
        let public_key =
            PublicKey::from_byte_array_compressed(&raw.key).map_err(|_| Bip32Error::InvalidKey)?;
        Ok(Self {
            network,
            depth: raw.depth,
            parent_fingerprint: raw.parent_fingerprint,
            child_number: raw.child_number,
            chain_code: *raw.chain_code,
            public_key,
        })
    }
}

fn fingerprint(key: &PublicKey) -> [u8; 4] {
    let h = hash160(&key.serialize());
    [h[0], h[1], h[2], h[3]]
}

fn serialize(
    version: [u8; 4],
    depth: u8,
    parent: [u8; 4],
    child: u32,
    chain_code: &[u8; 32],
    key: &[u8; 33],
) -> Zeroizing<[u8; 78]> {
    let mut d = Zeroizing::new([0u8; 78]);
    d[..4].copy_from_slice(&version);
    d[4] = depth;
    d[5..9].copy_from_slice(&parent);
    d[9..13].copy_from_slice(&child.to_be_bytes());
    d[13..45].copy_from_slice(chain_code);
    d[45..].copy_from_slice(key);
    d
}

/// The fields of a 78-byte extended key.
struct Raw {
    version: [u8; 4],
    depth: u8,
    parent_fingerprint: [u8; 4],
    child_number: u32,
    chain_code: Zeroizing<[u8; 32]>,
    key: Zeroizing<[u8; 33]>,
}

impl Raw {
    /// The fields of an extended private (`private`) or public key, and its network.
    fn parse(s: &str, private: bool) -> Result<(Network, Self), Bip32Error> {
        let data = Zeroizing::new(base58::check_decode(s)?);
        if data.len() != 78 {
            return Err(Bip32Error::BadLength(data.len()));
        }
        let four = |at: usize| [data[at], data[at + 1], data[at + 2], data[at + 3]];
        let mut raw = Raw {
            version: four(0),
            depth: data[4],
            parent_fingerprint: four(5),
            child_number: u32::from_be_bytes(four(9)),
            chain_code: Zeroizing::new([0; 32]),
            key: Zeroizing::new([0; 33]),
        };
        if raw.depth == 0 && (raw.parent_fingerprint != [0; 4] || raw.child_number != 0) {
            return Err(Bip32Error::BadMaster);
        }
        raw.chain_code.copy_from_slice(&data[13..45]);
        raw.key.copy_from_slice(&data[45..]);
        let network = match (raw.version, private) {
            (XPRV, true) | (XPUB, false) => Network::Mainnet,
            (TPRV, true) | (TPUB, false) => Network::Testnet,
            (XPUB | TPUB, true) => return Err(Bip32Error::WrongKind("private")),
            (XPRV | TPRV, false) => return Err(Bip32Error::WrongKind("public")),
            (v, _) => return Err(Bip32Error::UnknownVersion(v)),
        };
        Ok((network, raw))
    }
}

/// A list of child indexes, written `m/44'/1'/0'/0/5` (`'`, `h` or `H` marks hardened).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DerivationPath(pub Vec<u32>);

/// Longest path accepted (BIP 32 depth is one byte).
const MAX_PATH_DEPTH: usize = 255;

impl FromStr for DerivationPath {
    type Err = Bip32Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || Bip32Error::BadPath(s.chars().take(64).collect());
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(bad());
        }
        let mut out = Vec::new();
        for p in parts {
            if out.len() == MAX_PATH_DEPTH {
                return Err(bad());
            }
            let (num, hardened) = match p.strip_suffix(['\'', 'h', 'H']) {
                Some(n) => (n, true),
                None => (p, false),
            };
            if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let i: u32 = num.parse().map_err(|_| bad())?;
            if i >= HARDENED {
                return Err(bad());
            }
            out.push(if hardened { i | HARDENED } else { i });
        }
        Ok(DerivationPath(out))
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for &i in &self.0 {
            if i >= HARDENED {
                write!(f, "/{}'", i & !HARDENED)?;
            } else {
                write!(f, "/{i}")?;
            }
        }
        Ok(())
    }
}
