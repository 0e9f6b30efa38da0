//! Arbitrary bytes into every Gnutella decoder: descriptors, the fast routing scans, the
//! HTTP heads and the GIV line. None may panic; a decoded descriptor re-encodes to bytes
//! that decode to the same descriptor.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_gnutella::wire::{self, Body, Kind, Message, DEFAULT_MAX_PAYLOAD};
use servent_gnutella::http;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data, DEFAULT_MAX_PAYLOAD) {
        let again = Message::decode(&m.encode(), DEFAULT_MAX_PAYLOAD);
        assert_eq!(again.as_ref(), Ok(&m));
    }
    for k in Kind::ALL {
        let _ = Body::decode(k, data);
    }
    assert_eq!(wire::scan_queryhit(data).is_ok(), Body::decode(Kind::QueryHit, data).is_ok());
    assert_eq!(wire::scan_query(data).is_ok(), Body::decode(Kind::Query, data).is_ok());
    if let Ok(r) = http::parse_get(data) {
        assert!(http::safe_name(&r.name));
    }
    let _ = http::parse_response(data);
    let _ = http::parse_giv(data);
});
