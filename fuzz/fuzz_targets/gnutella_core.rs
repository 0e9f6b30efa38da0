//! Random input sequences into the Gnutella servent core, in any of its roles (0.4, 0.6 leaf,
//! ultrapeer, auto): 0.4 and 0.6 handshakes, descriptors (also QRP, Bye, vendor kinds),
//! commands, closes and timers in any order. It never panics, its queues stay bounded and it
//! never holds more connections than its role allows.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng};
use servent_gnutella::servent::Role;
use servent_gnutella::wire::CONNECT_04;
use servent_gnutella::{Command, Config, Guid, Servent, SharedFile};

/// A 0.6 CONNECT (as a leaf or an ultrapeer, without deflate so later bytes are plain) and
/// the final 200 of step 3.
const CONNECT_06_LEAF: &[u8] =
    b"GNUTELLA CONNECT/0.6\r\nUser-Agent: fuzz\r\nX-Ultrapeer: False\r\nX-Query-Routing: 0.1\r\n\r\n";
const CONNECT_06_UP: &[u8] =
    b"GNUTELLA CONNECT/0.6\r\nUser-Agent: fuzz\r\nX-Ultrapeer: True\r\nListen-IP: 127.0.0.9:6346\r\n\r\n";
const OK_06: &[u8] = b"GNUTELLA/0.6 200 OK\r\nX-Ultrapeer: True\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&role, data)) = data.split_first() else {
        return;
    };
    let mut cfg = Config::new(Guid([1; 16]), "127.0.0.1:6346".parse().unwrap());
    cfg.role = match role % 4 {
        0 => Role::Flat04,
        1 => Role::Leaf,
        2 => Role::Ultrapeer,
        _ => Role::Auto,
    };
    cfg.qrp_slots = 1 << 10;
    cfg.promote_uptime = std::time::Duration::from_secs(5);
    let max = match cfg.role {
        Role::Flat04 => cfg.max_conns,
        Role::Leaf => cfg.leaf_ultrapeers,
        // Auto may be promoted.
        _ => cfg.up_peers + cfg.up_leaves,
    };
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
            1 => {
                let canned = match rest.get(1).copied().unwrap_or(0) % 4 {
                    0 => CONNECT_04,
                    1 => CONNECT_06_LEAF,
                    2 => CONNECT_06_UP,
                    _ => OK_06,
                };
                let conn = if canned == OK_06 {
                    ConnId::outbound(u64::from(kind & 3))
                } else {
                    conn
                };
                core.handle_input(t, Input::Received { conn, data: canned })
            }
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
        assert!(core.peers().len() <= max, "{} peers", core.peers().len());
    }
});
