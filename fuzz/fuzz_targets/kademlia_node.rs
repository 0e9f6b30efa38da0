//! Arbitrary datagrams from a few addresses into a DHT node, with time moving on: never a
//! panic, every bucket holds at most k nodes, every answer fits in one datagram.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_core::{Core, Id, Input, Instant, Rng, Transmit};
use servent_kademlia::{Config, Dht};

fuzz_target!(|data: &[u8]| {
    let mut node = Dht::new(Id([0x42; 20]), Config::default(), Rng::new(1));
    let mut now = Instant::ZERO;
    // each record: 1 byte sender, 1 byte time step (100 ms units), 2 bytes length, payload
    let mut rest = data;
    while rest.len() >= 4 {
        let from = std::net::SocketAddr::from(([127, 0, 0, rest[0] % 8 + 1], 6881));
        now += std::time::Duration::from_millis(u64::from(rest[1]) * 100);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).min(rest.len() - 4);
        let (msg, tail) = rest[4..].split_at(len);
        rest = tail;
        node.handle_input(now, Input::Datagram { from, data: msg });
        node.handle_timeout(now);
        while let Some(t) = node.poll_transmit() {
            if let Transmit::Datagram { data, .. } = t {
                assert!(data.len() <= 1500, "answer of {} bytes", data.len());
            }
        }
        while node.poll_event().is_some() {}
        assert!(node.table().bucket_sizes().iter().all(|&s| s <= 8));
    }
});
