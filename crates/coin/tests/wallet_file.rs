//! The encrypted wallet file: a round trip, and every way a file can be
//! wrong (password, truncation, a flipped bit anywhere, an edit that also
//! fixes the checksum, garbage, oversize) is a typed error, never a panic
//! and never an empty wallet.
use proptest::prelude::*;
use servent_coin::wallet::file::{HEADER_LEN, MAX_FILE_LEN};
use servent_coin::wallet::{
    KdfParams, Network, Password, Seed, WalletFileError, WalletPayload, decrypt, encrypt,
    encrypt_with,
};
use sha2::{Digest, Sha256};

/// Cheap costs so the tests can run the KDF hundreds of times.
const FAST: KdfParams = KdfParams {
    m_kib: 64,
    t: 1,
    p: 1,
};
const SALT: [u8; 16] = [7; 16];
const NONCE: [u8; 24] = [9; 24];

fn password(s: &str) -> Password {
    Password::new(s.to_string()).expect("non-empty")
}

fn payload() -> WalletPayload {
    let seed: Vec<u8> = (0..64).collect();
    let mut p = WalletPayload::new(Network::Regtest, Seed::from_bytes(&seed).expect("seed"));
    p.next_receive = 5;
    p.next_change = 2;
    p.labels
        .insert("mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ".into(), "rent".into());
    p.labels.insert(
        "n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ".into(),
        "café ☕".into(),
    );
    p
}

fn small_file() -> Vec<u8> {
    encrypt_with(&payload(), &password("hunter2"), &SALT, &NONCE, FAST).expect("encrypt")
}

/// Replaces the trailing SHA-256 so that only the AEAD can notice an edit.
fn fix_checksum(f: &mut [u8]) {
    let n = f.len() - 32;
    let sum = Sha256::digest(&f[..n]);
    f[n..].copy_from_slice(&sum);
}

#[test]
fn round_trip_with_default_costs_and_wrong_password() {
    let p = payload();
    let f = encrypt(&p, &password("correct horse"), &SALT, &NONCE).expect("encrypt");
    assert_eq!(&f[..8], b"SVWALLET");
    let back = decrypt(&f, &password("correct horse")).expect("decrypt");
    assert_eq!(back, p);
    assert_eq!(back.labels["n4fajahJrAuKbN7uNsKjLjQkz9Qn5ewJXQ"], "café ☕");
    assert_eq!(
        decrypt(&f, &password("correct horsf")),
        Err(WalletFileError::WrongPassword)
    );
    // Neither the seed nor the password shows in the file or in Debug output.
    assert!(!f.windows(16).any(|w| w == &p.seed.as_bytes()[..16]));
    let shown = format!("{back:?} {:?}", password("correct horse"));
    assert!(
        !shown.contains("correct") && !shown.contains("0, 1, 2, 3"),
        "{shown}"
    );
    assert!(Password::new(String::new()).is_none(), "no empty password");
}

#[test]
fn a_new_salt_and_nonce_change_every_byte_after_the_header() {
    let a = small_file();
    let b =
        encrypt_with(&payload(), &password("hunter2"), &[8; 16], &[1; 24], FAST).expect("encrypt");
    assert_eq!(a.len(), b.len());
    assert_ne!(a[HEADER_LEN..], b[HEADER_LEN..]);
    assert_eq!(
        decrypt(&b, &password("hunter2")).expect("decrypt"),
        payload()
    );
}

#[test]
fn every_truncation_is_truncated() {
    let f = small_file();
    for n in 0..f.len() {
        match decrypt(&f[..n], &password("hunter2")) {
            Err(WalletFileError::Truncated { len, .. }) => assert_eq!(len, n),
            other => panic!("{n} of {} bytes: {other:?}", f.len()),
        }
    }
    println!("{} truncations of a {}-byte file refused", f.len(), f.len());
}

#[test]
fn a_flipped_bit_at_every_byte_is_refused_before_the_kdf() {
    let f = small_file();
    for i in 0..f.len() {
        for bit in [0x01u8, 0x80] {
            let mut g = f.clone();
            g[i] ^= bit;
            let r = decrypt(&g, &password("hunter2"));
            assert!(
                matches!(
                    r,
                    Err(WalletFileError::NotAWalletFile
                        | WalletFileError::UnsupportedVersion(_)
                        | WalletFileError::Corrupted
                        | WalletFileError::Truncated { .. })
                ),
                "byte {i} bit {bit:#x}: {r:?}"
            );
        }
    }
    println!(
        "{} flipped bits in a {}-byte file refused",
        2 * f.len(),
        f.len()
    );
}

#[test]
fn an_edit_that_fixes_the_checksum_fails_authentication() {
    // Salt, nonce, length-preserving ciphertext and tag: the AEAD covers all of them.
    let f = small_file();
    for i in 21..f.len() - 32 {
        if (61..65).contains(&i) {
            continue; // the length field: the file no longer adds up (Corrupted)
        }
        let mut g = f.clone();
        g[i] ^= 0x10;
        fix_checksum(&mut g);
        assert_eq!(
            decrypt(&g, &password("hunter2")),
            Err(WalletFileError::WrongPassword),
            "byte {i}"
        );
    }
    let mut g = f.clone();
    g[61] ^= 1;
    fix_checksum(&mut g);
    assert_eq!(
        decrypt(&g, &password("hunter2")),
        Err(WalletFileError::Corrupted)
    );
    // Costs a file may not ask for are refused before any work.
    let mut g = f.clone();
    g[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_checksum(&mut g);
    assert!(matches!(
        decrypt(&g, &password("hunter2")),
        Err(WalletFileError::UnsupportedParams(_))
    ));
}

#[test]
fn other_files_oversize_and_bad_costs_are_refused() {
    let pw = password("hunter2");
    assert_eq!(
        decrypt(b"", &pw),
        Err(WalletFileError::Truncated { len: 0, need: 113 })
    );
    assert_eq!(
        decrypt(b"{\"seed\":1}", &pw),
        Err(WalletFileError::NotAWalletFile)
    );
    let mut f = small_file();
    f[8] = 2;
    assert_eq!(
        decrypt(&f, &pw),
        Err(WalletFileError::UnsupportedVersion(2))
    );
    let mut big = small_file();
    big.resize(MAX_FILE_LEN + 1, 0);
    assert_eq!(
        decrypt(&big, &pw),
        Err(WalletFileError::TooLarge(MAX_FILE_LEN + 1))
    );
    let mut appended = small_file();
    appended.extend_from_slice(&[0; 32]);
    assert!(decrypt(&appended, &pw).is_err());
    for bad in [
        KdfParams {
            m_kib: 64,
            t: 0,
            p: 1,
        },
        KdfParams {
            m_kib: KdfParams::MAX_M_KIB + 1,
            t: 1,
            p: 1,
        },
        KdfParams {
            m_kib: 64,
            t: 1,
            p: 0,
        },
    ] {
        assert_eq!(
            encrypt_with(&payload(), &pw, &SALT, &NONCE, bad),
            Err(WalletFileError::UnsupportedParams(bad))
        );
    }
    let mut huge = payload();
    huge.labels.insert("x".into(), "y".repeat(70_000));
    assert_eq!(
        encrypt_with(&huge, &pw, &SALT, &NONCE, FAST),
        Err(WalletFileError::PayloadTooLarge)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(decrypt(&bytes, &password("hunter2")).is_err());
    }

    #[test]
    fn a_valid_header_with_an_arbitrary_tail_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..512),
        fix in any::<bool>(),
    ) {
        let mut f = small_file()[..HEADER_LEN].to_vec();
        f.extend_from_slice(&tail);
        if fix && f.len() >= HEADER_LEN + 32 {
            fix_checksum(&mut f);
        }
        prop_assert!(decrypt(&f, &password("hunter2")).is_err());
    }
}
