//! Arbitrary bytes into the Gnutella 0.6 handshake, both sides, fed in arbitrary chunks and
//! answered with either decision, and into the deflate stream's inflater with a bounded
//! output. Nothing panics; the inflater never writes past its limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_gnutella::handshake06::{
    Decision, Handshake, HandshakeConfig, Headers, Inflater, Progress, parse_block,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if let Ok(Some((block, used))) = parse_block(data) {
        assert!(used <= data.len());
        let _ = Headers::from_block(&block);
    }
    let cfg = HandshakeConfig::new("fuzz", mode & 1 == 0, None);
    let remote = "127.0.0.2:6346".parse().unwrap();
    let mut hs = if mode & 2 == 0 {
        Handshake::inbound(cfg, remote)
    } else {
        Handshake::outbound(cfg, remote)
    };
    let chunk = usize::from(mode >> 4) * 16 + 1;
    for part in data.chunks(chunk) {
        let mut step = hs.feed(part);
        for _ in 0..3 {
            match step {
                Ok(Progress::Decide { .. }) => {
                    let d = if mode & 4 == 0 {
                        Decision::Accept {
                            ultrapeer_needed: Some(true),
                            try_ultrapeers: vec![remote],
                        }
                    } else {
                        Decision::Refuse {
                            code: 503,
                            reason: "full".into(),
                            try_ultrapeers: vec![remote],
                        }
                    };
                    step = hs.respond(d);
                }
                _ => break,
            }
        }
        let _ = hs.take_output();
        if step.is_err()
            || matches!(
                step,
                Ok(Progress::Established(_) | Progress::Closed | Progress::Refused { .. })
            )
        {
            break;
        }
    }
    let mut inf = Inflater::new();
    let mut out = Vec::new();
    let limit = 4096;
    let mut rest = data;
    for _ in 0..64 {
        out.clear();
        match inf.decompress(rest, &mut out, limit) {
            Ok(n) => {
                assert!(out.len() <= limit);
                rest = rest.get(n..).unwrap_or(&[]);
                if n == 0 && out.is_empty() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
});
