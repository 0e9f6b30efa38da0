//! Base58Check P2PKH addresses (version byte 0x00 mainnet, 0x6f testnet/regtest) and the
//! output script they stand for. Base58 itself lives in [`crate::wallet::base58`]; the
//! wallet's own address type, with P2SH, is [`crate::wallet::Address`].
use thiserror::Error;

use crate::sha256d;
use crate::wallet::base58::{self, Base58Error};

/// Longest address text accepted (a P2PKH address is 25 bytes, at most 35 characters).
const MAX_LEN: usize = 64;

/// The regtest (and testnet) P2PKH version byte.
pub const REGTEST_P2PKH: u8 = 0x6f;
/// The mainnet P2PKH version byte.
pub const MAINNET_P2PKH: u8 = 0x00;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddressError {
    #[error("address longer than {MAX_LEN} characters")]
    TooLong,
    #[error("'{0}' is not a base58 character")]
    BadChar(char),
    #[error("address checksum mismatch")]
    BadChecksum,
    #[error("not a P2PKH address: {0} bytes")]
    BadLength(usize),
    #[error("version byte {got:#04x}, expected {want:#04x} (wrong network?)")]
    WrongVersion { got: u8, want: u8 },
}

pub use crate::wallet::base58::encode as base58_encode;

/// Bytes of a base58 string of at most 64 characters.
pub fn base58_decode(s: &str) -> Result<Vec<u8>, AddressError> {
    base58::decode_bounded(s, MAX_LEN).map_err(|e| match e {
        Base58Error::BadChar(c) => AddressError::BadChar(c),
        _ => AddressError::TooLong,
    })
}

/// The P2PKH address of a 20-byte key hash.
pub fn p2pkh_address(version: u8, hash160: &[u8; 20]) -> String {
    let mut data = vec![version];
    data.extend_from_slice(hash160);
    let check = sha256d(&data);
    data.extend_from_slice(&check[..4]);
    base58_encode(&data)
}

/// `OP_DUP OP_HASH160 <hash160> OP_EQUALVERIFY OP_CHECKSIG`.
pub fn p2pkh_script(hash160: &[u8; 20]) -> Vec<u8> {
    let mut s = vec![0x76, 0xa9, 0x14];
    s.extend_from_slice(hash160);
    s.extend_from_slice(&[0x88, 0xac]);
    s
}

/// The output script of a P2PKH `address` for the network whose version byte is `version`.
pub fn script_for_address(address: &str, version: u8) -> Result<Vec<u8>, AddressError> {
    let data = base58_decode(address)?;
    if data.len() != 25 {
        return Err(AddressError::BadLength(data.len()));
    }
    let (body, check) = data.split_at(21);
    if sha256d(body)[..4] != *check {
        return Err(AddressError::BadChecksum);
    }
    if body[0] != version {
        return Err(AddressError::WrongVersion {
            got: body[0],
            want: version,
        });
    }
    let mut h = [0u8; 20];
    h.copy_from_slice(&body[1..]);
    Ok(p2pkh_script(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_addresses_round_trip_and_bad_ones_are_refused() {
        // The hash160 of the genesis coinbase key, a well-known mainnet address.
        let a = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa";
        let s = script_for_address(a, MAINNET_P2PKH).expect("valid");
        let mut h = [0u8; 20];
        h.copy_from_slice(&s[3..23]);
        assert_eq!(p2pkh_address(MAINNET_P2PKH, &h), a);
        let r = p2pkh_address(REGTEST_P2PKH, &h);
        assert!(r.starts_with('m') || r.starts_with('n'));
        assert_eq!(script_for_address(&r, REGTEST_P2PKH), Ok(s.clone()));
        assert!(matches!(
            script_for_address(a, REGTEST_P2PKH),
            Err(AddressError::WrongVersion { .. })
        ));
        let mut bad = a.to_string();
        bad.replace_range(5..6, "Q");
        assert!(script_for_address(&bad, MAINNET_P2PKH).is_err());
        assert_eq!(
            script_for_address("0OIl", 0),
            Err(AddressError::BadChar('0'))
        );
    }
}
