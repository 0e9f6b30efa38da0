//! Arbitrary bytes into every Gnutella decoder: descriptors, the fast routing scans, the
//! HTTP heads (`/get/` and `/uri-res/N2R?`), the GIV line, Bye and `urn:sha1:`. None may
//! panic; a decoded descriptor re-encodes to bytes that decode to the same descriptor; a
//! parsed URN prints back to the same hash.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_gnutella::http;
use servent_gnutella::wire::{self, Body, DEFAULT_MAX_PAYLOAD, Kind, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data, DEFAULT_MAX_PAYLOAD) {
        let again = Message::decode(&m.encode(), DEFAULT_MAX_PAYLOAD);
        assert_eq!(again.as_ref(), Ok(&m));
    }
    for k in Kind::ALL {
        let _ = Body::decode(k, data);
    }
    assert_eq!(
        wire::scan_queryhit(data).is_ok(),
        Body::decode(Kind::QueryHit, data).is_ok()
    );
    assert_eq!(
        wire::scan_query(data).is_ok(),
        Body::decode(Kind::Query, data).is_ok()
    );
    if let Ok(r) = http::parse_get(data) {
        // A /get/ request names a safe file; an N2R request names a hash only.
        assert!(r.sha1.is_some() || http::safe_name(&r.name));
    }
    let _ = servent_gnutella::servent::decode_bye(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(h) = servent_gnutella::library::parse_sha1_urn(text) {
            let urn = servent_gnutella::library::sha1_urn(&h);
            assert_eq!(servent_gnutella::library::parse_sha1_urn(&urn), Some(h));
            assert!(urn.eq_ignore_ascii_case(text));
        }
    }
    let _ = http::parse_response(data);
    let _ = http::parse_giv(data);
});
