#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! BEP 9 `ut_metadata`: the message codec against the BEP's examples, the server helper, and
//! the multi-peer fetch (timeouts, rejects, lying peers, hash mismatch and retry).

use std::time::Duration;

use proptest::prelude::*;
use servent_bittorrent::metadata::{
    BadReason, FetchConfig, FetchEvent, MAX_METADATA_SIZE, MetadataError, MetadataFetch,
    MetadataMsg, PIECE_SIZE, serve,
};
use servent_bittorrent::metainfo::InfoHash;
use servent_core::Instant;
use sha1::{Digest, Sha1};

#[test]
fn bep9_example_messages_decode_and_encode_byte_for_byte() {
    let req = b"d8:msg_typei0e5:piecei0ee";
    assert_eq!(
        MetadataMsg::decode(req),
        Ok(MetadataMsg::Request { piece: 0 })
    );
    assert_eq!(MetadataMsg::Request { piece: 0 }.encode(), req);

    let mut data = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
    data.extend(std::iter::repeat_n(b'x', PIECE_SIZE));
    let m = MetadataMsg::decode(&data).unwrap();
    assert_eq!(
        m,
        MetadataMsg::Data {
            piece: 0,
            total_size: 34256,
            data: &data[data.len() - PIECE_SIZE..]
        }
    );
    assert_eq!(m.encode(), data);

    let rej = b"d8:msg_typei2e5:piecei0ee";
    assert_eq!(
        MetadataMsg::decode(rej),
        Ok(MetadataMsg::Reject { piece: 0 })
    );
    assert_eq!(MetadataMsg::Reject { piece: 0 }.encode(), rej);
}

#[test]
fn malformed_messages_give_typed_errors() {
    let cases: &[(&[u8], MetadataError)] = &[
        (b"", MetadataError::NotDict),
        (b"li0ee", MetadataError::NotDict),
        (b"d5:piecei0ee", MetadataError::Field("msg_type")),
        (b"d8:msg_typei0ee", MetadataError::Field("piece")),
        (b"d8:msg_typei0e5:piecei-1ee", MetadataError::Field("piece")),
        (
            b"d8:msg_typei0e5:piecei512ee",
            MetadataError::Field("piece"),
        ),
        (b"d8:msg_typei0e5:piecei0eexx", MetadataError::Trailing(2)),
        (
            b"d8:msg_typei1e5:piecei0ee",
            MetadataError::Field("total_size"),
        ),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei0ee",
            MetadataError::Size(0),
        ),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei8388609ee",
            MetadataError::Size(8_388_609),
        ),
        (b"d8:msg_typei7e5:piecei0ee", MetadataError::UnknownType(7)),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            MetadataMsg::decode(bytes).as_ref(),
            Err(want),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(MetadataError::UnknownType(7).is_ignorable());
    let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei34256ee".to_vec();
    long.extend(std::iter::repeat_n(0, PIECE_SIZE + 1));
    assert_eq!(
        MetadataMsg::decode(&long),
        Err(MetadataError::PieceTooLong(PIECE_SIZE + 1))
    );
}

#[test]
fn serve_answers_pieces_and_rejects_past_the_end() {
    let info: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    match serve(&info, 2) {
        MetadataMsg::Data {
            piece,
            total_size,
            data,
        } => {
            assert_eq!((piece, total_size), (2, 40_000));
            assert_eq!(data, &info[32_768..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(serve(&info, 3), MetadataMsg::Reject { piece: 3 });
    assert_eq!(serve(&[], 0), MetadataMsg::Reject { piece: 0 });
    assert_eq!(
        serve(&info, u32::MAX),
        MetadataMsg::Reject { piece: u32::MAX }
    );
}

/// A fake info dictionary of `len` bytes and its info-hash.
fn info_of(len: usize) -> (Vec<u8>, InfoHash) {
    let info: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let h = InfoHash(Sha1::digest(&info).into());
    (info, h)
}

/// Answers every request from the given peers with `serve(info)`; returns the events.
fn run(
    fetch: &mut MetadataFetch<u32>,
    now: Instant,
    answer: impl Fn(u32, u32) -> Option<Vec<u8>>,
) -> Vec<FetchEvent<u32>> {
    let mut events = Vec::new();
    for _ in 0..10_000 {
        let Some((peer, piece)) = fetch.poll_request(now) else {
            break;
        };
        if let Some(payload) = answer(peer, piece) {
            fetch.handle_message(now, peer, &payload);
        }
        while let Some(e) = fetch.poll_event() {
            events.push(e);
        }
    }
    while let Some(e) = fetch.poll_event() {
        events.push(e);
    }
    events
}

#[test]
fn fetch_spreads_requests_over_peers_and_completes_with_verified_bytes() {
    let (info, h) = info_of(100_000); // 7 pieces, the last one 1696 bytes
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    for p in 1..=3 {
        f.add_peer(p, info.len() as i64).unwrap();
    }
    let mut asked = Vec::new();
    let now = Instant::from_secs(1);
    while let Some(r) = f.poll_request(now) {
        asked.push(r);
    }
    assert_eq!(asked.len(), 6, "2 per peer: {asked:?}");
    for p in 1..=3 {
        assert_eq!(asked.iter().filter(|(q, _)| *q == p).count(), 2);
    }
    for (peer, piece) in asked {
        f.handle_message(now, peer, &serve(&info, piece).encode());
    }
    assert_eq!(f.progress(), (6, 7));
    let events = run(&mut f, now, |_, piece| Some(serve(&info, piece).encode()));
    assert_eq!(events, vec![FetchEvent::Complete(info)]);
    assert!(f.is_complete());
    assert_eq!(f.poll_request(now), None);
}

#[test]
fn a_peer_lying_about_total_size_or_length_is_reported_and_dropped() {
    let (info, h) = info_of(20_000);
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    f.add_peer(1u32, 20_000).unwrap();
    f.add_peer(2u32, 20_000).unwrap();
    let now = Instant::ZERO;
    let events = run(&mut f, now, |peer, piece| {
        let mut m = serve(&info, piece);
        if peer == 1 {
            if let MetadataMsg::Data { total_size, .. } = &mut m {
                *total_size += 1;
            }
        }
        Some(m.encode())
    });
    assert_eq!(
        events,
        vec![
            FetchEvent::BadPeer {
                peer: 1,
                reason: BadReason::SizeMismatch
            },
            FetchEvent::Complete(info.clone())
        ]
    );

    let mut f = MetadataFetch::new(h, FetchConfig::default());
    f.add_peer(7u32, 20_000).unwrap();
    f.handle_message(
        now,
        7,
        &MetadataMsg::Data {
            piece: 1,
            total_size: 20_000,
            data: &[0; 10],
        }
        .encode(),
    );
    assert_eq!(
        f.poll_event(),
        Some(FetchEvent::BadPeer {
            peer: 7,
            reason: BadReason::WrongLength
        })
    );
    f.add_peer(8u32, 20_000).unwrap();
    f.handle_message(now, 8, b"not bencode");
    assert_eq!(
        f.poll_event(),
        Some(FetchEvent::BadPeer {
            peer: 8,
            reason: BadReason::Malformed
        })
    );
    f.add_peer(9u32, 20_000).unwrap();
    f.handle_message(now, 9, b"d8:msg_typei9e5:piecei0ee");
    assert_eq!(f.poll_event(), None, "unknown msg_type is ignored");
}

#[test]
fn bad_metadata_is_discarded_its_senders_reported_and_the_fetch_retries_with_others() {
    let (info, h) = info_of(40_000);
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    f.add_peer(1u32, 40_000).unwrap();
    f.add_peer(2u32, 40_000).unwrap();
    f.add_peer(3u32, 40_000).unwrap();
    let now = Instant::ZERO;
    // Peer 1 corrupts its pieces (and, answering at once, serves the whole first attempt).
    let corrupt = |peer: u32, piece: u32| {
        let m = serve(&info, piece);
        let mut bytes = m.encode();
        if peer == 1 {
            if let Some(last) = bytes.last_mut() {
                *last ^= 0xFF;
            }
        }
        Some(bytes)
    };
    let events = run(&mut f, now, corrupt);
    let FetchEvent::HashMismatch { peers } = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!(peers, &vec![1]);
    // The retry went to the peers left and completed.
    assert_eq!(
        events.last(),
        Some(&FetchEvent::Complete(info)),
        "{events:?}"
    );
}

#[test]
fn a_timed_out_request_goes_to_another_peer() {
    let (info, h) = info_of(10_000);
    let cfg = FetchConfig {
        request_timeout: Duration::from_secs(5),
        per_peer: 1,
        max_peers: 8,
    };
    let mut f = MetadataFetch::new(h, cfg);
    f.add_peer(1u32, 10_000).unwrap();
    f.add_peer(2u32, 10_000).unwrap();
    let t0 = Instant::from_secs(100);
    assert_eq!(f.poll_request(t0), Some((1, 0)));
    assert_eq!(f.poll_request(t0), None, "one piece, already requested");
    assert_eq!(f.poll_timeout(), Some(Instant::from_secs(105)));
    f.handle_timeout(Instant::from_secs(104));
    assert_eq!(f.poll_request(Instant::from_secs(104)), None);
    f.handle_timeout(Instant::from_secs(105));
    assert_eq!(f.poll_request(Instant::from_secs(105)), Some((2, 0)));
    f.handle_message(Instant::from_secs(106), 2, &serve(&info, 0).encode());
    assert_eq!(f.poll_event(), Some(FetchEvent::Complete(info)));
}

#[test]
fn a_piece_every_peer_rejected_is_asked_again_after_the_timeout() {
    let (info, h) = info_of(100);
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    f.add_peer(1u32, 100).unwrap();
    let t0 = Instant::ZERO;
    assert_eq!(f.poll_request(t0), Some((1, 0)));
    f.handle_message(t0, 1, &MetadataMsg::Reject { piece: 0 }.encode());
    assert_eq!(f.poll_request(t0), None);
    let t1 = f.poll_timeout().expect("a retry is scheduled");
    f.handle_timeout(t1);
    assert_eq!(f.poll_request(t1), Some((1, 0)));
    f.handle_message(t1, 1, &serve(&info, 0).encode());
    assert_eq!(f.poll_event(), Some(FetchEvent::Complete(info)));
}

#[test]
fn the_size_most_peers_announce_wins_and_absurd_sizes_are_refused() {
    let (info, h) = info_of(5_000);
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    assert_eq!(f.add_peer(1u32, 0), Err(MetadataError::Size(0)));
    assert_eq!(
        f.add_peer(1u32, i64::from(MAX_METADATA_SIZE) + 1),
        Err(MetadataError::Size(i64::from(MAX_METADATA_SIZE) + 1))
    );
    f.add_peer(1u32, 999_999).unwrap();
    f.remove_peer(1);
    f.add_peer(2u32, 5_000).unwrap();
    f.add_peer(3u32, 5_000).unwrap();
    let events = run(&mut f, Instant::ZERO, |_, piece| {
        Some(serve(&info, piece).encode())
    });
    assert_eq!(events, vec![FetchEvent::Complete(info)]);
}

#[test]
fn removing_a_peer_hands_its_requests_to_others() {
    let (info, h) = info_of(16_384 * 2);
    let mut f = MetadataFetch::new(h, FetchConfig::default());
    f.add_peer(1u32, info.len() as i64).unwrap();
    let now = Instant::ZERO;
    assert_eq!(f.poll_request(now), Some((1, 0)));
    assert_eq!(f.poll_request(now), Some((1, 1)));
    f.add_peer(2u32, info.len() as i64).unwrap();
    assert_eq!(f.poll_request(now), None);
    f.remove_peer(1);
    assert_eq!(f.poll_request(now), Some((2, 0)));
    assert_eq!(f.poll_request(now), Some((2, 1)));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoder_or_the_fetch(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        size in 1i64..100_000,
    ) {
        if let Ok(m) = MetadataMsg::decode(&bytes) {
            // What decodes re-encodes and decodes to the same message.
            let again = m.encode();
            prop_assert_eq!(MetadataMsg::decode(&again), Ok(m));
        }
        let mut f = MetadataFetch::new(InfoHash([0; 20]), FetchConfig::default());
        f.add_peer(1u32, size).unwrap();
        let _ = f.poll_request(Instant::ZERO);
        f.handle_message(Instant::ZERO, 1, &bytes);
        let mut prefixed = b"d8:msg_typei1e5:piecei0e10:total_sizei".to_vec();
        prefixed.extend(format!("{size}ee").bytes());
        prefixed.extend(&bytes);
        f.handle_message(Instant::ZERO, 1, &prefixed);
        while f.poll_event().is_some() {}
    }

    #[test]
    fn data_messages_round_trip(piece in 0u32..512, total in 1u32..=MAX_METADATA_SIZE,
                                data in proptest::collection::vec(any::<u8>(), 0..=PIECE_SIZE)) {
        let m = MetadataMsg::Data { piece, total_size: total, data: &data };
        let bytes = m.encode();
        prop_assert_eq!(MetadataMsg::decode(&bytes), Ok(m));
    }
}
