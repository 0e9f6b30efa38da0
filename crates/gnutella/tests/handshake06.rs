//! The 0.6 handshake: golden transcripts (0.6<->0.6 with deflate, 0.4->0.6, refusal with
//! X-Try-Ultrapeers), bounds, hostile input, and the deflate stream round trip.

// A test, not a core: it may use the disk, sockets and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;

use proptest::prelude::*;
use servent_gnutella::handshake06::{
    Decision, Deflater, Handshake, HandshakeConfig, HandshakeError, Inflater, MAX_BLOCK, Progress,
    Version, parse_block,
};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn leaf() -> HandshakeConfig {
    HandshakeConfig::new("servent/0.1", false, Some(a("10.0.0.1:6346")))
}

fn up() -> HandshakeConfig {
    HandshakeConfig::new("servent/0.1", true, Some(a("10.0.0.2:6346")))
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

#[test]
fn golden_06_leaf_to_ultrapeer_with_deflate_both_ways() {
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    let connect = c.take_output();
    assert_eq!(
        text(&connect),
        "GNUTELLA CONNECT/0.6\r\nUser-Agent: servent/0.1\r\nListen-IP: 10.0.0.1:6346\r\nRemote-IP: 10.0.0.2\r\n\
         X-Ultrapeer: False\r\nX-Query-Routing: 0.1\r\nAccept-Encoding: deflate\r\n\r\n"
    );
    let Progress::Decide {
        version: Version::V06,
        peer,
    } = s.feed(&connect).unwrap()
    else {
        panic!("server must decide")
    };
    assert_eq!(peer.ultrapeer, Some(false));
    assert_eq!(peer.listen, Some(a("10.0.0.1:6346")));
    assert!(peer.accept_deflate);
    let p = s
        .respond(Decision::Accept {
            ultrapeer_needed: Some(false),
            try_ultrapeers: vec![a("10.0.0.3:6346")],
        })
        .unwrap();
    assert_eq!(p, Progress::NeedMore);
    let ok = s.take_output();
    assert_eq!(
        text(&ok),
        "GNUTELLA/0.6 200 OK\r\nUser-Agent: servent/0.1\r\nListen-IP: 10.0.0.2:6346\r\nRemote-IP: 10.0.0.1\r\n\
         X-Ultrapeer: True\r\nX-Query-Routing: 0.1\r\nX-Ultrapeer-Query-Routing: 0.1\r\nX-Degree: 32\r\n\
         X-Dynamic-Querying: 0.1\r\nX-Max-TTL: 4\r\nAccept-Encoding: deflate\r\nX-Ultrapeer-Needed: False\r\n\
         X-Try-Ultrapeers: 10.0.0.3:6346\r\nContent-Encoding: deflate\r\n\r\n"
    );
    let Progress::Decide { peer, .. } = c.feed(&ok).unwrap() else {
        panic!("client must decide")
    };
    assert_eq!(peer.degree, Some(32));
    assert_eq!(peer.dynamic_querying.as_deref(), Some("0.1"));
    assert_eq!(peer.try_ultrapeers, [a("10.0.0.3:6346")]);
    let Progress::Established(cl) = c
        .respond(Decision::Accept {
            ultrapeer_needed: None,
            try_ultrapeers: vec![],
        })
        .unwrap()
    else {
        panic!("client link")
    };
    assert!(cl.deflate_in && cl.deflate_out);
    let mut fin = c.take_output();
    assert_eq!(
        text(&fin),
        "GNUTELLA/0.6 200 OK\r\nUser-Agent: servent/0.1\r\nContent-Encoding: deflate\r\n\r\n"
    );
    // The first compressed stream bytes arrive with the final block.
    let mut z = Vec::new();
    Deflater::new().compress(b"hello", &mut z).unwrap();
    fin.extend_from_slice(&z);
    let Progress::Established(sl) = s.feed(&fin).unwrap() else {
        panic!("server link")
    };
    assert!(sl.deflate_in && sl.deflate_out);
    assert_eq!(sl.leftover, z);
    assert_eq!(s.feed(b"x"), Err(HandshakeError::Finished));
}

#[test]
fn golden_04_initiator_is_answered_gnutella_ok() {
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    let Progress::Decide {
        version: Version::V04,
        ..
    } = s.feed(b"GNUTELLA CONNECT/0.4\n\n").unwrap()
    else {
        panic!("0.4 connect must be recognised")
    };
    let Progress::Established(l) = s
        .respond(Decision::Accept {
            ultrapeer_needed: None,
            try_ultrapeers: vec![],
        })
        .unwrap()
    else {
        panic!("0.4 link")
    };
    assert_eq!(s.take_output(), b"GNUTELLA OK\n\n");
    assert_eq!(
        (l.version, l.deflate_in, l.deflate_out),
        (Version::V04, false, false)
    );
}

#[test]
fn golden_refusal_carries_x_try_ultrapeers() {
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    s.feed(&c.take_output()).unwrap();
    let p = s
        .respond(Decision::Refuse {
            code: 503,
            reason: "Busy\r\nEvil: yes".into(),
            try_ultrapeers: vec![a("10.0.0.3:6346"), a("10.0.0.4:6347")],
        })
        .unwrap();
    assert_eq!(p, Progress::Closed);
    let out = s.take_output();
    assert_eq!(
        text(&out),
        "GNUTELLA/0.6 503 BusyEvil: yes\r\nUser-Agent: servent/0.1\r\nX-Try-Ultrapeers: 10.0.0.3:6346,10.0.0.4:6347\r\n\r\n"
    );
    let Progress::Refused {
        code: 503, peer, ..
    } = c.feed(&out).unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(
        peer.try_ultrapeers,
        [a("10.0.0.3:6346"), a("10.0.0.4:6347")]
    );
}

#[test]
fn a_real_style_refusal_with_timestamps_and_x_try_is_parsed() {
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    let msg = b"GNUTELLA/0.6 503 Service unavailable\r\nX-Try: 1.2.3.4:6346 2003-06-01T10:00Z,junk, 5.6.7.8:6348\r\n\
                X-Try-Ultrapeers: 9.9.9.9:6346\r\n  ,8.8.8.8:6346\r\n\r\n";
    let Progress::Refused { code, reason, peer } = c.feed(msg).unwrap() else {
        panic!("refused")
    };
    assert_eq!((code, reason.as_str()), (503, "Service unavailable"));
    assert_eq!(peer.try_hosts, [a("1.2.3.4:6346"), a("5.6.7.8:6348")]);
    assert_eq!(
        peer.try_ultrapeers,
        [a("9.9.9.9:6346"), a("8.8.8.8:6346")],
        "continuation line folded"
    );
}

#[test]
fn byte_by_byte_delivery_gives_the_same_result() {
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    let connect = c.take_output();
    let mut last = Progress::NeedMore;
    for b in &connect {
        last = s.feed(std::slice::from_ref(b)).unwrap();
    }
    assert!(matches!(
        last,
        Progress::Decide {
            version: Version::V06,
            ..
        }
    ));
}

#[test]
fn oversized_or_garbage_blocks_are_errors() {
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    let mut big = b"GNUTELLA CONNECT/0.6\r\nX-Pad: ".to_vec();
    big.resize(MAX_BLOCK + 10, b'a');
    assert_eq!(s.feed(&big), Err(HandshakeError::BlockTooLarge));
    let many: String = std::iter::once("GNUTELLA CONNECT/0.6\r\n".to_string())
        .chain((0..100).map(|i| format!("H{i}: v\r\n")))
        .collect();
    assert_eq!(
        parse_block(many.as_bytes()),
        Err(HandshakeError::TooManyHeaders)
    );
    assert!(matches!(
        parse_block(b"GET / HTTP/1.1\r\n\r\n"),
        Err(HandshakeError::BadStartLine(_))
    ));
    assert!(matches!(
        parse_block(b"GNUTELLA CONNECT/0.6\r\nno colon\r\n\r\n"),
        Err(HandshakeError::BadHeader(_))
    ));
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    assert!(matches!(
        c.feed(b"GNUTELLA/0.6 2000 OK\r\n\r\n"),
        Err(HandshakeError::BadStartLine(_))
    ));
    assert_eq!(
        Handshake::inbound(up(), a("10.0.0.1:1")).respond(Decision::Accept {
            ultrapeer_needed: None,
            try_ultrapeers: vec![]
        }),
        Err(HandshakeError::NoDecisionPending)
    );
}

#[test]
fn deflate_stream_round_trips_message_by_message() {
    let mut d = Deflater::new();
    let mut i = Inflater::new();
    let msgs: Vec<Vec<u8>> = (0..50u32)
        .map(|n| (0..n * 37).map(|k| (k * n % 251) as u8).collect())
        .collect();
    for m in &msgs {
        let mut z = Vec::new();
        d.compress(m, &mut z).unwrap();
        let mut out = Vec::new();
        let used = i.decompress(&z, &mut out, 1 << 20).unwrap();
        assert_eq!(used, z.len());
        assert_eq!(&out, m, "each message readable as soon as it is flushed");
    }
}

#[test]
fn inflater_stops_at_the_output_limit_and_resumes() {
    let mut z = Vec::new();
    Deflater::new()
        .compress(&vec![7u8; 100_000], &mut z)
        .unwrap();
    let mut i = Inflater::new();
    let mut got = Vec::new();
    let mut rest: &[u8] = &z;
    for _ in 0..1000 {
        let mut out = Vec::new();
        let used = i.decompress(rest, &mut out, 1000).unwrap();
        assert!(out.len() <= 1000);
        got.extend_from_slice(&out);
        rest = &rest[used..];
        if got.len() == 100_000 {
            break;
        }
    }
    assert!(
        got.len() == 100_000 && got.iter().all(|b| *b == 7),
        "got {} bytes",
        got.len()
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_either_side(data in proptest::collection::vec(any::<u8>(), 0..600), split in 0usize..600) {
        let cut = split.min(data.len());
        for mut h in [Handshake::inbound(up(), a("10.0.0.1:1")), Handshake::outbound(leaf(), a("10.0.0.2:2"))] {
            if let Ok(Progress::Decide { .. }) = h.feed(&data[..cut]) {
                let _ = h.respond(Decision::Accept { ultrapeer_needed: None, try_ultrapeers: vec![] });
            }
            let _ = h.feed(&data[cut..]);
        }
        let _ = Inflater::new().decompress(&data, &mut Vec::new(), 1 << 16);
    }

    #[test]
    fn deflate_round_trips_any_chunks(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..10)) {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        for c in &chunks {
            let mut z = Vec::new();
            d.compress(c, &mut z).unwrap();
            let mut out = Vec::new();
            prop_assert_eq!(i.decompress(&z, &mut out, usize::MAX).unwrap(), z.len());
            prop_assert_eq!(&out, c);
        }
    }
}

#[test]
fn the_initiator_can_refuse_at_the_third_step() {
    let mut c = Handshake::outbound(up(), a("10.0.0.2:6346"));
    let mut s = Handshake::inbound(leaf(), a("10.0.0.1:40000"));
    s.feed(&c.take_output()).unwrap();
    s.respond(Decision::Accept {
        ultrapeer_needed: None,
        try_ultrapeers: vec![],
    })
    .unwrap();
    let Progress::Decide { peer, .. } = c.feed(&s.take_output()).unwrap() else {
        panic!("decide")
    };
    assert_eq!(
        peer.ultrapeer,
        Some(false),
        "an ultrapeer may refuse a leaf that accepted it as a peer"
    );
    let p = c
        .respond(Decision::Refuse {
            code: 503,
            reason: "Shielded leaf".into(),
            try_ultrapeers: vec![],
        })
        .unwrap();
    assert_eq!(p, Progress::Closed);
    let out = c.take_output();
    assert_eq!(
        text(&out),
        "GNUTELLA/0.6 503 Shielded leaf\r\nUser-Agent: servent/0.1\r\n\r\n"
    );
    assert!(matches!(
        s.feed(&out).unwrap(),
        Progress::Refused { code: 503, .. }
    ));
}

#[test]
fn a_final_block_pipelined_before_the_decision_completes_on_respond() {
    let mut c = Handshake::outbound(leaf(), a("10.0.0.2:6346"));
    let mut s = Handshake::inbound(up(), a("10.0.0.1:40000"));
    let mut connect = c.take_output();
    connect.extend_from_slice(b"GNUTELLA/0.6 200 OK\r\n\r\nstream");
    assert!(matches!(s.feed(&connect).unwrap(), Progress::Decide { .. }));
    let Progress::Established(l) = s
        .respond(Decision::Accept {
            ultrapeer_needed: None,
            try_ultrapeers: vec![],
        })
        .unwrap()
    else {
        panic!("established from buffered bytes")
    };
    assert_eq!(l.leftover, b"stream");
    assert!(!l.deflate_in && l.deflate_out);
}
