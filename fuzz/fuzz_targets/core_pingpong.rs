//! Random input sequences into the example core: it never panics and its outputs stay bounded.
#![no_main]
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use servent_core::pingpong::{Ping, PingPong, Transport};
use servent_core::{CloseReason, ConnId, Core, Input, Instant};

fuzz_target!(|data: &[u8]| {
    let mut core = PingPong::new(Duration::from_millis(500));
    let peer = "127.0.0.1:9".parse().unwrap();
    let mut now = 0u64;
    for op in data.chunks(12) {
        let Some((&kind, rest)) = op.split_first() else { continue };
        now += u64::from(kind & 0x0f) * 50_000;
        let t = Instant::from_micros(now);
        let conn = ConnId::inbound(u64::from(rest.first().copied().unwrap_or(0) % 4));
        match kind >> 4 {
            0 => core.handle_input(t, Input::Command(Ping { id: u64::from(kind), to: peer, transport: Transport::Stream })),
            1 => core.handle_input(t, Input::Command(Ping { id: u64::from(kind), to: peer, transport: Transport::Datagram })),
            2 => core.handle_input(t, Input::Datagram { from: peer, data: rest }),
            3 => core.handle_input(t, Input::Connected { conn, peer }),
            4 => core.handle_input(t, Input::Received { conn, data: rest }),
            5 => core.handle_input(t, Input::Closed { conn, reason: CloseReason::Reset }),
            6 => core.handle_input(t, Input::ConnectFailed { conn: ConnId::outbound(u64::from(kind)) }),
            _ => core.handle_timeout(t),
        }
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
    }
});
