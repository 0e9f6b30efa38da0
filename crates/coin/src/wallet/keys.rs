//! P2PKH and P2SH addresses and WIF private keys, for mainnet and for testnet/regtest
//! (which share their version bytes).
use std::fmt;

use ripemd::Ripemd160;
use secp256k1::{PublicKey, Secp256k1, SecretKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

use super::base58::{self, Base58Error};

/// The network a key or address is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Network {
    Mainnet,
    Testnet,
    Regtest,
}

impl Network {
    /// Version byte of a P2PKH address: 0x00, or 0x6f on testnet/regtest.
    pub fn p2pkh_version(self) -> u8 {
        if self.is_mainnet() { 0x00 } else { 0x6f }
    }
    /// Version byte of a P2SH address: 0x05, or 0xc4 on testnet/regtest.
    pub fn p2sh_version(self) -> u8 {
        if self.is_mainnet() { 0x05 } else { 0xc4 }
    }
    /// Version byte of a WIF private key: 0x80, or 0xef on testnet/regtest.
    pub fn wif_version(self) -> u8 {
        if self.is_mainnet() { 0x80 } else { 0xef }
    }
    pub fn is_mainnet(self) -> bool {
        self == Network::Mainnet
    }
    /// The byte that stands for this network in the wallet file.
    pub fn to_byte(self) -> u8 {
        match self {
            Network::Mainnet => 0,
            Network::Testnet => 1,
            Network::Regtest => 2,
        }
    }
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Network::Mainnet),
            1 => Some(Network::Testnet),
            2 => Some(Network::Regtest),
            _ => None,
        }
    }
}

/// RIPEMD-160 of SHA-256.
pub fn hash160(data: &[u8]) -> [u8; 20] {
    Ripemd160::digest(Sha256::digest(data)).into()
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error(transparent)]
    Base58(#[from] Base58Error),
    #[error("an address holds 21 bytes, this one {0}")]
    BadLength(usize),
    #[error("version byte {0:#04x} is no P2PKH or P2SH address for this network")]
    WrongVersion(u8),
}

/// A pay-to-pubkey-hash or pay-to-script-hash destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// `OP_DUP OP_HASH160 <hash> OP_EQUALVERIFY OP_CHECKSIG`.
    P2pkh([u8; 20]),
    /// `OP_HASH160 <hash> OP_EQUAL` (BIP 16).
    P2sh([u8; 20]),
}

impl Address {
    /// The P2PKH address of a compressed public key.
    pub fn p2pkh(key: &PublicKey) -> Self {
        Address::P2pkh(hash160(&key.serialize()))
    }
    /// The P2SH address of a redeem script.
    pub fn p2sh(redeem_script: &[u8]) -> Self {
        Address::P2sh(hash160(redeem_script))
    }
    /// The Base58Check text for `network`.
    pub fn encode(&self, network: Network) -> String {
        let (version, hash) = match self {
            Address::P2pkh(h) => (network.p2pkh_version(), h),
            Address::P2sh(h) => (network.p2sh_version(), h),
        };
        let mut data = [0u8; 21];
        data[0] = version;
        data[1..].copy_from_slice(hash);
        base58::check_encode(&data)
    }
    /// Parses an address of `network`; another network's address is
    /// [`AddressError::WrongVersion`].
    pub fn decode(s: &str, network: Network) -> Result<Self, AddressError> {
        let data = base58::check_decode(s)?;
        if data.len() != 21 {
            return Err(AddressError::BadLength(data.len()));
        }
        let mut h = [0u8; 20];
        h.copy_from_slice(&data[1..]);
        match data[0] {
            v if v == network.p2pkh_version() => Ok(Address::P2pkh(h)),
            v if v == network.p2sh_version() => Ok(Address::P2sh(h)),
            v => Err(AddressError::WrongVersion(v)),
        }
    }
    /// The output script this address stands for.
    pub fn script_pubkey(&self) -> Vec<u8> {
        match self {
            Address::P2pkh(h) => {
                let mut s = vec![0x76, 0xa9, 0x14];
                s.extend_from_slice(h);
                s.extend_from_slice(&[0x88, 0xac]);
                s
            }
            Address::P2sh(h) => {
                let mut s = vec![0xa9, 0x14];
                s.extend_from_slice(h);
                s.push(0x87);
                s
            }
        }
    }
    /// The address of a P2PKH or P2SH output script; `None` for any other script.
    pub fn from_script(script: &[u8]) -> Option<Self> {
        let mut h = [0u8; 20];
        match script {
            [0x76, 0xa9, 0x14, hash @ .., 0x88, 0xac] if hash.len() == 20 => {
                h.copy_from_slice(hash);
                Some(Address::P2pkh(h))
            }
            [0xa9, 0x14, hash @ .., 0x87] if hash.len() == 20 => {
                h.copy_from_slice(hash);
                Some(Address::P2sh(h))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WifError {
    #[error(transparent)]
    Base58(#[from] Base58Error),
    #[error("a WIF key holds 33 or 34 bytes, this one {0}")]
    BadLength(usize),
    #[error("version byte {0:#04x} is no private key for this network")]
    WrongVersion(u8),
    #[error("compression flag {0:#04x}, expected 0x01")]
    BadCompressionFlag(u8),
    #[error("not a valid secp256k1 secret key (zero or not below the group order)")]
    InvalidKey,
}

/// A secp256k1 secret key and whether its public key is used compressed.
/// Its `Debug` prints no key material; the bytes are wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    secret: Zeroizing<[u8; 32]>,
    pub compressed: bool,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// `None` unless `secret` is in `1..n`.
    pub fn from_bytes(secret: [u8; 32], compressed: bool) -> Option<Self> {
        let secret = Zeroizing::new(secret);
        SecretKey::from_byte_array(&secret).ok()?;
        Some(Self { secret, compressed })
    }
    /// The 32 secret bytes.
    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }
    /// The secret as a secp256k1 key (valid by construction).
    pub fn secret_key(&self) -> SecretKey {
        SecretKey::from_byte_array(&self.secret).expect("checked when the PrivateKey was made")
    }
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.secret_key())
    }
    /// The public key as the P2PKH address hashes it (33 or 65 bytes).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        let pk = self.public_key();
        if self.compressed {
            pk.serialize().to_vec()
        } else {
            pk.serialize_uncompressed().to_vec()
        }
    }
    /// The P2PKH address of this key.
    pub fn address(&self) -> Address {
        Address::P2pkh(hash160(&self.public_key_bytes()))
    }
    /// Wallet Import Format: version, secret, 0x01 if compressed, checksum.
    pub fn to_wif(&self, network: Network) -> Zeroizing<String> {
        let mut data = Zeroizing::new(Vec::with_capacity(34));
        data.push(network.wif_version());
        data.extend_from_slice(self.secret.as_ref());
        if self.compressed {
            data.push(0x01);
        }
        Zeroizing::new(base58::check_encode(&data))
    }
    /// Parses a WIF key of `network`.
    pub fn from_wif(s: &str, network: Network) -> Result<Self, WifError> {
        let data = Zeroizing::new(base58::check_decode(s)?);
        let compressed = match data.len() {
            33 => false,
            34 if data[33] == 0x01 => true,
            34 => return Err(WifError::BadCompressionFlag(data[33])),
            n => return Err(WifError::BadLength(n)),
        };
        if data[0] != network.wif_version() {
            return Err(WifError::WrongVersion(data[0]));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&data[1..33]);
        let key = Self::from_bytes(secret, compressed).ok_or(WifError::InvalidKey);
        secret.zeroize();
        key
    }
}

/// Longest redeem script a P2SH spend can push (Core's `MAX_SCRIPT_ELEMENT_SIZE`).
pub const MAX_REDEEM_SCRIPT: usize = 520;
/// Most keys in a standard bare or P2SH `CHECKMULTISIG`.
pub const MAX_MULTISIG_KEYS: usize = 15;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MultisigError {
    #[error("{required} of {keys} keys: need 1 <= required <= keys <= {MAX_MULTISIG_KEYS}")]
    BadThreshold { required: usize, keys: usize },
    #[error("key {0} is not a secp256k1 public key")]
    BadKey(usize),
    #[error("redeem script of {0} bytes exceeds {MAX_REDEEM_SCRIPT}")]
    TooLong(usize),
}

/// `OP_m <key>... OP_n OP_CHECKMULTISIG`, keys in the order given (33- or
/// 65-byte serializations); its [`Address::p2sh`] is the multisig address.
pub fn multisig_redeem_script(required: usize, keys: &[&[u8]]) -> Result<Vec<u8>, MultisigError> {
    let n = keys.len();
    if required == 0 || required > n || n > MAX_MULTISIG_KEYS {
        return Err(MultisigError::BadThreshold { required, keys: n });
    }
    // OP_1 .. OP_16 are 0x51 .. 0x60.
    let small = |v: usize| 0x50 + v as u8;
    let mut s = vec![small(required)];
    for (i, k) in keys.iter().enumerate() {
        PublicKey::from_slice(k).map_err(|_| MultisigError::BadKey(i))?;
        s.push(k.len() as u8);
        s.extend_from_slice(k);
    }
    s.push(small(n));
    s.push(0xae);
    if s.len() > MAX_REDEEM_SCRIPT {
        return Err(MultisigError::TooLong(s.len()));
    }
    Ok(s)
}
