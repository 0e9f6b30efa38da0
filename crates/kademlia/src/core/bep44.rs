//! BEP 44: arbitrary data in the DHT.
//!
//! An item's value `v` is any bencoded value of at most [`MAX_VALUE`] bytes (we keep it as
//! its bencoding). An **immutable** item is found under the SHA-1 of that bencoding. A
//! **mutable** item is signed with an ed25519 key: it is found under SHA-1(public key ‖
//! salt), carries a sequence number `seq` that only grows, and its signature covers the
//! exact byte string `4:salt<len>:<salt>3:seqi<seq>e1:v<v>` (the salt part only when the
//! salt is not empty) — [`signing_buffer`].
//!
//! Everything here is pure computation: no socket, no clock, no randomness (a key is made
//! from a 32-byte seed the caller supplies).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use servent_core::Id;
use sha1::{Digest, Sha1};

/// The largest bencoded value stored (BEP 44: 1000 bytes).
pub const MAX_VALUE: usize = 1000;
/// The longest salt (BEP 44: 64 bytes).
pub const MAX_SALT: usize = 64;

/// KRPC error: the value is larger than [`MAX_VALUE`].
pub const ERR_VALUE_TOO_BIG: i64 = 205;
/// KRPC error: the signature does not verify.
pub const ERR_INVALID_SIGNATURE: i64 = 206;
/// KRPC error: the salt is longer than [`MAX_SALT`].
pub const ERR_SALT_TOO_BIG: i64 = 207;
/// KRPC error: `cas` does not match the stored sequence number.
pub const ERR_CAS_MISMATCH: i64 = 301;
/// KRPC error: `seq` is lower than the stored one.
pub const ERR_SEQ_TOO_LOW: i64 = 302;

/// The signed part of a mutable item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// The ed25519 public key.
    pub k: [u8; 32],
    /// The signature over [`signing_buffer`].
    pub sig: [u8; 64],
    /// Sequence number.
    pub seq: i64,
    /// Salt (empty: none); part of the target, not sent back by `get` responses.
    pub salt: Vec<u8>,
}

/// A stored or fetched item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The value, bencoded (at most [`MAX_VALUE`] bytes).
    pub v: Vec<u8>,
    /// `None` for an immutable item.
    pub mutable: Option<Signed>,
}

/// The target of an immutable item: SHA-1 of the bencoded value.
pub fn immutable_target(v: &[u8]) -> Id {
    Id(Sha1::digest(v).into())
}

/// The target of a mutable item: SHA-1 of the public key followed by the salt.
pub fn mutable_target(k: &[u8; 32], salt: &[u8]) -> Id {
    let mut h = Sha1::new();
    h.update(k);
    h.update(salt);
    Id(h.finalize().into())
}

/// The exact bytes a mutable item's signature covers.
pub fn signing_buffer(salt: &[u8], seq: i64, v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + salt.len() + 32);
    if !salt.is_empty() {
        out.extend_from_slice(b"4:salt");
        out.extend_from_slice(salt.len().to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(b"3:seqi");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b"e1:v");
    out.extend_from_slice(v);
    out
}

/// The public key of the ed25519 key made from `seed`.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(seed).verifying_key().to_bytes()
}

/// Signs value `v` (bencoded) under `salt` with sequence number `seq`.
pub fn sign(seed: &[u8; 32], salt: &[u8], seq: i64, v: &[u8]) -> Signed {
    let key = SigningKey::from_bytes(seed);
    Signed {
        k: key.verifying_key().to_bytes(),
        sig: key.sign(&signing_buffer(salt, seq, v)).to_bytes(),
        seq,
        salt: salt.to_vec(),
    }
}

/// Whether `sig` by `k` covers `v` with `salt` and `seq`.
pub fn verify(k: &[u8; 32], sig: &[u8; 64], salt: &[u8], seq: i64, v: &[u8]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(k) else {
        return false;
    };
    key.verify(&signing_buffer(salt, seq, v), &Signature::from_bytes(sig))
        .is_ok()
}

impl Item {
    /// An immutable item.
    pub fn immutable(v: Vec<u8>) -> Item {
        Item { v, mutable: None }
    }

    /// Where it is stored.
    pub fn target(&self) -> Id {
        match &self.mutable {
            None => immutable_target(&self.v),
            Some(s) => mutable_target(&s.k, &s.salt),
        }
    }

    /// Whether the item is well formed: value and salt within bounds, signature valid.
    pub fn is_valid(&self) -> bool {
        if self.v.len() > MAX_VALUE {
            return false;
        }
        match &self.mutable {
            None => true,
            Some(s) => s.salt.len() <= MAX_SALT && verify(&s.k, &s.sig, &s.salt, s.seq, &self.v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::hazmat::{ExpandedSecretKey, raw_sign};

    // BEP 44's test vectors. Its private key is given in expanded form (scalar ‖ prefix),
    // so the signatures are checked with the expanded-key signer.
    const PUBKEY: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";
    const PRIVKEY: &str = "e06d3183d14159228433ed599221b80bd0a5ce8352e4bdf0262f76786ef1c74db7e7a9fea2c0eb269d61e3b38e450a22e754941ac78479d6c54e1faf6037881d";
    const SIG1: &str = "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01";
    const SIG2: &str = "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08";
    const VALUE: &[u8] = b"12:Hello World!";

    fn arr<const N: usize>(h: &str) -> [u8; N] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    fn sign_expanded(salt: &[u8]) -> [u8; 64] {
        let esk = ExpandedSecretKey::from_bytes(&arr::<64>(PRIVKEY));
        let vk = VerifyingKey::from_bytes(&arr::<32>(PUBKEY)).unwrap();
        raw_sign::<sha2::Sha512>(&esk, &signing_buffer(salt, 1, VALUE), &vk).to_bytes()
    }

    #[test]
    fn bep44_test_1_mutable_without_salt() {
        assert_eq!(signing_buffer(b"", 1, VALUE), b"3:seqi1e1:v12:Hello World!");
        assert_eq!(hex::encode(sign_expanded(b"")), SIG1);
        assert!(verify(&arr(PUBKEY), &arr(SIG1), b"", 1, VALUE));
        assert_eq!(
            hex::encode(mutable_target(&arr(PUBKEY), b"").0),
            "4a533d47ec9c7d95b1ad75f576cffc641853b750"
        );
    }

    #[test]
    fn bep44_test_2_mutable_with_salt() {
        assert_eq!(
            signing_buffer(b"foobar", 1, VALUE),
            b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
        );
        assert_eq!(hex::encode(sign_expanded(b"foobar")), SIG2);
        assert!(verify(&arr(PUBKEY), &arr(SIG2), b"foobar", 1, VALUE));
        assert_eq!(
            hex::encode(mutable_target(&arr(PUBKEY), b"foobar").0),
            "411eba73b6f087ca51a3795d9c8c938d365e32c1"
        );
    }

    #[test]
    fn bep44_test_3_immutable_target() {
        assert_eq!(
            hex::encode(immutable_target(VALUE).0),
            "e5f96f6f38320f0f33959cb4d3d656452117aadb"
        );
    }

    #[test]
    fn signature_does_not_verify_for_other_seq_salt_or_value() {
        let (k, sig) = (arr(PUBKEY), arr(SIG1));
        assert!(!verify(&k, &sig, b"", 2, VALUE));
        assert!(!verify(&k, &sig, b"x", 1, VALUE));
        assert!(!verify(&k, &sig, b"", 1, b"12:Hello World?"));
        assert!(!verify(&[0; 32], &sig, b"", 1, VALUE));
    }

    #[test]
    fn signed_items_from_a_seed_verify_and_bounds_are_checked() {
        let seed = [7u8; 32];
        let s = sign(&seed, b"salt", 5, b"3:abc");
        assert_eq!(s.k, public_key(&seed));
        let item = Item {
            v: b"3:abc".to_vec(),
            mutable: Some(s.clone()),
        };
        assert!(item.is_valid());
        assert_eq!(item.target(), mutable_target(&s.k, b"salt"));
        let mut bad = item.clone();
        bad.v = b"3:abd".to_vec();
        assert!(!bad.is_valid());
        let big = Item::immutable(vec![b'x'; MAX_VALUE + 1]);
        assert!(!big.is_valid());
        let salty = Item {
            v: b"1:a".to_vec(),
            mutable: Some(sign(&seed, &[1; MAX_SALT + 1], 1, b"1:a")),
        };
        assert!(!salty.is_valid());
    }
}
