//! Arbitrary bytes into the Bitcoin P2P framing and every payload decoder.
//! Never a panic; whatever decodes re-frames to a message that decodes the
//! same (unknown commands are skipped, so only their framing is checked).
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_coin::wire::p2p::{Message, decode_payload, frame, parse};

const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda];
const COMMANDS: [&str; 17] = [
    "version", "verack", "ping", "pong", "addr", "getaddr", "inv", "getdata", "notfound",
    "getheaders", "getblocks", "headers", "block", "tx", "sendheaders", "feefilter", "other",
];

fuzz_target!(|data: &[u8]| {
    let _ = parse(data, MAGIC);
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let command = COMMANDS[usize::from(sel) % COMMANDS.len()];
    if let Ok(m) = decode_payload(command, payload) {
        if matches!(m, Message::Unknown { .. }) {
            return; // an unknown command's payload is skipped, not kept
        }
        let b = frame(MAGIC, &m);
        let again = parse(&b, MAGIC).ok().flatten().map(|x| x.0);
        assert_eq!(again, Some(m));
    }
});
