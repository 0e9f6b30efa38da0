//! Arbitrary text into the magnet URI parser (BEP 9): never a panic, and whatever parses
//! writes back to a URI that parses to the same magnet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::magnet::{Magnet, PeerAddr};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = PeerAddr::parse(s);
    for uri in [
        s.to_string(),
        format!("magnet:?xt=urn:btih:{}&{s}", "ab".repeat(20)),
    ] {
        if let Ok(m) = Magnet::parse(&uri) {
            assert_eq!(Magnet::parse(&m.to_uri()).as_ref(), Ok(&m));
        }
    }
});
