//! Arbitrary bytes into the Electrum line codec and a session answering from a small index.
//! Never a panic; every parsed line gets an answer that serialises, and the line buffer never
//! holds more than its bound.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_coin::core::electrum::Index;
use servent_coin::core::electrum::session::{Limits, ServerInfo, Session};
use servent_coin::genesis_regtest;
use servent_coin::wire::electrum::{LineBuffer, MAX_LINE, parse_line, to_line};

fuzz_target!(|data: &[u8]| {
    let mut index = Index::new();
    let _ = index.connect(&genesis_regtest());
    let info = ServerInfo {
        software: "fuzz".into(),
        genesis_hash: String::new(),
        banner: String::new(),
        donation_address: String::new(),
        relay_fee: 0.00001,
    };
    let mut session = Session::new(Limits { subscriptions: 4, history: 100 });
    let mut lines = LineBuffer::new();
    for chunk in data.chunks(97) {
        if lines.push(chunk).is_err() {
            return;
        }
        while let Ok(Some(line)) = lines.next_line() {
            if let Ok(incoming) = parse_line(&line) {
                let h = session.handle(&index, &info, incoming);
                if let Some(v) = h.answer() {
                    assert!(!to_line(&v).is_empty());
                }
            }
        }
        assert!(lines.len() <= MAX_LINE + 97);
        let _ = session.notifications(&index);
    }
});
