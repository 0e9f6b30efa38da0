//! Arbitrary bytes as Stratum v1 lines, into both decoders, the pool core and the miner's
//! client core. Never a panic; whatever decodes re-encodes and decodes to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_coin::core::pool::client::Client;
use servent_coin::core::pool::{Pool, PoolConfig};
use servent_coin::wire::stratum::{
    ServerMessage, decode_client, decode_server, encode_client, encode_server, next_line,
};
use servent_core::{Instant, Rng};

fuzz_target!(|data: &[u8]| {
    let mut pool = Pool::new(PoolConfig::default(), Rng::new(1)).expect("a pool");
    let session = pool.handle_connect(Instant::ZERO).expect("room");
    let mut client = Client::new("user", "x", "fuzz");
    let mut rest = data;
    while let Ok(Some((line, used))) = next_line(rest) {
        if let Ok(m) = decode_client(line) {
            let mut out = Vec::new();
            encode_client(&m, &mut out);
            assert_eq!(decode_client(&out[..out.len() - 1]).ok(), Some(m));
        }
        if let Ok(m) = decode_server(line) {
            let mut out = Vec::new();
            encode_server(&m, &mut out);
            let again = decode_server(&out[..out.len() - 1]).expect("re-decodes");
            // Numbers inside results may come back one ulp apart; notifications are exact.
            if let ServerMessage::Notify(_) = m {
                assert_eq!(again, m);
            }
        }
        pool.handle_line(Instant::ZERO, session, line);
        let _ = client.handle_line(line);
        while pool.poll_transmit().is_some() {}
        while pool.poll_event().is_some() {}
        while client.poll_event().is_some() {}
        rest = &rest[used..];
    }
});
