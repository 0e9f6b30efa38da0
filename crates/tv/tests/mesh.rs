//! The TV cores in the in-memory harness: a chain of relays plays every byte in order, a
//! lost request is repaired from another partner, forgers are dropped, a mesh of viewers
//! with limited upload keeps continuity through churn.

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use servent_core::Rng;
use servent_tv::core::{ChunkerConfig, Node, NodeCommand, NodeConfig, NodeEvent, Tracker};
use servent_tv::harness::{Station, StationEvent, TvHarness};
use servent_tv::wire::chunk::Chunk;
use servent_tv::wire::msg::{BufferMap, Flags, PeerMsg};

fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(([10, (i >> 8) as u8, i as u8, 1], 7000))
}

/// A synthetic TS packet of `pid`; `rai` sets the random_access_indicator; `n` is stamped in.
fn packet(pid: u16, rai: bool, n: u32) -> Vec<u8> {
    let mut p = vec![0u8; 188];
    p[0] = 0x47;
    p[1] = ((pid >> 8) as u8) & 0x1f;
    p[2] = pid as u8;
    p[3] = 0x30 | (n as u8 & 0x0f);
    p[4] = 1;
    p[5] = if rai { 0x40 } else { 0 };
    p[6..10].copy_from_slice(&n.to_be_bytes());
    p
}

/// One second of a synthetic 1.5 Mbit/s stream: GOPs of 250 packets starting at a keyframe.
fn second(n0: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..1000u32 {
        v.extend(packet(0x100, i % 250 == 0, n0 + i));
    }
    v
}

struct Net {
    h: TvHarness,
    tracker: SocketAddr,
    source: SocketAddr,
    channel: [u8; 32],
    key: SigningKey,
    ingested: Vec<u8>,
    fed: u32,
}

impl Net {
    fn new(seed: u64, source_up_kbps: u32) -> Net {
        let mut h = TvHarness::new()
            .with_seed(seed)
            .with_latency(Duration::from_millis(5));
        let tracker = addr(1);
        h.add_at(tracker, Station::Tracker(Tracker::new(Rng::new(seed))));
        let key = SigningKey::from_bytes(&[seed as u8; 32]);
        let source = addr(2);
        let mut cfg = NodeConfig::viewer([0; 32], source, Some(tracker));
        cfg.name = "test".into();
        cfg.up_kbps = source_up_kbps;
        let chunking = ChunkerConfig::default();
        h.add_at(
            source,
            Station::Node(Node::broadcaster(
                cfg,
                key.clone(),
                chunking,
                Rng::new(seed + 1),
            )),
        );
        let channel = key.verifying_key().to_bytes();
        Net {
            h,
            tracker,
            source,
            channel,
            key,
            ingested: Vec::new(),
            fed: 0,
        }
    }

    fn viewer(&mut self, i: u32, f: impl FnOnce(&mut NodeConfig)) -> SocketAddr {
        let a = addr(i);
        let mut cfg = NodeConfig::viewer(self.channel, a, Some(self.tracker));
        f(&mut cfg);
        self.h.add_at(
            a,
            Station::Node(Node::new(cfg, Rng::new(1000 + u64::from(i)))),
        );
        a
    }

    /// Feeds `secs` seconds of stream in real time (20 ms pieces).
    fn feed(&mut self, secs: u32) {
        for _ in 0..secs {
            let s = second(self.fed * 1000);
            self.fed += 1;
            for piece in s.chunks(s.len() / 50) {
                self.ingested.extend_from_slice(piece);
                self.h
                    .command(self.source, NodeCommand::Ingest(piece.to_vec()));
                self.h.drive_for(Duration::from_millis(20));
            }
        }
    }

    fn end(&mut self) {
        self.h.command(self.source, NodeCommand::EndOfInput);
        self.h.drive_for(Duration::from_secs(4));
    }

    fn node(&self, a: SocketAddr) -> &Node {
        self.h.node(a).and_then(Station::node).expect("a node")
    }

    /// The bytes `a` handed to its player, in order.
    fn played(&self, a: SocketAddr) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, e) in self.h.events() {
            if *n == a
                && let StationEvent::Node(NodeEvent::Play { chunk, .. }) = e
            {
                v.extend_from_slice(&chunk.payload);
            }
        }
        v
    }

    fn ended(&self, a: SocketAddr) -> bool {
        self.h
            .events()
            .iter()
            .any(|(n, e)| *n == a && matches!(e, StationEvent::Node(NodeEvent::Ended)))
    }
}

#[test]
fn a_chain_of_three_relays_plays_every_byte_in_order() {
    let mut net = Net::new(1, 0);
    let src = net.source;
    let a = net.viewer(10, |c| c.fixed_peers = vec![src]);
    let b = net.viewer(11, |c| c.fixed_peers = vec![a]);
    let c = net.viewer(12, |c| c.fixed_peers = vec![b]);
    net.h.drive_for(Duration::from_secs(1));
    net.feed(6);
    net.end();
    for v in [a, b, c] {
        assert!(net.ended(v), "{v} saw the end");
        assert_eq!(
            net.played(v),
            net.ingested,
            "{v} played every byte in order"
        );
        let st = net.node(v).stats();
        assert_eq!(st.skipped, 0);
        assert!(st.continuity() >= 0.999, "{v}: {}", st.continuity());
        assert!(st.startup.is_some());
    }
    // Each parent only of the next: C's only partner is B.
    assert_eq!(net.node(c).partner_addrs(), vec![b]);
}

#[test]
fn a_late_joiner_starts_at_the_newest_keyframe_chunk_at_once() {
    let mut net = Net::new(2, 0);
    let early = net.viewer(10, |_| {});
    net.h.drive_for(Duration::from_secs(1));
    net.feed(3);
    let late = net.viewer(11, |_| {});
    net.feed(3);
    net.end();
    let starts: Vec<(u64, Duration)> = net
        .h
        .events()
        .iter()
        .filter(|(n, _)| *n == late)
        .filter_map(|(_, e)| match e {
            StationEvent::Node(NodeEvent::Started { seq, startup }) => Some((*seq, *startup)),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1);
    let (seq, startup) = starts[0];
    assert!(seq > 0, "not from the beginning");
    assert!(startup < Duration::from_secs(1), "startup {startup:?}");
    let played = net.played(late);
    assert_eq!(
        played[5] & 0x40,
        0x40,
        "the first packet played is a random access point"
    );
    assert!(net.ended(late) && net.ended(early));
    assert_eq!(net.node(late).stats().skipped, 0);
}

#[test]
fn a_request_lost_on_one_link_is_repaired_from_another_partner_before_its_deadline() {
    let mut net = Net::new(3, 0);
    let src = net.source;
    let good = net.viewer(10, |c| c.fixed_peers = vec![src]);
    net.h.drive_for(Duration::from_secs(1));
    // The viewer under test partners with `good` and with a peer that claims everything and
    // answers nothing (its link loses every chunk).
    let v = net.viewer(11, |c| c.fixed_peers = vec![good]);
    let silent = addr(99);
    let end = net.h.raw_connect(silent, v);
    let hello = PeerMsg::Hello {
        channel: net.channel,
        listen_port: 0,
        flags: Flags::default(),
        up_kbps: 100_000,
    };
    net.h.send_raw(end, &hello.to_bytes());
    net.h.drive_for(Duration::from_millis(200));
    for s in 0..6 {
        net.feed(1);
        // It claims chunks before they exist, so it is asked first.
        let all: Vec<u64> = (0..(s + 2) * 8).collect();
        let m = PeerMsg::BufferMap(BufferMap::from_seqs(&all, Some(0)));
        net.h.send_raw(end, &m.to_bytes());
    }
    net.end();
    let st = net.node(v).stats().clone();
    assert!(st.timeouts > 0, "some requests went to the silent partner");
    assert!(st.repaired > 0, "and were repaired from the other");
    assert_eq!(st.skipped, 0, "before their deadline");
    assert!(st.continuity() >= 0.999, "continuity {}", st.continuity());
    assert_eq!(net.played(v), net.ingested);
}

#[test]
fn forged_and_tampered_chunks_are_rejected_and_their_sender_dropped() {
    for tamper in [false, true] {
        let mut net = Net::new(4, 0);
        let v = net.viewer(10, |_| {});
        net.h.drive_for(Duration::from_secs(1));
        net.feed(2);
        let evil = addr(98);
        let end = net.h.raw_connect(evil, v);
        let hello = PeerMsg::Hello {
            channel: net.channel,
            listen_port: 7000,
            flags: Flags::default(),
            up_kbps: 0,
        };
        net.h.send_raw(end, &hello.to_bytes());
        net.h.drive_for(Duration::from_millis(100));
        let next = net.node(v).position() + 1;
        let mut bad = if tamper {
            // The real key, then a flipped bit.
            let mut c = Chunk::sign(&net.key, next, 0, true, false, packet(0x100, true, 7));
            c.payload[50] ^= 1;
            c
        } else {
            // Another key claiming the channel.
            let mut c = Chunk::sign(
                &SigningKey::from_bytes(&[77; 32]),
                next,
                0,
                true,
                false,
                packet(0x100, true, 7),
            );
            c.channel = net.channel;
            c
        };
        bad.timestamp_us = 1;
        net.h.send_raw(end, &PeerMsg::Chunk(bad).to_bytes());
        net.h.drive_for(Duration::from_millis(100));
        let forgers: Vec<SocketAddr> = net
            .h
            .events()
            .iter()
            .filter(|(n, _)| *n == v)
            .filter_map(|(_, e)| match e {
                StationEvent::Node(NodeEvent::Forger { addr, .. }) => Some(*addr),
                _ => None,
            })
            .collect();
        assert_eq!(forgers, vec![evil], "tamper={tamper}");
        assert!(
            net.h.raw(end).is_some_and(|r| r.closed),
            "the sender was dropped"
        );
        assert_eq!(net.node(v).stats().forgers_dropped, 1);
        net.feed(2);
        net.end();
        assert_eq!(net.played(v), net.ingested, "nothing forged was played");
    }
}

#[test]
fn a_third_of_fifty_viewers_leave_abruptly_and_the_rest_keep_continuity() {
    // 1.5 Mbit/s, the source uploads 2x, viewers 0.5x-2x.
    let mut net = Net::new(5, 3000);
    let mut viewers = Vec::new();
    for i in 0..50u32 {
        let up = 750 + (i * 2250 / 49);
        viewers.push(net.viewer(10 + i, |c| c.up_kbps = up));
    }
    net.h.drive_for(Duration::from_secs(2));
    net.feed(6);
    // A third leave without a word (their hosts vanish).
    let leaving: Vec<SocketAddr> = viewers.iter().copied().step_by(3).collect();
    for a in &leaving {
        net.h.remove(*a);
    }
    net.feed(8);
    net.end();
    let mut worst = 1.0f64;
    for a in viewers.iter().filter(|a| !leaving.contains(a)) {
        let st = net.node(*a).stats();
        worst = worst.min(st.continuity());
        assert!(st.played > 0, "{a} played");
    }
    assert!(worst >= 0.99, "worst continuity {worst}");
}
