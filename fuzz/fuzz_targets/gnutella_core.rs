//! Random input sequences into the Gnutella servent core: handshakes, descriptors, commands,
//! closes and timers in any order. It never panics and its queues stay bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng};
use servent_gnutella::wire::CONNECT_04;
use servent_gnutella::{Command, Config, Guid, Servent, SharedFile};

fuzz_target!(|data: &[u8]| {
    let cfg = Config::new(Guid([1; 16]), "127.0.0.1:6346".parse().unwrap());
    let mut core = Servent::new(cfg, Rng::new(1));
    core.handle_input(
        Instant::ZERO,
        Input::Command(Command::Share {
            id: 0,
            files: vec![SharedFile {
                index: 0,
                name: "a b.mp3".into(),
                size: 10,
                sha1: None,
            }],
        }),
    );
    let peer = "127.0.0.2:6346".parse().unwrap();
    let mut now = 0u64;
    for op in data.chunks(40) {
        let Some((&kind, rest)) = op.split_first() else {
            continue;
        };
        now += u64::from(kind & 0x0f) * 1_000_000;
        let t = Instant::from_micros(now);
        let conn = ConnId::inbound(u64::from(rest.first().copied().unwrap_or(0) % 6));
        match kind >> 4 {
            0 => core.handle_input(t, Input::Connected { conn, peer }),
            1 => core.handle_input(
                t,
                Input::Received {
                    conn,
                    data: CONNECT_04,
                },
            ),
            2..=6 => core.handle_input(t, Input::Received { conn, data: rest }),
            7 => core.handle_input(
                t,
                Input::Closed {
                    conn,
                    reason: CloseReason::Reset,
                },
            ),
            8 => core.handle_input(
                t,
                Input::Command(Command::Search {
                    id: 1,
                    query: String::from_utf8_lossy(rest).into(),
                    ttl: rest.get(1).copied(),
                }),
            ),
            9 => core.handle_input(t, Input::Command(Command::Ping { id: 2, ttl: kind })),
            10 => core.handle_input(t, Input::Command(Command::Connect { id: 3, addr: peer })),
            11 => core.handle_input(
                t,
                Input::ConnectFailed {
                    conn: ConnId::outbound(u64::from(kind & 3)),
                },
            ),
            12 => core.handle_input(
                t,
                Input::Connected {
                    conn: ConnId::outbound(u64::from(kind & 3)),
                    peer,
                },
            ),
            _ => core.handle_timeout(t),
        }
        let mut n = 0;
        while core.poll_transmit().is_some() {
            n += 1;
        }
        assert!(n <= servent_gnutella::servent::MAX_TRANSMITS);
        while core.poll_event().is_some() {}
        assert!(core.peers().len() <= core.config().max_conns);
    }
});
