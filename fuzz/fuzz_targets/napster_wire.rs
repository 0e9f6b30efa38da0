//! Arbitrary bytes into every Napster decoder: client and server messages of any type, the
//! search query syntax, frame headers, and the data-port exchange (`GET`/`SEND` requests,
//! commands, size answers). Typed errors or values, never a panic; a decoded message that
//! encodes again decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_napster::transfer::{self, Request};
use servent_napster::wire::{self, ClientMsg, SearchQuery, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Message types: mostly the ones we know (0..=999, 10000..), sometimes anything.
    let kind = match rest {
        [a, b, ..] if sel & 1 == 0 => u16::from_le_bytes([*a, *b]) % 1000,
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    };
    let payload = rest.get(2..).unwrap_or_default();

    if let Ok(m) = ClientMsg::decode(kind, payload) {
        let mut buf = Vec::new();
        if m.encode(&mut buf).is_ok() {
            let (len, k) = wire::parse_header(&buf).expect("an encoded frame has a header");
            assert_eq!(usize::from(len), buf.len() - 4);
            assert_eq!(k, m.kind());
            assert_eq!(ClientMsg::decode(k, &buf[4..]).as_ref(), Ok(&m));
        }
    }
    if let Ok(m) = ServerMsg::decode(kind, payload) {
        let mut buf = Vec::new();
        if m.encode(&mut buf).is_ok() {
            let (len, k) = wire::parse_header(&buf).expect("an encoded frame has a header");
            assert_eq!(usize::from(len), buf.len() - 4);
            assert_eq!(k, m.kind());
            assert_eq!(ServerMsg::decode(k, &buf[4..]).as_ref(), Ok(&m));
        }
    }
    let text = wire::payload_text(payload);
    let _ = SearchQuery::parse(&text);
    let _ = wire::valid_nick(&text);
    let _ = wire::valid_channel(&text);
    let _ = wire::parse_header(rest);

    match transfer::Request::parse(rest) {
        Ok(Some((req, used))) => {
            assert!(used <= rest.len());
            if let Some(again) = req.encode() {
                let parsed: Option<(Request, usize)> =
                    Request::parse(&again).expect("our own request parses");
                assert_eq!(parsed.map(|(r, _)| r), Some(req));
            }
        }
        Ok(None) | Err(_) => {}
    }
    if let Ok(Some((_, used))) = transfer::parse_command(rest) {
        assert!(used <= rest.len());
    }
    let expect = (sel & 0x80 != 0).then_some(usize::from(sel & 0x1f));
    if let Ok(Some((_, used))) = transfer::parse_number(rest, expect) {
        assert!(used <= rest.len());
    }
});
