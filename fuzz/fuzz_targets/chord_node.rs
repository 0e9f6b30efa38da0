//! Random input sequences into a Chord ring member (datagrams from hostile peers, commands,
//! timers): it never panics and its state stays within its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_chord::{ChordNode, Command, Config};
use servent_core::{Core, Id, Input, Instant, Ring, Rng};

fuzz_target!(|data: &[u8]| {
    let ring = Ring::new(8).unwrap();
    let me = "127.0.0.1:4000".parse().unwrap();
    let peer = "127.0.0.1:4001".parse().unwrap();
    let mut cfg = Config::new(ring, ring.id(100), me);
    cfg.succ_list_len = 4;
    let mut node = ChordNode::new(cfg, Rng::new(1));
    node.create(Instant::ZERO);
    let mut now = 0u64;
    for (i, op) in data.chunks(48).enumerate() {
        let Some((&kind, rest)) = op.split_first() else { continue };
        now += u64::from(kind & 0x0f) * 40_000;
        let t = Instant::from_micros(now);
        match kind >> 5 {
            0 => node.handle_input(t, Input::Command(Command::Lookup { id: i as u64, key: Id::hash(rest), start: None })),
            1 => node.handle_input(t, Input::Command(Command::Put { id: i as u64, key: rest.to_vec(), value: rest.to_vec(), start: None })),
            2 => node.handle_timeout(t),
            _ => node.handle_input(t, Input::Datagram { from: peer, data: rest }),
        }
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
        assert!(node.successors().len() <= 4);
        assert_eq!(node.fingers().len(), 8);
    }
});
