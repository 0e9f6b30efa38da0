//! Bitcoin P2P message codecs against real captured bytes, round trips,
//! strict limits and arbitrary input.
use proptest::prelude::*;
use servent_coin::wire::p2p::{
    GetHeaders, HEADER_LEN, Inv, MAX_INV, MAX_PAYLOAD, Message, NetAddr, P2pError, Version, frame,
    parse,
};
use servent_coin::{Params, genesis_regtest};

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

const MAINNET: [u8; 4] = [0xf9, 0xbe, 0xb4, 0xd9];
const REGTEST: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];

/// A version message sent by Bitcoin Core 22.0 on mainnet (test data of
/// github.com/22388o/bitcodec-bitcoin-p2p, tests/data/version_message.ts).
const CORE_22_VERSION: &str = "f9beb4d976657273696f6e00000000006600000097302af5801101000904000000000000e577646100000000000000000000000000000000000000000000ffff1fdf0364085e090400000000000000000000000000000000000000000000000072036dbc6d407f7f102f5361746f7368693a32322e302e302f26c00a0001";

#[test]
fn bitcoin_core_22_version_message_decodes_field_by_field_and_reencodes_byte_exact() {
    let raw = unhex(CORE_22_VERSION);
    let (m, used) = parse(&raw, MAINNET).unwrap().unwrap();
    assert_eq!(used, raw.len());
    let Message::Version(v) = &m else {
        panic!("not a version: {m:?}")
    };
    assert_eq!(v.version, 70016);
    assert_eq!(v.services, 0x0409);
    assert_eq!(v.timestamp, 1_633_974_245);
    let mut ip = [0u8; 16];
    ip[10] = 0xff;
    ip[11] = 0xff;
    ip[12..].copy_from_slice(&[31, 223, 3, 100]);
    assert_eq!(
        v.receiver,
        NetAddr {
            services: 0,
            ip,
            port: 2142
        }
    );
    assert_eq!(v.sender.port, 0);
    assert_eq!(v.nonce, 0x7f7f_406d_bc6d_0372);
    assert_eq!(v.user_agent, "/Satoshi:22.0.0/");
    assert_eq!(v.start_height, 704_550);
    assert!(v.relay);
    assert_eq!(frame(MAINNET, &m), raw);
    // The same bytes are not a regtest message.
    assert_eq!(parse(&raw, REGTEST), Err(P2pError::BadMagic(MAINNET)));
}

/// Messages captured from a Bitcoin Core regtest node (github.com/MithrilMan/MithrilShards,
/// doc/_private/bitcoin/raw-messages.md): sendheaders, ping, then getheaders followed
/// by feefilter in one buffer.
#[test]
fn bitcoin_core_regtest_captures_decode_and_reencode_byte_exact() {
    let sendheaders =
        unhex("FA BF B5 DA 73 65 6E 64 68 65 61 64 65 72 73 00 00 00 00 00 5D F6 E0 E2");
    let (m, _) = parse(&sendheaders, REGTEST).unwrap().unwrap();
    assert_eq!(m, Message::SendHeaders);
    assert_eq!(frame(REGTEST, &m), sendheaders);

    let ping = unhex(
        "FA BF B5 DA 70 69 6E 67 00 00 00 00 00 00 00 00 08 00 00 00 39 AD 44 A3 0C 8E 5A C3 A0 0D F3 2F",
    );
    let (m, _) = parse(&ping, REGTEST).unwrap().unwrap();
    assert_eq!(m, Message::Ping(0x2ff3_0da0_c35a_8e0c));
    assert_eq!(frame(REGTEST, &m), ping);

    let two = unhex(
        "FA BF B5 DA 67 65 74 68 65 61 64 65 72 73 00 00 E5 00 00 00 8A 94 35 BC 7F 11 01 00 06 2A 82 9C AD 81 6A 70 3D E3 5F 2B 18 9A 10 DA 4B 08 93 0A E9 6E ED C0 D7 32 12 8B 9A 91 C1 3B 51 8C 68 7D 8E D2 23 90 00 16 C6 70 50 AB 04 4A 6F 3A B0 4C 00 29 78 BF 5E 7B 7A A9 2D 56 4B 03 58 10 94 3F CC 3B C5 06 99 5A 7F 37 6B A1 6D 6C 80 CF 59 6B AC CC D9 09 34 11 F6 AE 44 D1 04 BF 42 97 FB CE AF 53 A8 3C FC 91 6A CD E8 11 6B C4 9E D3 62 AB A6 EC 34 C5 91 99 20 DC 43 06 E0 29 3B BA 09 3E E7 1E 02 18 A0 7C 4D 92 B0 47 29 0D FD 5B C0 80 89 76 58 E6 A8 89 90 1B 5A BD C3 F2 5B 06 22 6E 46 11 1A 0B 59 CA AF 12 60 43 EB 5B BF 28 C3 4F 3A 5E 33 2A 1F C7 B2 B7 3C F1 88 91 0F 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 FA BF B5 DA 66 65 65 66 69 6C 74 65 72 00 00 00 08 00 00 00 E8 0F D1 9F E8 03 00 00 00 00 00 00",
    );
    let (m, used) = parse(&two, REGTEST).unwrap().unwrap();
    let Message::GetHeaders(g) = &m else {
        panic!("not getheaders: {m:?}")
    };
    assert_eq!(g.version, 70015);
    assert_eq!(g.locator.len(), 6);
    assert!(
        g.locator.last() == Some(&genesis_regtest().header.hash()),
        "a locator ends with the regtest genesis"
    );
    assert_eq!(g.stop, [0; 32]);
    assert_eq!(frame(REGTEST, &m), two[..used]);
    let (m2, used2) = parse(&two[used..], REGTEST).unwrap().unwrap();
    assert_eq!(m2, Message::FeeFilter(1000));
    assert_eq!(used + used2, two.len());
}

fn samples() -> Vec<Message> {
    let g = genesis_regtest();
    let addr = NetAddr {
        services: 1,
        ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1],
        port: 18444,
    };
    vec![
        Message::Version(Version {
            version: 70015,
            services: 1,
            timestamp: 1_700_000_000,
            receiver: addr.clone(),
            sender: addr.clone(),
            nonce: 42,
            user_agent: "/servent:0.1/".into(),
            start_height: 7,
            relay: false,
        }),
        Message::Verack,
        Message::Ping(1),
        Message::Pong(u64::MAX),
        Message::Addr(vec![(1_700_000_000, addr)]),
        Message::GetAddr,
        Message::Inv(vec![Inv {
            kind: 2,
            hash: g.header.hash(),
        }]),
        Message::GetData(vec![Inv {
            kind: 1,
            hash: g.txs[0].txid(),
        }]),
        Message::NotFound(vec![]),
        Message::GetHeaders(GetHeaders {
            version: 70015,
            locator: vec![[1; 32]],
            stop: [0; 32],
        }),
        Message::Headers(vec![g.header.clone(), g.header.clone()]),
        Message::Block(g.clone()),
        Message::Tx(g.txs[0].clone()),
        Message::SendHeaders,
        Message::FeeFilter(1000),
    ]
}

#[test]
fn every_message_round_trips_and_waits_for_its_last_byte() {
    for m in samples() {
        let b = frame(Params::regtest().magic, &m);
        assert_eq!(
            parse(&b, REGTEST).unwrap(),
            Some((m.clone(), b.len())),
            "{}",
            m.command()
        );
        for n in 0..b.len() {
            assert_eq!(
                parse(&b[..n], REGTEST),
                Ok(None),
                "{} cut at {n}",
                m.command()
            );
        }
    }
}

fn raw(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = REGTEST.to_vec();
    let mut c = [0u8; 12];
    c[..command.len()].copy_from_slice(command.as_bytes());
    out.extend_from_slice(&c);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&servent_coin::sha256d(payload)[..4]);
    out.extend_from_slice(payload);
    out
}

#[test]
fn malformed_headers_oversized_payloads_and_lists_above_limits_are_typed_errors() {
    let mut b = frame(REGTEST, &Message::Ping(5));
    b[HEADER_LEN] ^= 1;
    assert_eq!(
        parse(&b, REGTEST),
        Err(P2pError::BadChecksum("ping".into()))
    );
    // A length above 4 MB is refused from the header alone.
    let mut big = raw("block", &[]);
    big[16..20].copy_from_slice(&((MAX_PAYLOAD + 1) as u32).to_le_bytes());
    assert!(matches!(
        parse(&big, REGTEST),
        Err(P2pError::Oversized { .. })
    ));
    // Commands: bytes after the NUL padding, control bytes, empty.
    for cmd in [
        &b"ping\0x\0\0\0\0\0\0"[..],
        b"pi\nng\0\0\0\0\0\0\0",
        &[0u8; 12],
    ] {
        let mut m = frame(REGTEST, &Message::Ping(5));
        m[4..16].copy_from_slice(cmd);
        assert_eq!(parse(&m, REGTEST), Err(P2pError::BadCommand));
    }
    // 50 001 inventory entries.
    let mut inv = Vec::new();
    servent_coin::wire::write_compact_size(&mut inv, MAX_INV as u64 + 1);
    inv.resize(inv.len() + 36 * (MAX_INV + 1), 0);
    assert!(matches!(
        parse(&raw("inv", &inv), REGTEST),
        Err(P2pError::TooMany { .. })
    ));
    // A count larger than the payload holds.
    assert!(matches!(
        parse(&raw("getdata", &[0xfd, 0xff, 0xff]), REGTEST),
        Err(P2pError::Decode { .. })
    ));
    // A header in `headers` must have a zero transaction count.
    let mut h = vec![1u8];
    h.extend_from_slice(&{
        use servent_coin::wire::Encode;
        genesis_regtest().header.encode()
    });
    h.push(1);
    assert_eq!(
        parse(&raw("headers", &h), REGTEST),
        Err(P2pError::HeaderWithTxs)
    );
    // Trailing bytes after a ping's nonce.
    assert!(matches!(
        parse(&raw("ping", &[0; 9]), REGTEST),
        Err(P2pError::Decode { .. })
    ));
    // An unknown command is checksummed and skipped.
    assert_eq!(
        parse(&raw("sendcmpct", &[0; 9]), REGTEST).unwrap(),
        Some((
            Message::Unknown {
                command: "sendcmpct".into(),
                len: 9
            },
            HEADER_LEN + 9
        ))
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_and_payloads_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cmd in 0usize..16,
    ) {
        let _ = parse(&bytes, REGTEST);
        let commands = ["version", "verack", "ping", "pong", "addr", "getaddr", "inv", "getdata",
            "notfound", "getheaders", "headers", "block", "tx", "sendheaders", "feefilter", "getblocks"];
        let framed = raw(commands[cmd], &bytes);
        if let Ok(Some((m, used))) = parse(&framed, REGTEST) {
            prop_assert_eq!(used, framed.len());
            // Whatever decodes re-encodes to a message that decodes the same.
            let again = frame(REGTEST, &m);
            prop_assert_eq!(parse(&again, REGTEST).ok().flatten().map(|x| x.0), Some(m));
        }
    }
}

/// Regression (fuzz `coin_p2p`): a 256-byte user agent of invalid UTF-8 decodes to text that
/// still re-encodes within the 256-byte limit, so the round trip holds.
#[test]
fn a_user_agent_of_invalid_utf8_round_trips_within_the_limit() {
    use servent_coin::wire::p2p::{Message, decode_payload, frame, parse};
    let mut payload = Vec::new();
    payload.extend_from_slice(&70016i32.to_le_bytes());
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&0i64.to_le_bytes());
    payload.extend_from_slice(&[0u8; 26]);
    payload.extend_from_slice(&[0u8; 26]);
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.push(0xfd);
    payload.extend_from_slice(&256u16.to_le_bytes());
    payload.extend_from_slice(&[0xaf; 256]);
    payload.extend_from_slice(&0i32.to_le_bytes());
    payload.push(1);
    let m = decode_payload("version", &payload).expect("decodes");
    let Message::Version(v) = &m else {
        panic!("not a version")
    };
    assert!(v.user_agent.len() <= 256);
    let magic = [0xfa, 0xbf, 0xb5, 0xda];
    let again = parse(&frame(magic, &m), magic).ok().flatten().map(|x| x.0);
    assert_eq!(again, Some(m));
}
