//! BEP 44 `put` with arbitrary values, salts, sequence numbers and signatures into a node
//! that handed out a real token: never a panic; whatever the node accepted is returned by
//! `get` as a valid item under its target, and no answer is larger than a datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
use servent_kademlia::bep44;
use servent_kademlia::krpc::{self, Body, Message, Query};
use servent_kademlia::{Config, Dht};

fn answers(node: &mut Dht) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(t) = node.poll_transmit() {
        if let Transmit::Datagram { data, .. } = t {
            assert!(data.len() <= 1500, "answer of {} bytes", data.len());
            if let Ok(m) = krpc::decode(&data) {
                out.push(m);
            }
        }
    }
    out
}

fn bstr(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fuzz_target!(|data: &[u8]| {
    let mut node = Dht::new(Id([0x42; 20]), Config::default(), Rng::new(1));
    let from = std::net::SocketAddr::from(([127, 0, 0, 7], 6881));
    let now = Instant::ZERO;
    let get = Message::query(
        b"g0",
        Query::Get {
            id: Id([1; 20]),
            target: Id([2; 20]),
            seq: None,
        },
    );
    node.handle_input(now, Input::Datagram { from, data: &get.encode() });
    let Some(token) = answers(&mut node).into_iter().find_map(|m| match m.body {
        Body::Response(r) => r.token,
        _ => None,
    }) else {
        return;
    };
    // each record: flags, seq byte, salt length, value length, then salt and raw value bytes
    let mut rest = data;
    let mut n = 0u16;
    while rest.len() >= 4 && n < 16 {
        n += 1;
        let (flags, seq, salt_len, v_len) = (rest[0], i64::from(rest[1] as i8), rest[2], rest[3]);
        rest = &rest[4..];
        let salt_len = usize::from(salt_len).min(rest.len());
        let (salt, tail) = rest.split_at(salt_len);
        let v_len = usize::from(v_len).min(tail.len());
        let (v, tail) = tail.split_at(v_len);
        rest = tail;
        // the put, written by hand so that the value bytes reach the decoder as they are
        let mut a = b"d".to_vec();
        if flags & 1 != 0 {
            if flags & 4 != 0 {
                bstr(&mut a, b"cas");
                a.extend_from_slice(format!("i{}e", seq - 1).as_bytes());
            }
        }
        bstr(&mut a, b"id");
        bstr(&mut a, &[1; 20]);
        let signed = bep44::sign(&[9; 32], salt, seq, v);
        if flags & 1 != 0 {
            bstr(&mut a, b"k");
            bstr(&mut a, &signed.k);
            if !salt.is_empty() {
                bstr(&mut a, b"salt");
                bstr(&mut a, salt);
            }
            bstr(&mut a, b"seq");
            a.extend_from_slice(format!("i{seq}e").as_bytes());
            bstr(&mut a, b"sig");
            let mut sig = signed.sig;
            if flags & 2 != 0 {
                sig[0] ^= 1; // a forged signature
            }
            bstr(&mut a, &sig);
        }
        bstr(&mut a, b"token");
        bstr(&mut a, &token);
        bstr(&mut a, b"v");
        a.extend_from_slice(v);
        a.push(b'e');
        let mut msg = b"d1:a".to_vec();
        msg.extend_from_slice(&a);
        msg.extend_from_slice(b"1:q3:put1:t2:p01:y1:qe");
        node.handle_input(now, Input::Datagram { from, data: &msg });
        let stored = answers(&mut node)
            .iter()
            .any(|m| matches!(m.body, Body::Response(_)));
        if stored {
            assert!(flags & 1 == 0 || flags & 2 == 0, "a forged signature was accepted");
            let target = if flags & 1 != 0 {
                bep44::mutable_target(&signed.k, salt)
            } else {
                bep44::immutable_target(v)
            };
            let item = node.stored_item(&target).expect("stored under its target");
            assert!(item.is_valid());
            assert_eq!(item.target(), target);
        }
    }
});
