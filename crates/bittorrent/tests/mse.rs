#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Message Stream Encryption: RC4 known answers, a golden handshake computed by an independent
//! reference (fixed private keys, empty pads), both our sides against each other over
//! arbitrary chunkings, and hostile input.

use proptest::prelude::*;
use servent_bittorrent::metainfo::InfoHash;
use servent_bittorrent::mse::{
    CRYPTO_PLAINTEXT, CRYPTO_RC4, Crypto, DhKey, Established, Initiator, MAX_PAD, MseConfig,
    MseError, Rc4, Responder,
};
use servent_core::Rng;

#[test]
fn rc4_matches_the_classic_known_answer_vectors() {
    for (key, plain, want) in [
        (&b"Key"[..], &b"Plaintext"[..], "bbf316e8d940af0ad3"),
        (b"Wiki", b"pedia", "1021bf0420"),
        (b"Secret", b"Attack at dawn", "45a01f645fc35b383552544b9bf5"),
    ] {
        let mut buf = plain.to_vec();
        Rc4::new(key).apply(&mut buf);
        assert_eq!(hex::encode(&buf), want);
        Rc4::new(key).apply(&mut buf);
        assert_eq!(buf, plain, "RC4 is its own inverse");
    }
}

const IH: InfoHash = InfoHash([0xAA; 20]);

fn bt_handshake() -> Vec<u8> {
    let mut v = b"\x13BitTorrent protocol".to_vec();
    v.extend([0; 8]);
    v.extend(IH.0);
    v.extend(b"-SV0001-000000000000");
    v
}

// Golden bytes from an independent reference implementation of the Vuze MSE description
// (Python: pow() for DH, its own RC4), private keys 0x01..0x14 (A) and 0x21..0x34 (B),
// info-hash 0xAA x 20, no pads, A provides 0x03 with IA = a BitTorrent handshake, B selects RC4.
const YA: &str = "96e112dab29e8c5272accb9b17b26887ce54a144a4e3b697c7d159b7a817e556b0918db2b4c658e02a87f7e5fb14b18a553e084cbf3dad2d30f16596ccb982d406258c61b30c5c1dae2ddc60bdbd48d79896312aad63238c39e1a633821eb693";
const YB: &str = "8f9c9f400fe9b3258f3e48598a95c7805cc90c995cd770283322679d132ebdae09b75eeadc01de698ef86945cf38314a95fad08c2ad5641802bd5f658eb3ea0db2712c04aa5efed03deecc5104f75d869d2d197e4336c61f0d71d763bee99416";
const STEP3: &str = "361e3668027ecec9d1086d5f839d191781e8de17ff86a5c7383cb12b4912f17768e0688bd072e568cb54a65b377d988493cbbe06d20b97419ad590a35c41ba4bac97fda72daf0e28fa9d5a478bec0a05044ab1754f7e7d81bbae74acdf1e5ca237d7ec1498ee4d216273b48bda5e1f453acc03c884926b77ba646ac3";
const STEP4: &str = "5c8a3690b2051725a0ae37c265d5";
const B_DATA: &str = "c4249b4c3a53913a5960101f"; // "hello from B", B's stream after step 4
const A_DATA: &str = "5b044920220f930799b215ef"; // "hello from A", A's stream after IA

fn key(first: u8) -> DhKey {
    let mut x = [0u8; 20];
    for (i, b) in x.iter_mut().enumerate() {
        *b = first + i as u8;
    }
    DhKey::from_private(x)
}

#[test]
fn fixed_keys_give_the_reference_handshake_bytes() {
    let mut a_out = Vec::new();
    let mut a =
        Initiator::with_parts(IH, 3, key(1), &[], &[], &bt_handshake(), &mut a_out).unwrap();
    assert_eq!(hex::encode(&a_out), YA);

    let cfg = MseConfig::default();
    let mut b = Responder::with_parts(&cfg, key(0x21), &[], &[], &[InfoHash([1; 20]), IH]);
    let mut b_out = Vec::new();
    assert!(b.handle_input(&a_out, &mut b_out).unwrap().is_none());
    assert_eq!(hex::encode(&b_out), YB);

    let mut step3 = Vec::new();
    assert!(a.handle_input(&b_out, &mut step3).unwrap().is_none());
    assert_eq!(hex::encode(&step3), STEP3);

    let mut step4 = Vec::new();
    let mut eb = b.handle_input(&step3, &mut step4).unwrap().expect("B done");
    assert_eq!(hex::encode(&step4), STEP4);
    assert_eq!(eb.info_hash, IH);
    assert_eq!(eb.crypto, Crypto::Rc4);
    assert_eq!(eb.received, bt_handshake(), "the IA, decrypted");

    let mut hello_b = b"hello from B".to_vec();
    eb.stream.encrypt(&mut hello_b);
    assert_eq!(hex::encode(&hello_b), B_DATA);
    // B's step 4 and first payload arrive together.
    let mut both = step4.clone();
    both.extend(&hello_b);
    let mut nothing = Vec::new();
    let mut ea = a
        .handle_input(&both, &mut nothing)
        .unwrap()
        .expect("A done");
    assert!(nothing.is_empty());
    assert_eq!(ea.crypto, Crypto::Rc4);
    assert_eq!(ea.received, b"hello from B");

    let mut hello_a = b"hello from A".to_vec();
    ea.stream.encrypt(&mut hello_a);
    assert_eq!(hex::encode(&hello_a), A_DATA);
    eb.stream.decrypt(&mut hello_a);
    assert_eq!(hello_a, b"hello from A");
    assert_eq!(
        a.handle_input(b"x", &mut nothing).unwrap_err(),
        MseError::Finished
    );
}

/// Runs both sides, delivering each direction's bytes in chunks of the given sizes (cycled).
fn pair(
    seed: u64,
    a_cfg: MseConfig,
    b_cfg: MseConfig,
    chunks: &[usize],
    ia: &[u8],
) -> Result<(Established, Established), MseError> {
    let mut rng = Rng::new(seed);
    let mut to_b = Vec::new();
    let mut a = Initiator::new(IH, &a_cfg, &mut rng, ia, &mut to_b)?;
    let mut b = Responder::new(&b_cfg, &mut rng, &[IH]);
    let mut to_a: Vec<u8> = Vec::new();
    let (mut ea, mut eb) = (None, None);
    let mut k = 0usize;
    let mut next_len = || {
        k += 1;
        chunks
            .get(k % chunks.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1)
    };
    for _ in 0..100_000 {
        if ea.is_some() && eb.is_some() {
            break;
        }
        if eb.is_none() && !to_b.is_empty() {
            let n = next_len().min(to_b.len());
            let chunk: Vec<u8> = to_b.drain(..n).collect();
            eb = b.handle_input(&chunk, &mut to_a)?;
            if let Some(e) = &mut eb {
                // B sends its first payload at once; A must find it after step 4.
                let mut msg = b"B payload".to_vec();
                e.stream.encrypt(&mut msg);
                to_a.extend(msg);
            }
        } else if ea.is_none() && !to_a.is_empty() {
            let n = next_len().min(to_a.len());
            let chunk: Vec<u8> = to_a.drain(..n).collect();
            ea = a.handle_input(&chunk, &mut to_b)?;
        } else if eb.is_some() && ea.is_none() && to_a.is_empty() {
            panic!("stalled");
        }
    }
    let (mut ea, eb) = (ea.expect("A finished"), eb.expect("B finished"));
    // A's handshake buffer may have held B's payload: it comes back in `received`.
    let mut rest = std::mem::take(&mut to_a);
    ea.stream.decrypt(&mut rest);
    ea.received.extend(rest);
    Ok((ea, eb))
}

#[test]
fn methods_are_chosen_by_what_both_sides_allow() {
    let both = MseConfig::default();
    let plain = MseConfig {
        allowed: CRYPTO_PLAINTEXT,
        ..both
    };
    let rc4 = MseConfig {
        allowed: CRYPTO_RC4,
        ..both
    };
    let prefer_plain = MseConfig {
        prefer_plaintext: true,
        ..both
    };
    for (a, b, want) in [
        (both, both, Crypto::Rc4),
        (both, prefer_plain, Crypto::Plaintext),
        (plain, both, Crypto::Plaintext),
        (both, plain, Crypto::Plaintext),
        (rc4, both, Crypto::Rc4),
    ] {
        let (ea, eb) = pair(7, a, b, &[1000], b"ia").unwrap();
        assert_eq!((ea.crypto, eb.crypto), (want, want));
        assert_eq!(ea.stream.crypto(), want);
        assert_eq!(eb.received, b"ia");
        assert_eq!(ea.received, b"B payload");
    }
    assert_eq!(
        pair(7, plain, rc4, &[1000], b"").unwrap_err(),
        MseError::NoCommonMethod {
            provided: CRYPTO_PLAINTEXT,
            allowed: CRYPTO_RC4
        }
    );
}

#[test]
fn a_responder_refuses_a_torrent_it_does_not_serve() {
    let mut rng = Rng::new(1);
    let mut out = Vec::new();
    let mut a = Initiator::new(IH, &MseConfig::default(), &mut rng, b"", &mut out).unwrap();
    let mut b = Responder::new(&MseConfig::default(), &mut rng, &[InfoHash([9; 20])]);
    let mut back = Vec::new();
    b.handle_input(&out, &mut back).unwrap();
    let mut step3 = Vec::new();
    a.handle_input(&back, &mut step3).unwrap();
    let mut sink = Vec::new();
    assert_eq!(
        b.handle_input(&step3, &mut sink).unwrap_err(),
        MseError::UnknownTorrent
    );
    assert_eq!(
        b.handle_input(b"more", &mut sink).unwrap_err(),
        MseError::Finished
    );
}

#[test]
fn garbage_without_the_sync_marker_is_refused_after_the_largest_pad() {
    let mut rng = Rng::new(2);
    let mut b = Responder::new(&MseConfig::default(), &mut rng, &[IH]);
    let mut out = Vec::new();
    // A valid-looking Ya, then bytes that never contain HASH('req1', S).
    let ya = *key(5).public();
    assert!(b.handle_input(&ya, &mut out).unwrap().is_none());
    let junk = vec![0x55u8; MAX_PAD + 19];
    assert!(
        b.handle_input(&junk, &mut out).unwrap().is_none(),
        "could still come"
    );
    assert!(matches!(
        b.handle_input(&[0x55], &mut out),
        Err(MseError::SyncNotFound(628))
    ));

    // An initiator gets the same treatment for a missing ENCRYPT(VC).
    let mut out = Vec::new();
    let mut a = Initiator::new(IH, &MseConfig::default(), &mut rng, b"", &mut out).unwrap();
    let mut junk = key(6).public().to_vec();
    junk.extend(vec![0x55u8; MAX_PAD + 8]);
    assert!(matches!(
        a.handle_input(&junk, &mut out),
        Err(MseError::SyncNotFound(_))
    ));
}

#[test]
fn invalid_public_keys_and_an_oversized_ia_are_refused() {
    let mut rng = Rng::new(3);
    let mut b = Responder::new(&MseConfig::default(), &mut rng, &[IH]);
    let mut out = Vec::new();
    assert_eq!(
        b.handle_input(&[0u8; 96], &mut out).unwrap_err(),
        MseError::BadPublicKey
    );
    assert!(out.is_empty());
    assert_eq!(
        Initiator::new(IH, &MseConfig::default(), &mut rng, &[0; 70_000], &mut out).unwrap_err(),
        MseError::IaTooLong(70_000)
    );
}

#[test]
fn a_tampered_step3_fails_the_verification_constant() {
    let mut rng = Rng::new(4);
    let mut out = Vec::new();
    let cfg = MseConfig {
        max_pad: 0,
        ..MseConfig::default()
    };
    let mut a = Initiator::new(IH, &cfg, &mut rng, b"", &mut out).unwrap();
    let mut b = Responder::new(&cfg, &mut rng, &[IH]);
    let mut back = Vec::new();
    b.handle_input(&out, &mut back).unwrap();
    let mut step3 = Vec::new();
    a.handle_input(&back, &mut step3).unwrap();
    step3[40] ^= 1; // first byte of ENCRYPT(VC)
    let mut sink = Vec::new();
    assert_eq!(
        b.handle_input(&step3, &mut sink).unwrap_err(),
        MseError::BadVc
    );
}

#[test]
fn a_responder_selecting_what_was_not_provided_is_refused() {
    // B allows both but A provides only RC4; forge a step 4 selecting plaintext.
    let mut out = Vec::new();
    let a_cfg = MseConfig {
        allowed: CRYPTO_RC4,
        max_pad: 0,
        ..MseConfig::default()
    };
    let mut a = Initiator::with_parts(IH, a_cfg.allowed, key(1), &[], &[], b"", &mut out).unwrap();
    let mut b = Responder::with_parts(&a_cfg, key(0x21), &[], &[], &[IH]);
    let mut back = Vec::new();
    b.handle_input(&out, &mut back).unwrap();
    let mut step3 = Vec::new();
    a.handle_input(&back, &mut step3).unwrap();
    let mut step4 = Vec::new();
    b.handle_input(&step3, &mut step4).unwrap().unwrap();
    // step4 = ENCRYPT(VC, 0x00000002, 0x0000): flip the select to 0x00000001 (xor 3 on the
    // last select byte keeps the keystream and changes the plaintext).
    step4[11] ^= 0x03;
    assert_eq!(
        a.handle_input(&step4, &mut Vec::new()).unwrap_err(),
        MseError::BadSelect(CRYPTO_PLAINTEXT)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn both_sides_complete_over_any_chunking(
        seed in any::<u64>(),
        chunks in proptest::collection::vec(1usize..700, 1..8),
        ia in proptest::collection::vec(any::<u8>(), 0..200),
        prefer_plaintext in any::<bool>(),
    ) {
        let b_cfg = MseConfig { prefer_plaintext, ..MseConfig::default() };
        let (mut ea, mut eb) = pair(seed, MseConfig::default(), b_cfg, &chunks, &ia).unwrap();
        prop_assert_eq!(&eb.received, &ia);
        prop_assert_eq!(&ea.received, b"B payload");
        prop_assert_eq!(ea.info_hash, IH);
        // Application data flows both ways afterwards.
        let mut m = b"piece data".to_vec();
        ea.stream.encrypt(&mut m);
        eb.stream.decrypt(&mut m);
        prop_assert_eq!(&m, b"piece data");
        eb.stream.encrypt(&mut m);
        ea.stream.decrypt(&mut m);
        prop_assert_eq!(&m, b"piece data");
    }

    #[test]
    fn arbitrary_bytes_never_panic_either_side(
        seed in any::<u64>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..1500),
        split in 0usize..1500,
    ) {
        let mut rng = Rng::new(seed);
        let (x, y) = bytes.split_at(split.min(bytes.len()));
        let mut out = Vec::new();
        let mut b = Responder::new(&MseConfig::default(), &mut rng, &[IH]);
        if b.handle_input(x, &mut out).is_ok() {
            let _ = b.handle_input(y, &mut out);
        }
        let mut a = Initiator::new(IH, &MseConfig::default(), &mut rng, b"", &mut out).unwrap();
        if a.handle_input(x, &mut out).is_ok() {
            let _ = a.handle_input(y, &mut out);
        }
    }
}
