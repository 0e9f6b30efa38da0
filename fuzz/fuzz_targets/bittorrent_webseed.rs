//! Arbitrary bytes into the web seed (BEP 19) HTTP response reader, in arbitrary chunks, and
//! arbitrary text into the URL parser: never a panic, and never more body than the range.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::webseed::{HttpUrl, ResponseReader, Status};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = HttpUrl::parse(s) {
            assert_eq!(HttpUrl::parse(&u.to_url()).as_ref(), Ok(&u));
            let _ = u.join(s);
        }
    }
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let start = u64::from(k) * 3;
    let len = u64::from(k % 17);
    let chunk = usize::from(k % 13) + 1;
    let mut r = ResponseReader::new(start..start + len);
    let mut body = Vec::new();
    for c in rest.chunks(chunk) {
        match r.feed(c, &mut body) {
            Ok(Status::NeedMore) => {}
            _ => break,
        }
    }
    assert!(body.len() as u64 <= len);
});
