//! Random operation sequences into the Napster index server core: connections, logins,
//! well-framed messages of every type with arbitrary payloads, raw byte streams, closes,
//! operator commands, timers, and a journal that fails at random. It never panics, keeps
//! within its connection limit, and holds exactly the accounts its journal stored.
#![no_main]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng};
use servent_napster::harness::settle;
use servent_napster::server::{
    Account, Ban, Journal, JournalError, Level, Persist, Server, ServerCommand, ServerConfig,
};
use servent_napster::wire::{ClientMsg, LinkType};

#[derive(Debug)]
struct Flaky {
    fail: Arc<AtomicBool>,
    created: Arc<AtomicUsize>,
}

impl Journal for Flaky {
    fn write(&mut self, change: &Persist) -> Result<(), JournalError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(JournalError("injected".into()));
        }
        if matches!(change, Persist::AccountCreated(_)) {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn frame(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut b = Vec::with_capacity(4 + payload.len());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&payload[..usize::from(len)]);
    b
}

fuzz_target!(|data: &[u8]| {
    let fail = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicUsize::new(0));
    let mut journal = Flaky {
        fail: fail.clone(),
        created: created.clone(),
    };
    let mut cfg = ServerConfig::for_tests();
    cfg.max_connections = 6;
    let max_conns = cfg.max_connections;
    // The core's jobs (hashes, checks, writes) are completed inline after every operation,
    // through the flaky journal, as the harness does.
    let mut s = Server::new(cfg, Rng::new(1));
    // One stored account (its hash is not valid argon2: logging in as it must just fail).
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::LoadAccount(Account {
            nick: "stored".into(),
            password_hash: "$argon2id$bogus".into(),
            email: "anon@localhost".into(),
            level: Level::Admin,
        })),
    );
    let mut now = 0u64;
    for op in data.chunks(48) {
        let Some((&sel, rest)) = op.split_first() else {
            continue;
        };
        now += u64::from(sel & 0x07) * 500_000;
        let t = Instant::from_micros(now);
        let n = rest.first().copied().unwrap_or(0);
        let conn = ConnId::inbound(u64::from(n % 8));
        let body = rest.get(1..).unwrap_or_default();
        let text = String::from_utf8_lossy(body).into_owned();
        match sel >> 3 {
            0..=2 => s.handle_input(
                t,
                Input::Connected {
                    conn,
                    peer: format!("127.0.0.{}:6699", n % 4 + 1).parse().unwrap(),
                },
            ),
            3..=6 => {
                // A login, a registration, or a login as the stored account.
                let nick = match n % 4 {
                    0 => "stored".to_string(),
                    1 => format!("u{}", n % 5),
                    _ => text.chars().take(12).collect(),
                };
                let msg = if n & 0x40 != 0 {
                    ClientMsg::Register {
                        nick,
                        password: "pw".into(),
                        port: u16::from(n),
                        client: "fuzz".into(),
                        link: LinkType::CABLE,
                        email: "x@y".into(),
                    }
                } else {
                    ClientMsg::Login {
                        nick,
                        password: "pw".into(),
                        port: u16::from(n),
                        client: "fuzz".into(),
                        link: LinkType::CABLE,
                    }
                };
                let mut b = Vec::new();
                if msg.encode(&mut b).is_ok() {
                    s.handle_input(t, Input::Received { conn, data: &b });
                }
            }
            7..=20 => {
                let kind = match body {
                    [a, b, ..] => u16::from_le_bytes([*a, *b]) % 1000,
                    _ => 0,
                };
                let f = frame(kind, body.get(2..).unwrap_or_default());
                s.handle_input(t, Input::Received { conn, data: &f });
            }
            21..=23 => s.handle_input(t, Input::Received { conn, data: body }),
            24..=25 => s.handle_input(
                t,
                Input::Closed {
                    conn,
                    reason: CloseReason::Reset,
                },
            ),
            26 => fail.store(n & 1 == 1, Ordering::Relaxed),
            27 => s.handle_input(
                t,
                Input::Command(ServerCommand::Ban {
                    id: 1,
                    ban: Ban {
                        target: text.clone(),
                        reason: String::new(),
                        by: "op".into(),
                    },
                }),
            ),
            28 => s.handle_input(
                t,
                Input::Command(ServerCommand::Unban {
                    id: 2,
                    target: text.clone(),
                }),
            ),
            29 => s.handle_input(t, Input::Command(ServerCommand::Snapshot { id: 3 })),
            _ => s.handle_timeout(t),
        }
        settle(&mut s, t, &mut journal);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
        assert!(s.connections() <= max_conns);
        assert_eq!(
            s.accounts(),
            1 + created.load(Ordering::Relaxed),
            "accounts == stored ones"
        );
    }
});
