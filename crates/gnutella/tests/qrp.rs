//! QRP: the hash against the spec's published values, RESET/PATCH golden bytes, round
//! trips through the receiver, merging, matching, and hostile input.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use proptest::prelude::*;
use servent_gnutella::qrp::{
    self, Applied, Compressor, Patch, QrpError, Receiver, RouteUpdate, Table, hash,
};

#[test]
fn hash_matches_the_published_examples() {
    let cases: &[(&str, u8, u32)] = &[
        ("", 13, 0),
        ("eb", 13, 6791),
        ("ebc", 13, 7082),
        ("ebck", 13, 6698),
        ("ebckl", 13, 3179),
        ("ebcklm", 13, 3235),
        ("ebcklme", 13, 6438),
        ("ebcklmen", 13, 1062),
        ("ebcklmenq", 13, 3527),
        ("", 16, 0),
        ("n", 16, 65003),
        ("nd", 16, 54193),
        ("ndf", 16, 4953),
        ("ndfl", 16, 58201),
        ("ndfla", 16, 34830),
        ("ndflal", 16, 36910),
        ("ndflale", 16, 34586),
        ("ndflalem", 16, 37658),
        ("ndflaleme", 16, 45559),
        ("ol2j34lj", 10, 318),
        ("asdfas23", 10, 503),
        ("9um3o34fd", 10, 758),
        ("a234d", 10, 281),
        ("a3f", 10, 767),
        ("3nja9", 10, 581),
        ("2459345938032343", 10, 146),
        ("7777a88a8a8a8", 10, 342),
        ("asdfjklkj3k", 10, 861),
        ("adfk32l", 10, 1011),
        ("zzzzzzzzzzz", 10, 944),
    ];
    for (w, bits, want) in cases {
        assert_eq!(hash(w, *bits), *want, "hash({w:?}, {bits})");
    }
}

#[test]
fn hash_ignores_case() {
    assert_eq!(hash("3NJA9", 10), 581);
    assert_eq!(hash("3nJa9", 10), 581);
}

#[test]
fn keywords_are_lowercased_deduplicated_and_at_least_three_chars() {
    assert_eq!(
        qrp::keywords("The_Beatles - Let It Be (the beatles).MP3"),
        ["the", "beatles", "let", "mp3"]
    );
}

#[test]
fn reset_golden_bytes() {
    let r = RouteUpdate::Reset {
        table_length: 65536,
        infinity: 7,
    };
    assert_eq!(r.to_bytes(), [0x00, 0x00, 0x00, 0x01, 0x00, 0x07]);
    assert_eq!(
        RouteUpdate::decode(&[0x00, 0x00, 0x40, 0x00, 0x00, 0x02]),
        Ok(RouteUpdate::Reset {
            table_length: 16384,
            infinity: 2
        })
    );
}

#[test]
fn patch_golden_bytes_four_bit_entries_high_nibble_first() {
    let mut t = Table::new(8, 7).unwrap();
    t.set_present(1);
    t.set_present(6);
    let ups = t.encode_updates(None, 4, false, 4096).unwrap();
    let bytes: Vec<Vec<u8>> = ups.iter().map(RouteUpdate::to_bytes).collect();
    assert_eq!(
        bytes,
        [
            vec![0x00, 8, 0, 0, 0, 7],
            vec![0x01, 1, 1, 0, 4, 0x0A, 0x00, 0x00, 0xA0]
        ]
    );
}

#[test]
fn patch_golden_bytes_eight_bit_entries() {
    let mut t = Table::new(8, 2).unwrap();
    t.set_present(0);
    let ups = t.encode_updates(None, 8, false, 4096).unwrap();
    assert_eq!(
        ups[1].to_bytes(),
        [0x01, 1, 1, 0, 8, 0xFF, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn receiver_applies_a_hand_made_zlib_stream_split_across_fragments() {
    // A zlib stream with one stored block holding 4 bytes (8 four-bit entries): header
    // 78 01, block header 01 len nlen, data, Adler-32 big-endian.
    let data = [0x0Au8, 0x00, 0x00, 0xA0];
    let (mut a, mut b) = (1u32, 0u32);
    for x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    let mut z = vec![0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF];
    z.extend_from_slice(&data);
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut rx = Receiver::new();
    assert_eq!(
        rx.apply(&RouteUpdate::Reset {
            table_length: 8,
            infinity: 7
        }),
        Ok(Applied::Reset)
    );
    let (f1, f2) = z.split_at(6);
    let frag = |n, d: &[u8]| {
        RouteUpdate::Patch(Patch {
            seq_no: n,
            seq_size: 2,
            compressor: Compressor::Zlib,
            entry_bits: 4,
            data: d.to_vec(),
        })
    };
    assert_eq!(rx.apply(&frag(1, f1)), Ok(Applied::Fragment));
    assert_eq!(rx.apply(&frag(2, f2)), Ok(Applied::Patched));
    let t = rx.table().unwrap();
    let present: Vec<u32> = (0..8).filter(|i| t.is_present(*i)).collect();
    assert_eq!(present, [1, 6]);
}

#[test]
fn a_second_patch_adds_to_the_table_and_can_clear_slots() {
    let mut a = Table::new(1024, 7).unwrap();
    a.insert_text("alpha bravo charlie");
    let mut b = Table::new(1024, 7).unwrap();
    b.insert_text("bravo delta");
    let mut rx = Receiver::new();
    for u in a.encode_updates(None, 4, true, 64).unwrap() {
        rx.apply(&RouteUpdate::decode(&u.to_bytes()).unwrap())
            .unwrap();
    }
    assert_eq!(rx.table(), Some(&a));
    let ups = b.encode_updates(Some(&a), 4, true, 64).unwrap();
    assert!(
        matches!(ups[0], RouteUpdate::Patch(_)),
        "same size: no RESET"
    );
    for u in ups {
        rx.apply(&u).unwrap();
    }
    assert_eq!(rx.table(), Some(&b));
    assert!(b.encode_updates(Some(&b), 4, true, 64).unwrap().is_empty());
}

#[test]
fn may_match_requires_every_keyword() {
    let mut t = Table::new(65536, 7).unwrap();
    t.insert_text("Miles Davis - So What.mp3");
    assert!(t.may_match_query("davis what"));
    assert!(t.may_match_query("MILES"));
    assert!(!t.may_match_query("davis coltrane"));
    assert!(!t.may_match_query("coltrane"));
}

#[test]
fn merge_maps_tables_of_other_sizes_exactly() {
    let mut small = Table::new(8192, 2).unwrap();
    small.insert_text("rare-keyword-xyz");
    let mut big = Table::new(131072, 7).unwrap();
    big.insert_text("another file");
    let mut up = Table::new(65536, 7).unwrap();
    up.merge(&small);
    up.merge(&big);
    assert!(up.may_match_query("rare keyword xyz"));
    assert!(up.may_match_query("another file"));
    assert!(!up.may_match_query("missing"));
    assert_eq!(up.present_count(), 8 /* 3 words x 8 slots */ * 3 + 2);
}

#[test]
fn absurd_or_malformed_resets_are_rejected() {
    assert_eq!(
        RouteUpdate::decode(&[0, 0, 0, 0, 0x80, 7]),
        Err(QrpError::BadTableSize(1 << 31))
    );
    assert_eq!(
        RouteUpdate::decode(&[0, 3, 0, 0, 0, 7]),
        Err(QrpError::BadTableSize(3))
    );
    assert_eq!(
        RouteUpdate::decode(&[0, 0, 4, 0, 0, 0]),
        Err(QrpError::BadInfinity(0))
    );
    assert_eq!(
        RouteUpdate::decode(&[0, 0, 4, 0]),
        Err(QrpError::Truncated("RESET"))
    );
    assert_eq!(RouteUpdate::decode(&[]), Err(QrpError::Empty));
    assert_eq!(RouteUpdate::decode(&[2]), Err(QrpError::UnknownVariant(2)));
    assert_eq!(
        RouteUpdate::decode(&[1, 2, 1, 0, 4]),
        Err(QrpError::BadSequence {
            seq_no: 2,
            seq_size: 1
        })
    );
    assert_eq!(
        RouteUpdate::decode(&[1, 1, 1, 0, 3]),
        Err(QrpError::BadEntryBits(3))
    );
}

#[test]
fn a_zlib_bomb_is_cut_at_the_table_size() {
    let big = Table::new(8, 7).unwrap();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 20]).unwrap();
    let data = z.finish().unwrap();
    let mut rx = Receiver::new();
    rx.apply(&RouteUpdate::Reset {
        table_length: big.size(),
        infinity: 7,
    })
    .unwrap();
    let p = RouteUpdate::Patch(Patch {
        seq_no: 1,
        seq_size: 1,
        compressor: Compressor::Zlib,
        entry_bits: 8,
        data,
    });
    assert_eq!(rx.apply(&p), Err(QrpError::PatchTooLong(8)));
    assert_eq!(rx.table(), Some(&big), "the old table stays");
}

#[test]
fn out_of_order_fragments_and_patches_without_reset_are_errors() {
    let mut rx = Receiver::new();
    let p = |n| {
        RouteUpdate::Patch(Patch {
            seq_no: n,
            seq_size: 2,
            compressor: Compressor::None,
            entry_bits: 4,
            data: vec![0; 2],
        })
    };
    assert_eq!(rx.apply(&p(1)), Err(QrpError::NoTable));
    rx.apply(&RouteUpdate::Reset {
        table_length: 8,
        infinity: 7,
    })
    .unwrap();
    assert_eq!(
        rx.apply(&p(2)),
        Err(QrpError::OutOfOrder {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(rx.apply(&p(1)), Ok(Applied::Fragment));
    assert_eq!(
        rx.apply(&p(1)),
        Ok(Applied::Fragment),
        "seq 1 restarts the sequence"
    );
    assert_eq!(rx.apply(&p(2)), Ok(Applied::Patched));
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic_decode_or_receiver(seq in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
        let mut rx = Receiver::new();
        let _ = rx.apply(&RouteUpdate::Reset { table_length: 64, infinity: 7 });
        for p in &seq {
            if let Ok(u) = RouteUpdate::decode(p) {
                prop_assert_eq!(RouteUpdate::decode(&u.to_bytes()), Ok(u.clone()));
                let _ = rx.apply(&u);
            }
        }
    }

    #[test]
    fn any_table_round_trips_through_updates(
        bits in 3u8..=12, infinity in 1u8..=7, words in proptest::collection::vec("[a-z]{3,8}", 0..40),
        old_words in proptest::collection::vec("[a-z]{3,8}", 0..40),
        entry_bits in prop_oneof![Just(1u8), Just(2u8), Just(4u8), Just(8u8)], compress: bool, fragment in 32usize..300,
    ) {
        // A 2-bit entry holds -2..=1, so it can only move a slot between 1 and infinity 2.
        let infinity = if entry_bits == 2 { infinity.min(2) } else { infinity };
        let mut old = Table::new(1 << bits, infinity).unwrap();
        for w in &old_words { old.insert_word(w); }
        let mut t = Table::new(1 << bits, infinity).unwrap();
        for w in &words { t.insert_word(w); }
        let mut rx = Receiver::new();
        for u in old.encode_updates(None, entry_bits, compress, fragment).unwrap() {
            rx.apply(&RouteUpdate::decode(&u.to_bytes()).unwrap()).unwrap();
        }
        prop_assert_eq!(rx.table(), Some(&old));
        for u in t.encode_updates(Some(&old), entry_bits, compress, fragment).unwrap() {
            rx.apply(&RouteUpdate::decode(&u.to_bytes()).unwrap()).unwrap();
        }
        prop_assert_eq!(rx.table(), Some(&t));
        for w in &words { prop_assert!(t.may_match_query(w)); }
    }
}

#[test]
fn one_bit_patches_toggle_presence_and_two_bit_patches_add() {
    let mut rx = Receiver::new();
    rx.apply(&RouteUpdate::Reset {
        table_length: 8,
        infinity: 2,
    })
    .unwrap();
    let p = |bits, data: Vec<u8>| {
        RouteUpdate::Patch(Patch {
            seq_no: 1,
            seq_size: 1,
            compressor: Compressor::None,
            entry_bits: bits,
            data,
        })
    };
    // 1-bit, MSB first: toggle slots 0 and 7.
    assert_eq!(rx.apply(&p(1, vec![0b1000_0001])), Ok(Applied::Patched));
    let present = |rx: &Receiver| {
        (0..8)
            .filter(|i| rx.table().unwrap().is_present(*i))
            .collect::<Vec<u32>>()
    };
    assert_eq!(present(&rx), [0, 7]);
    assert_eq!(rx.apply(&p(1, vec![0b1100_0000])), Ok(Applied::Patched));
    assert_eq!(present(&rx), [1, 7]);
    // 2-bit entries: 0b11 = -1 (present), 0b01 = +1 (absent); slots 0..4 then 4..8.
    assert_eq!(
        rx.apply(&p(2, vec![0b1100_0000, 0b0000_0001])),
        Ok(Applied::Patched)
    );
    assert_eq!(present(&rx), [0, 1]);
    let mut t = Table::new(8, 2).unwrap();
    t.set_present(2);
    assert_eq!(
        t.encode_updates(None, 1, false, 64).unwrap()[1].to_bytes(),
        [1, 1, 1, 0, 1, 0b0010_0000]
    );
    assert_eq!(
        t.encode_updates(None, 2, false, 64).unwrap()[1].to_bytes(),
        [1, 1, 1, 0, 2, 0b0000_1100, 0]
    );
    let wide = Table::new(8, 7).unwrap();
    let mut full = wide.clone();
    full.set_present(0);
    assert_eq!(
        full.encode_updates(Some(&wide), 2, false, 64),
        Err(QrpError::EntryOutOfRange(2))
    );
}

#[test]
fn more_than_255_fragments_is_an_error() {
    let t = Table::new(4096, 7).unwrap();
    assert_eq!(
        t.encode_updates(None, 8, false, 8),
        Err(QrpError::TooManyFragments)
    );
    assert_eq!(
        t.encode_updates(None, 3, false, 8),
        Err(QrpError::BadEntryBits(3))
    );
}

#[test]
fn a_table_of_another_size_or_infinity_starts_with_a_reset() {
    let old = Table::new(1024, 7).unwrap();
    let mut t = Table::new(2048, 7).unwrap();
    t.insert_word("abc");
    let ups = t.encode_updates(Some(&old), 4, true, 4096).unwrap();
    assert_eq!(
        ups[0],
        RouteUpdate::Reset {
            table_length: 2048,
            infinity: 7
        }
    );
    let mut t2 = Table::new(1024, 2).unwrap();
    t2.insert_word("abc");
    assert_eq!(
        t2.encode_updates(Some(&old), 4, true, 4096).unwrap()[0],
        RouteUpdate::Reset {
            table_length: 1024,
            infinity: 2
        }
    );
}

proptest! {
    #[test]
    fn keywords_and_matching_never_panic_on_any_text(text in "\\PC{0,200}", bits in 3u8..=16) {
        let kws = qrp::keywords(&text);
        prop_assert!(kws.len() <= qrp::MAX_KEYWORDS);
        let mut t = Table::new(1 << bits, 7).unwrap();
        t.insert_text(&text);
        prop_assert!(t.may_match_query(&text), "a name always matches a query made of it");
    }
}

#[test]
fn urn_queries_match_when_any_urn_is_present() {
    let urn = "urn:sha1:PLSTHIPQGSSZTS5FJUPAKUZWUGYQYPFB";
    let mut t = Table::new(65536, 7).unwrap();
    t.insert_text("some song.mp3");
    t.insert_urn(urn);
    assert!(t.may_match("", &[urn]));
    assert!(t.may_match(
        "unrelated words",
        &["urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", urn]
    ));
    assert!(!t.may_match("song", &["urn:sha1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]));
    assert!(t.may_match("song", &[]));
}
