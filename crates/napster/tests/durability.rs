//! Durability on the core: an account or ban is written through the journal before any
//! reply that depends on it is queued, and a failed write refuses the operation.

use std::sync::{Arc, Mutex};

use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
use servent_napster::server::{
    Ban, Journal, JournalError, Persist, Server, ServerCommand, ServerConfig, ServerEvent,
};
use servent_napster::wire::{ClientMsg, LinkType, ServerMsg};

/// A journal that records what the core wrote, or refuses every write.
#[derive(Debug, Clone, Default)]
struct Recorder {
    written: Arc<Mutex<Vec<Persist>>>,
    fail: bool,
}

impl Journal for Recorder {
    fn write(&mut self, change: &Persist) -> Result<(), JournalError> {
        if self.fail {
            return Err(JournalError("disk full".into()));
        }
        self.written
            .lock()
            .map_err(|_| JournalError("poisoned".into()))?
            .push(change.clone());
        Ok(())
    }
}

fn login_bytes(nick: &str, password: &str) -> Vec<u8> {
    let mut b = Vec::new();
    ClientMsg::Login {
        nick: nick.into(),
        password: password.into(),
        port: 6699,
        client: "nap v0.8".into(),
        link: LinkType::CABLE,
    }
    .encode(&mut b)
    .unwrap();
    b
}

/// Every message sent to `conn` until the queue is empty.
fn replies(s: &mut Server, conn: ConnId) -> Vec<ServerMsg> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        if let Transmit::Send { conn: c, data } = t {
            if c != conn {
                continue;
            }
            let mut rest: &[u8] = &data;
            while rest.len() >= 4 {
                let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
                let kind = u16::from_le_bytes([rest[2], rest[3]]);
                let payload = &rest[4..4 + len];
                out.push(ServerMsg::decode(kind, payload).unwrap());
                rest = &rest[4 + len..];
            }
        }
    }
    out
}

fn connect(s: &mut Server, n: u64) -> ConnId {
    let conn = ConnId::inbound(n);
    s.handle_input(
        Instant::ZERO,
        Input::Connected {
            conn,
            peer: format!("127.0.0.{n}:5000").parse().unwrap(),
        },
    );
    conn
}

#[test]
fn new_account_is_in_the_journal_before_its_login_ack_is_queued() {
    let rec = Recorder::default();
    let written = rec.written.clone();
    let mut s = Server::with_journal(ServerConfig::for_tests(), Rng::new(1), Box::new(rec));
    let conn = connect(&mut s, 1);
    s.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: &login_bytes("lefty", "pw"),
        },
    );
    // The ack is queued, and the account was already written when handle_input returned:
    // no event needs draining, no later step of the driver is involved.
    let stored = written.lock().unwrap().clone();
    assert!(
        matches!(stored.as_slice(), [Persist::AccountCreated(a)] if a.nick == "lefty" && a.password_hash.starts_with("$argon2id$")),
        "{stored:?}"
    );
    let msgs = replies(&mut s, conn);
    assert!(
        msgs.iter().any(|m| matches!(m, ServerMsg::LoginAck { .. })),
        "{msgs:?}"
    );
    assert_eq!(s.accounts(), 1);
    // A returning user writes nothing.
    let again = connect(&mut s, 2);
    s.handle_input(
        Instant::ZERO,
        Input::Received {
            conn: again,
            data: &login_bytes("lefty", "pw"),
        },
    );
    assert!(
        replies(&mut s, again)
            .iter()
            .any(|m| matches!(m, ServerMsg::LoginAck { .. }))
    );
    assert_eq!(written.lock().unwrap().len(), 1);
}

#[test]
fn failed_journal_write_refuses_the_login_and_creates_no_account() {
    let rec = Recorder {
        fail: true,
        ..Default::default()
    };
    let mut s = Server::with_journal(ServerConfig::for_tests(), Rng::new(2), Box::new(rec));
    let conn = connect(&mut s, 1);
    s.handle_input(
        Instant::ZERO,
        Input::Received {
            conn,
            data: &login_bytes("lefty", "pw"),
        },
    );
    let msgs = replies(&mut s, conn);
    assert!(
        !msgs.iter().any(|m| matches!(m, ServerMsg::LoginAck { .. })),
        "no ack for an account that was not stored: {msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| matches!(m, ServerMsg::Error { text } if text.contains("could not store"))),
        "{msgs:?}"
    );
    assert_eq!(s.accounts(), 0);
    assert!(!s.is_online("lefty"));
    let mut failed = false;
    while let Some(e) = s.poll_event() {
        failed |= matches!(e, ServerEvent::JournalFailed { .. });
        assert!(!matches!(e, ServerEvent::Persist(_)), "{e:?}");
    }
    assert!(failed);
    assert_eq!(s.stats().journal_failures, 1);
}

#[test]
fn ban_is_applied_only_once_stored() {
    let ban = |t: &str| Ban {
        target: t.into(),
        reason: "flood".into(),
        by: "op".into(),
    };
    let rec = Recorder::default();
    let written = rec.written.clone();
    let mut s = Server::with_journal(ServerConfig::for_tests(), Rng::new(3), Box::new(rec));
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::Ban {
            id: 9,
            ban: ban("Mallory"),
        }),
    );
    assert!(s.is_banned("mallory"));
    assert_eq!(
        written.lock().unwrap().as_slice(),
        &[Persist::BanAdded(ban("mallory"))]
    );
    assert!(
        std::iter::from_fn(|| s.poll_event()).any(|e| e == ServerEvent::Done { id: 9, ok: true })
    );

    let mut s = Server::with_journal(
        ServerConfig::for_tests(),
        Rng::new(4),
        Box::new(Recorder {
            fail: true,
            ..Default::default()
        }),
    );
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::Ban {
            id: 10,
            ban: ban("mallory"),
        }),
    );
    assert!(
        !s.is_banned("mallory"),
        "a ban that was not stored is not in force"
    );
    assert!(
        std::iter::from_fn(|| s.poll_event()).any(|e| e == ServerEvent::Done { id: 10, ok: false })
    );
}
