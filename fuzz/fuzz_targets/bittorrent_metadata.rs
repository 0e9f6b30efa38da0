//! Arbitrary bytes into BEP 9 `ut_metadata`: the message decoder (what decodes re-encodes to
//! an equal message) and a `MetadataFetch` driven by random peers, sizes, messages and
//! timeouts (never a panic; completion only with bytes hashing to the info-hash).
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::metadata::{FetchConfig, FetchEvent, MetadataFetch, MetadataMsg, serve};
use servent_bittorrent::metainfo::InfoHash;
use servent_core::{Id, Instant};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MetadataMsg::decode(data) {
        let bytes = m.encode();
        assert_eq!(MetadataMsg::decode(&bytes), Ok(m));
    }
    // A real 40 000-byte info dictionary stand-in, so completion is reachable.
    let info: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let ih = InfoHash(Id::hash(&info).0);
    let mut f = MetadataFetch::new(ih, FetchConfig::default());
    let mut now = 0u64;
    for op in data.chunks(24) {
        let Some((&kind, rest)) = op.split_first() else {
            continue;
        };
        let peer = u32::from(rest.first().copied().unwrap_or(0) % 6);
        now += u64::from(kind & 0x0f) * 1_000_000;
        let t = Instant::from_micros(now);
        match kind >> 4 {
            0 => {
                let size = if rest.len() > 2 {
                    i64::from(rest[1]) * 1000
                } else {
                    40_000
                };
                let _ = f.add_peer(peer, size);
            }
            1 => f.remove_peer(peer),
            2 => f.handle_message(t, peer, rest),
            3 => f.handle_timeout(t),
            4 | 5 | 6 => {
                while let Some((p, piece)) = f.poll_request(t) {
                    f.handle_message(t, p, &serve(&info, piece).encode());
                }
            }
            _ => {
                if let Some((p, piece)) = f.poll_request(t) {
                    f.handle_message(t, p, &MetadataMsg::Reject { piece }.encode());
                }
            }
        }
        while let Some(e) = f.poll_event() {
            if let FetchEvent::Complete(bytes) = e {
                assert_eq!(bytes, info);
            }
        }
        let _ = f.poll_timeout();
    }
});
