//! Arbitrary bytes into the Query Routing Protocol: ROUTE_TABLE_UPDATE payloads decode to a
//! typed error or to an update that re-encodes to the same bytes; sequences of updates
//! (any RESET sizes, PATCH fragments, zlib data) applied to a receiver never panic and never
//! leave a table of another size than the last RESET announced; keyword matching on
//! arbitrary text never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_gnutella::qrp::{self, Receiver, RouteUpdate};

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = RouteUpdate::decode(data) {
        assert_eq!(u.to_bytes(), data);
    }
    // Split the input into payloads at 0xFE bytes; apply them in order.
    let mut rx = Receiver::new();
    let mut size = None;
    for part in data.split(|b| *b == 0xfe).take(64) {
        let Ok(u) = RouteUpdate::decode(part) else {
            continue;
        };
        // Keep the fuzzer from spending its time allocating 2^21-slot tables.
        if let RouteUpdate::Reset { table_length, .. } = &u {
            if *table_length > 1 << 16 {
                continue;
            }
        }
        let before = rx.table().map(|t| t.size());
        match rx.apply(&u) {
            Ok(_) => {
                if let RouteUpdate::Reset { table_length, .. } = u {
                    size = Some(table_length);
                }
            }
            Err(_) => assert_eq!(rx.table().map(|t| t.size()), before),
        }
        assert_eq!(rx.table().map(|t| t.size()), size);
    }
    if let Some(t) = rx.table() {
        let text = String::from_utf8_lossy(data);
        let _ = t.may_match_query(&text);
        let _ = t.fill();
    }
    let _ = qrp::keywords(&String::from_utf8_lossy(data));
});
