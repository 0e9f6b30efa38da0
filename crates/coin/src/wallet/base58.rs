//! Base58 and Base58Check (version byte(s), payload, first four bytes of SHA-256d).
use thiserror::Error;

use crate::sha256d;

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Longest text [`decode`] accepts: decoding is quadratic, so the bound keeps it cheap
/// (an xprv is 111 characters; Core's longest vector 350).
pub const MAX_DECODE_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Base58Error {
    #[error("base58 text longer than {0} characters")]
    TooLong(usize),
    #[error("'{0}' is not a base58 character")]
    BadChar(char),
    #[error("base58check text shorter than its 4-byte checksum")]
    TooShort,
    #[error("base58check checksum mismatch")]
    BadChecksum,
}

/// Base58 encoding of `data` (leading zero bytes become '1').
pub fn encode(data: &[u8]) -> String {
    let zeros = data.iter().take_while(|b| **b == 0).count();
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for &byte in &data[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut s = String::with_capacity(zeros + digits.len());
    s.extend(std::iter::repeat_n('1', zeros));
    s.extend(digits.iter().rev().map(|d| ALPHABET[*d as usize] as char));
    s
}

/// Bytes of a base58 string of at most `max_len` characters.
pub fn decode_bounded(s: &str, max_len: usize) -> Result<Vec<u8>, Base58Error> {
    if s.len() > max_len {
        return Err(Base58Error::TooLong(max_len));
    }
    let zeros = s.bytes().take_while(|b| *b == b'1').count();
    let mut bytes: Vec<u8> = Vec::with_capacity(s.len());
    for c in s.chars().skip(zeros) {
        let v = ALPHABET
            .iter()
            .position(|a| *a as char == c)
            .ok_or(Base58Error::BadChar(c))? as u32;
        let mut carry = v;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Ok(out)
}

/// Bytes of a base58 string of at most [`MAX_DECODE_LEN`] characters.
pub fn decode(s: &str) -> Result<Vec<u8>, Base58Error> {
    decode_bounded(s, MAX_DECODE_LEN)
}

/// Base58Check: `data` followed by the first four bytes of its SHA-256d.
pub fn check_encode(data: &[u8]) -> String {
    let mut v = Vec::with_capacity(data.len() + 4);
    v.extend_from_slice(data);
    v.extend_from_slice(&sha256d(data)[..4]);
    let s = encode(&v);
    zeroize::Zeroize::zeroize(&mut v);
    s
}

/// The payload of a Base58Check string, checksum verified and removed.
pub fn check_decode(s: &str) -> Result<Vec<u8>, Base58Error> {
    let mut data = decode(s)?;
    if data.len() < 4 {
        return Err(Base58Error::TooShort);
    }
    let body_len = data.len() - 4;
    if sha256d(&data[..body_len])[..4] != data[body_len..] {
        zeroize::Zeroize::zeroize(&mut data);
        return Err(Base58Error::BadChecksum);
    }
    data.truncate(body_len);
    Ok(data)
}
