#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Durability and slow work on the core: password hashing and checks and durable writes
//! leave the core as jobs; an account or ban takes effect (and the replies that depend on
//! it are queued) only once its write came back successful, a failed write refuses the
//! operation, and logins waiting for their jobs never delay other users.

use std::sync::{Arc, Mutex};

use servent_core::{ConnId, Core, Input, Instant, Rng, Transmit};
use servent_napster::harness::settle;
use servent_napster::server::{
    Ban, Job, JobResult, Journal, JournalError, Persist, Server, ServerCommand, ServerConfig,
    ServerEvent,
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

fn complete(s: &mut Server, id: u64, result: JobResult) {
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::Complete { id, result }),
    );
}

fn send(s: &mut Server, conn: ConnId, bytes: &[u8]) {
    s.handle_input(Instant::ZERO, Input::Received { conn, data: bytes });
}

#[test]
fn new_account_is_acknowledged_only_after_its_hash_and_its_write_came_back() {
    let mut rec = Recorder::default();
    let written = rec.written.clone();
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(1));
    let conn = connect(&mut s, 1);
    send(&mut s, conn, &login_bytes("lefty", "pw"));
    // The core hashes nothing itself: it asks for a hash, and says nothing yet.
    let Some((hid, hash)) = s.poll_job() else {
        panic!("no hash job")
    };
    assert!(matches!(&hash, Job::HashPassword { password, .. } if password == "pw"));
    assert!(replies(&mut s, conn).is_empty());
    let result = hash.run(&mut rec);
    complete(&mut s, hid, result);
    // Then the account must be written durably; still no ack, no account.
    let Some((wid, write)) = s.poll_job() else {
        panic!("no write job")
    };
    assert!(
        matches!(&write, Job::Write(Persist::AccountCreated(a)) if a.nick == "lefty" && a.password_hash.starts_with("$argon2id$")),
        "{write:?}"
    );
    assert!(replies(&mut s, conn).is_empty());
    assert_eq!(s.accounts(), 0);
    assert!(!s.is_online("lefty"));
    let result = write.run(&mut rec);
    complete(&mut s, wid, result);
    let msgs = replies(&mut s, conn);
    assert!(
        msgs.iter().any(|m| matches!(m, ServerMsg::LoginAck { .. })),
        "{msgs:?}"
    );
    assert_eq!(s.accounts(), 1);
    assert_eq!(written.lock().unwrap().len(), 1);
    // A returning user's password is checked by a job, and nothing is written.
    let again = connect(&mut s, 2);
    send(&mut s, again, &login_bytes("lefty", "pw"));
    assert!(matches!(
        s.poll_job(),
        Some((_, Job::VerifyPassword { .. }))
    ));
    // (the job was taken and dropped: the login waits, unanswered)
    assert!(replies(&mut s, again).is_empty());
    let third = connect(&mut s, 3);
    send(&mut s, third, &login_bytes("lefty", "pw"));
    assert_eq!(settle(&mut s, Instant::ZERO, &mut rec), 1);
    assert!(
        replies(&mut s, third)
            .iter()
            .any(|m| matches!(m, ServerMsg::LoginAck { .. }))
    );
    assert_eq!(written.lock().unwrap().len(), 1);
}

#[test]
fn failed_journal_write_refuses_the_login_and_creates_no_account() {
    let mut rec = Recorder {
        fail: true,
        ..Default::default()
    };
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(2));
    let conn = connect(&mut s, 1);
    send(&mut s, conn, &login_bytes("lefty", "pw"));
    assert_eq!(settle(&mut s, Instant::ZERO, &mut rec), 2);
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
    // The nick is free again: a later registration that is stored succeeds.
    rec.fail = false;
    let conn = connect(&mut s, 2);
    send(&mut s, conn, &login_bytes("lefty", "pw"));
    settle(&mut s, Instant::ZERO, &mut rec);
    assert!(s.is_online("lefty"));
}

#[test]
fn two_racing_registrations_of_one_nick_cannot_both_be_acknowledged() {
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(5));
    let a = connect(&mut s, 1);
    let b = connect(&mut s, 2);
    send(&mut s, a, &login_bytes("twin", "one"));
    send(&mut s, b, &login_bytes("twin", "two"));
    settle(&mut s, Instant::ZERO, &mut Recorder::default());
    let mut acks = 0;
    while let Some(t) = s.poll_transmit() {
        if let Transmit::Send { data, .. } = t {
            // The login ack is message 3; count frames of that type.
            let mut rest: &[u8] = &data;
            while rest.len() >= 4 {
                let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
                acks += usize::from(u16::from_le_bytes([rest[2], rest[3]]) == 3);
                rest = &rest[4 + len..];
            }
        }
    }
    assert_eq!(acks, 1);
    assert_eq!(s.accounts(), 1);
    assert_eq!(
        s.connections(),
        1,
        "the second registration was refused and closed"
    );
}

#[test]
fn a_search_is_answered_while_fifty_logins_wait_for_their_password_jobs() {
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(6));
    let mut rec = Recorder::default();
    let user = connect(&mut s, 200);
    send(&mut s, user, &login_bytes("searcher", "pw"));
    settle(&mut s, Instant::ZERO, &mut rec);
    assert!(s.is_online("searcher"));
    let _ = replies(&mut s, user);
    // Fifty new users log in; none of their hashes is done.
    let mut held = Vec::new();
    for i in 0..50 {
        let c = connect(&mut s, i + 1);
        send(&mut s, c, &login_bytes(&format!("flood{i}"), "pw"));
    }
    while let Some(job) = s.poll_job() {
        held.push(job);
    }
    assert_eq!(held.len(), 50);
    assert_eq!(s.jobs_in_flight(), 50);
    let mut q = Vec::new();
    servent_napster::wire::ClientMsg::Search(servent_napster::wire::SearchQuery {
        contains: vec!["anything".into()],
        ..Default::default()
    })
    .encode(&mut q)
    .unwrap();
    send(&mut s, user, &q);
    let msgs = replies(&mut s, user);
    assert!(
        msgs.iter().any(|m| matches!(m, ServerMsg::SearchEnd)),
        "the search is answered at once: {msgs:?}"
    );
    assert_eq!(s.jobs_in_flight(), 50, "while every login still waits");
    // Then the hashes come back, and the writes after them: all fifty are online.
    for (id, job) in held {
        let r = job.run(&mut rec);
        complete(&mut s, id, r);
    }
    settle(&mut s, Instant::ZERO, &mut rec);
    assert_eq!(s.stats().users, 51);
}

#[test]
fn bytes_sent_while_a_login_waits_are_handled_after_it_in_order() {
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(7));
    let conn = connect(&mut s, 1);
    let mut b = login_bytes("eager", "pw");
    // A client that does not wait for the ack: a share right behind its login.
    servent_napster::wire::ClientMsg::Share(servent_napster::wire::FileInfo {
        name: "C:\\music\\song.mp3".into(),
        md5: "0123456789abcdef0123456789abcdef".into(),
        size: 1000,
        bitrate: 128,
        freq: 44100,
        secs: 60,
    })
    .encode(&mut b)
    .unwrap();
    send(&mut s, conn, &b);
    assert_eq!(s.shares_of("eager"), 0);
    settle(&mut s, Instant::ZERO, &mut Recorder::default());
    assert!(s.is_online("eager"));
    assert_eq!(s.shares_of("eager"), 1, "the share was held, then taken");
}

#[test]
fn login_jobs_in_flight_are_bounded() {
    let cfg = ServerConfig {
        max_jobs: 3,
        max_pending_per_ip: 100,
        ..ServerConfig::for_tests()
    };
    let mut s = Server::new(cfg, Rng::new(8));
    let mut conns = Vec::new();
    for i in 0..5 {
        let c = connect(&mut s, i + 1);
        send(&mut s, c, &login_bytes(&format!("n{i}"), "pw"));
        conns.push(c);
    }
    assert_eq!(s.jobs_in_flight(), 3);
    let last = replies(&mut s, conns[4]);
    assert!(
        last.iter()
            .any(|m| matches!(m, ServerMsg::Error { text } if text.contains("busy"))),
        "{last:?}"
    );
}

#[test]
fn ban_is_applied_only_once_stored() {
    let ban = |t: &str| Ban {
        target: t.into(),
        reason: "flood".into(),
        by: "op".into(),
    };
    let mut rec = Recorder::default();
    let written = rec.written.clone();
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(3));
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::Ban {
            id: 9,
            ban: ban("Mallory"),
        }),
    );
    assert!(!s.is_banned("mallory"), "not before it is stored");
    assert_eq!(settle(&mut s, Instant::ZERO, &mut rec), 1);
    assert!(s.is_banned("mallory"));
    assert_eq!(
        written.lock().unwrap().as_slice(),
        &[Persist::BanAdded(ban("mallory"))]
    );
    assert!(
        std::iter::from_fn(|| s.poll_event()).any(|e| e == ServerEvent::Done { id: 9, ok: true })
    );

    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(4));
    s.handle_input(
        Instant::ZERO,
        Input::Command(ServerCommand::Ban {
            id: 10,
            ban: ban("mallory"),
        }),
    );
    settle(
        &mut s,
        Instant::ZERO,
        &mut Recorder {
            fail: true,
            ..Default::default()
        },
    );
    assert!(
        !s.is_banned("mallory"),
        "a ban that was not stored is not in force"
    );
    assert!(
        std::iter::from_fn(|| s.poll_event()).any(|e| e == ServerEvent::Done { id: 10, ok: false })
    );
}

#[test]
fn jobs_not_taken_come_out_as_events_for_a_driver() {
    let mut s = Server::new(ServerConfig::for_tests(), Rng::new(9));
    let conn = connect(&mut s, 1);
    send(&mut s, conn, &login_bytes("ev", "pw"));
    let job = std::iter::from_fn(|| s.poll_event())
        .find_map(|e| match e {
            ServerEvent::Job { id, job } => Some((id, job)),
            _ => None,
        })
        .expect("a job event");
    let r = job.1.run(&mut Recorder::default());
    complete(&mut s, job.0, r);
    let write = std::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
        ServerEvent::Job { id, job } => Some((id, job)),
        _ => None,
    });
    assert!(matches!(write, Some((_, Job::Write(_)))), "{write:?}");
}
