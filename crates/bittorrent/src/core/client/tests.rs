//! The client core's unit tests: peers, trackers, limits, MSE, magnet fetch, choking.

use super::*;
use crate::storage::MemStorage;
use crate::swarm::synthetic_torrent;
use proptest::prelude::*;
use servent_core::Rng;

fn client(trackers: Vec<Vec<TrackerEndpoint>>) -> Client<MemStorage> {
    let meta = synthetic_torrent(1, 100_000, 16 * 1024, "http://127.0.0.1:1/announce");
    let mut cfg = ClientConfig::new(*b"-SV0100-aaaaaaaaaaaa", 6881);
    cfg.trackers = trackers;
    let n = meta.piece_count() as u32;
    Client::new(
        cfg,
        &meta,
        MemStorage::empty(meta.total_length),
        Bitfield::new(n),
        Rng::new(1),
    )
}

fn drain(c: &mut Client<MemStorage>) -> Vec<Transmit> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn http_ep(port: u16) -> TrackerEndpoint {
    TrackerEndpoint {
        url: format!("http://127.0.0.1:{port}/announce"),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: TrackerKind::Http {
            host: format!("127.0.0.1:{port}"),
            path: "/announce".into(),
        },
    }
}

/// An inbound connection from `peer` that has done its handshake, its first output drained.
fn handshaken(c: &mut Client<MemStorage>, now: Instant, id: u64, peer: &str) -> ConnId {
    let conn = ConnId::inbound(id);
    let peer = peer.parse().unwrap();
    c.handle_input(now, Input::Connected { conn, peer });
    let hs = Handshake {
        reserved: Reserved::ours(),
        info_hash: c.info_hash,
        // distinct per connection (a second connection of one peer id is dropped)
        peer_id: {
            let mut id20 = *b"-XX0001-abcdefghijkl";
            id20[12..20].copy_from_slice(&id.to_be_bytes());
            id20
        },
    }
    .encode();
    c.handle_input(now, Input::Received { conn, data: &hs });
    let out = drain(c);
    assert!(!out.contains(&Transmit::Close { conn }), "{out:?}");
    conn
}

fn closed(out: &[Transmit], conn: ConnId) -> bool {
    out.contains(&Transmit::Close { conn })
}

fn disconnect_reason(c: &mut Client<MemStorage>) -> Option<String> {
    std::iter::from_fn(|| c.poll_event()).find_map(|e| match e {
        ClientEvent::PeerDisconnected { reason, .. }
        | ClientEvent::HandshakeFailed { reason, .. } => Some(reason),
        _ => None,
    })
}

#[test]
fn a_piece_message_longer_than_a_block_is_refused_from_its_head_and_banned() {
    let mut c = client(Vec::new());
    let now = Instant::from_secs(1);
    c.handle_timeout(now);
    let conn = handshaken(&mut c, now, 1, "127.0.0.7:5000");
    while c.poll_event().is_some() {}
    // Only the 5-byte head of a piece message 200 000 bytes longer than a block.
    let len = (9 + BLOCK_LEN + 200_000).to_be_bytes();
    let head = [len[0], len[1], len[2], len[3], 7];
    c.handle_input(now, Input::Received { conn, data: &head });
    assert!(closed(&drain(&mut c), conn));
    let events: Vec<ClientEvent> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(events.contains(&ClientEvent::PeerBanned {
        ip: "127.0.0.7".parse().unwrap()
    }));
    assert!(
        events.iter().any(|e| matches!(e,
            ClientEvent::PeerDisconnected { reason, .. } if reason.contains("oversized message"))),
        "{events:?}"
    );
    assert_eq!(c.stats().limit_closes, 1);
    // The banned address is refused when it comes back.
    let again = ConnId::inbound(2);
    let peer = "127.0.0.7:5001".parse().unwrap();
    c.handle_input(now, Input::Connected { conn: again, peer });
    assert!(closed(&drain(&mut c), again));
}

#[test]
fn one_ip_gets_at_most_max_peers_per_ip_connections() {
    let mut c = client(Vec::new());
    c.cfg.max_peers_per_ip = 3;
    let now = Instant::from_secs(1);
    c.handle_timeout(now);
    for i in 0..3 {
        let conn = ConnId::inbound(i);
        let peer = SocketAddr::from(([127, 0, 0, 9], 7000 + i as u16));
        c.handle_input(now, Input::Connected { conn, peer });
        assert!(!closed(&drain(&mut c), conn));
    }
    // A fourth from that IP: the oldest silent one makes room.
    let later = Instant::from_secs(2);
    let fourth = ConnId::inbound(3);
    let peer = SocketAddr::from(([127, 0, 0, 9], 7003));
    c.handle_input(later, Input::Connected { conn: fourth, peer });
    let out = drain(&mut c);
    assert!(
        closed(&out, ConnId::inbound(0)) && !closed(&out, fourth),
        "{out:?}"
    );
    let why = disconnect_reason(&mut c).unwrap_or_default();
    assert!(why.contains("max peers per IP"), "{why}");
    assert_eq!(c.stats().limit_closes, 1);
    // Once every connection from the IP has handshaken, one more is refused.
    let mut c = client(Vec::new());
    c.cfg.max_peers_per_ip = 2;
    c.handle_timeout(now);
    handshaken(&mut c, now, 1, "127.0.0.9:7000");
    handshaken(&mut c, now, 2, "127.0.0.9:7001");
    while c.poll_event().is_some() {}
    let third = ConnId::inbound(3);
    let peer = SocketAddr::from(([127, 0, 0, 9], 7002));
    c.handle_input(now, Input::Connected { conn: third, peer });
    assert!(closed(&drain(&mut c), third));
    let why = disconnect_reason(&mut c).unwrap_or_default();
    assert!(
        why.contains("refused") && why.contains("max peers per IP"),
        "{why}"
    );
    assert_eq!(c.stats().limit_closes, 1);
    // Another address is still welcome.
    let other = ConnId::inbound(4);
    let peer = SocketAddr::from(([127, 0, 0, 10], 7000));
    c.handle_input(now, Input::Connected { conn: other, peer });
    assert!(!closed(&drain(&mut c), other));
}

#[test]
fn a_silent_connection_closes_at_the_handshake_timeout_and_a_silent_peer_at_the_idle_timeout() {
    let mut c = client(Vec::new());
    c.cfg.handshake_timeout = Duration::from_secs(5);
    c.cfg.idle_timeout = Duration::from_secs(150);
    let t0 = Instant::from_secs(1);
    c.handle_timeout(t0);
    let slow = ConnId::inbound(1);
    let peer = "127.0.0.11:1".parse().unwrap();
    c.handle_input(t0, Input::Connected { conn: slow, peer });
    // A few handshake bytes (slowloris) do not reset the handshake clock.
    c.handle_input(
        t0 + Duration::from_secs(3),
        Input::Received {
            conn: slow,
            data: &[19],
        },
    );
    c.handle_timeout(t0 + Duration::from_secs(4));
    assert!(!closed(&drain(&mut c), slow));
    c.handle_timeout(t0 + Duration::from_secs(6));
    assert!(closed(&drain(&mut c), slow));
    assert!(
        disconnect_reason(&mut c)
            .unwrap_or_default()
            .contains("handshake timeout")
    );

    let peer = handshaken(&mut c, t0 + Duration::from_secs(6), 2, "127.0.0.12:1");
    // A keep-alive at 100 s keeps it; nothing after that closes it 150 s later.
    let t1 = t0 + Duration::from_secs(106);
    c.handle_input(
        t1,
        Input::Received {
            conn: peer,
            data: &[0, 0, 0, 0],
        },
    );
    c.handle_timeout(t1 + Duration::from_secs(140));
    assert!(!closed(&drain(&mut c), peer));
    while c.poll_event().is_some() {}
    c.handle_timeout(t1 + Duration::from_secs(151));
    assert!(closed(&drain(&mut c), peer));
    assert!(
        disconnect_reason(&mut c)
            .unwrap_or_default()
            .contains("idle timeout")
    );
    assert_eq!(c.stats().limit_closes, 2);
}

#[test]
fn idle_inbound_connections_cannot_keep_a_real_peer_out() {
    let mut c = client(Vec::new());
    let max = c.cfg.max_peers;
    let now = Instant::from_secs(1);
    c.handle_timeout(now);
    // The attacker fills every slot with connections that never handshake (from many
    // addresses: one address is held to max_peers_per_ip).
    for i in 0..max as u64 {
        let peer = SocketAddr::from(([127, 0, 1, i as u8], 10_000 + i as u16));
        c.handle_input(
            now,
            Input::Connected {
                conn: ConnId::inbound(i),
                peer,
            },
        );
    }
    drain(&mut c);
    // A real peer arrives: it is accepted (the oldest silent connection goes) and its
    // handshake is answered.
    let real = ConnId::inbound(10_000);
    let later = Instant::from_secs(2);
    let peer = SocketAddr::from(([127, 0, 0, 2], 6881));
    c.handle_input(later, Input::Connected { conn: real, peer });
    let out = drain(&mut c);
    assert!(
        out.contains(&Transmit::Close {
            conn: ConnId::inbound(0)
        }),
        "{out:?}"
    );
    assert!(!out.contains(&Transmit::Close { conn: real }));
    let hs = Handshake {
        reserved: Reserved::ours(),
        info_hash: c.info_hash,
        peer_id: *b"-XX0001-realrealreal",
    }
    .encode();
    c.handle_input(
        later,
        Input::Received {
            conn: real,
            data: &hs,
        },
    );
    let out = drain(&mut c);
    assert!(
        out.iter()
            .any(|t| matches!(t, Transmit::Send { conn, .. } if *conn == real)),
        "no handshake answer: {out:?}"
    );
}

#[test]
fn tracker_urls_parse_into_endpoints() {
    let r = |_: &str, p: u16| Some(SocketAddr::from(([10, 0, 0, 1], p)));
    let e = TrackerEndpoint::parse("http://t.example:8080/ann?x=1", r).unwrap();
    assert_eq!(e.addr.port(), 8080);
    assert_eq!(
        e.kind,
        TrackerKind::Http {
            host: "t.example:8080".into(),
            path: "/ann?x=1".into()
        }
    );
    assert_eq!(
        TrackerEndpoint::parse("http://t.example/a", r)
            .unwrap()
            .addr
            .port(),
        80
    );
    assert_eq!(
        TrackerEndpoint::parse("udp://t.example:6969", r)
            .unwrap()
            .kind,
        TrackerKind::Udp
    );
    assert!(TrackerEndpoint::parse("udp://t.example", r).is_none());
    assert!(TrackerEndpoint::parse("https://t.example/a", r).is_none());
}

#[test]
fn a_failing_tracker_is_skipped_for_the_next_in_its_tier_then_the_next_tier() {
    let mut c = client(vec![vec![http_ep(1), http_ep(2)], vec![http_ep(3)]]);
    let now = Instant::from_secs(1);
    c.handle_timeout(now);
    let mut tried = Vec::new();
    for _ in 0..3 {
        let out = drain(&mut c);
        let Some(Transmit::Connect { conn, to }) = out
            .into_iter()
            .find(|t| matches!(t, Transmit::Connect { .. }))
        else {
            panic!("no tracker connection")
        };
        tried.push(to.port());
        c.handle_input(now, Input::ConnectFailed { conn });
        c.handle_timeout(now);
    }
    assert_eq!(tried, vec![1, 2, 3]);
    let errors = std::iter::from_fn(|| c.poll_event())
        .filter(|e| matches!(e, ClientEvent::TrackerError { .. }))
        .count();
    assert_eq!(errors, 3);
}

#[test]
fn an_http_tracker_reply_adds_its_peers_and_they_are_dialled() {
    let mut c = client(vec![vec![http_ep(1)]]);
    let now = Instant::from_secs(1);
    c.handle_timeout(now);
    let Some(Transmit::Connect { conn, .. }) = drain(&mut c).into_iter().next() else {
        panic!()
    };
    c.handle_input(
        now,
        Input::Connected {
            conn,
            peer: http_ep(1).addr,
        },
    );
    let sent = drain(&mut c);
    let Some(Transmit::Send { data, .. }) = sent.first() else {
        panic!("{sent:?}")
    };
    assert!(data.starts_with(b"GET /announce?info_hash="));
    let body = AnnounceResponse {
        interval: 900,
        peers: vec!["127.0.0.9:7000".parse().unwrap()],
        ..Default::default()
    }
    .encode(true);
    let reply = crate::tracker::http_response(200, "OK", "text/plain", &body);
    c.handle_input(now, Input::Received { conn, data: &reply });
    let out = drain(&mut c);
    assert!(out.contains(&Transmit::Close { conn }));
    assert!(
        out.iter()
            .any(|t| matches!(t, Transmit::Connect { to, .. } if to.port() == 7000))
    );
}

#[test]
fn a_peer_with_the_wrong_info_hash_or_garbage_is_dropped() {
    let mut c = client(Vec::new());
    let now = Instant::from_secs(1);
    let conn = ConnId::inbound(1);
    c.handle_input(
        now,
        Input::Connected {
            conn,
            peer: "127.0.0.5:1".parse().unwrap(),
        },
    );
    let hs = Handshake {
        reserved: Reserved::ours(),
        info_hash: InfoHash([9; 20]),
        peer_id: [7; 20],
    };
    c.handle_input(
        now,
        Input::Received {
            conn,
            data: &hs.encode(),
        },
    );
    assert!(drain(&mut c).contains(&Transmit::Close { conn }));
    let conn = ConnId::inbound(2);
    c.handle_input(
        now,
        Input::Connected {
            conn,
            peer: "127.0.0.5:2".parse().unwrap(),
        },
    );
    c.handle_input(
        now,
        Input::Received {
            conn,
            data: b"GET / HTTP/1.1\r\n\r\n",
        },
    );
    assert!(drain(&mut c).contains(&Transmit::Close { conn }));
    assert_eq!(c.stats().peers, 0);
}

/// Carries bytes between two cores over one connection until `done` holds or nothing
/// moves; returns the events of `b`.
fn shuttle(
    a: &mut Client<MemStorage>,
    a_conn: ConnId,
    b: &mut Client<MemStorage>,
    b_conn: ConnId,
    now: Instant,
) -> Vec<ClientEvent> {
    let mut events = Vec::new();
    for _ in 0..200 {
        let mut moved = false;
        for t in drain(a) {
            if let Transmit::Send { conn, data } = t {
                if conn == a_conn {
                    moved = true;
                    b.handle_input(
                        now,
                        Input::Received {
                            conn: b_conn,
                            data: &data,
                        },
                    );
                }
            }
        }
        for t in drain(b) {
            if let Transmit::Send { conn, data } = t {
                if conn == b_conn {
                    moved = true;
                    a.handle_input(
                        now,
                        Input::Received {
                            conn: a_conn,
                            data: &data,
                        },
                    );
                }
            }
        }
        events.extend(std::iter::from_fn(|| b.poll_event()));
        if !moved {
            break;
        }
    }
    events
}

/// A seeder of `meta` (content from seed 1) and a magnet client for `info_hash`, connected.
fn seeder_and_magnet(
    meta: &Metainfo,
    info_hash: InfoHash,
) -> (
    Client<MemStorage>,
    Client<MemStorage>,
    ConnId,
    ConnId,
    Instant,
) {
    let mut data = vec![0u8; meta.total_length as usize];
    crate::storage::synthetic_bytes(1, 0, &mut data);
    let n = meta.piece_count() as u32;
    let seeder = Client::new(
        ClientConfig::new(*b"-SV0100-ssssssssssss", 7000),
        meta,
        MemStorage::with(data),
        Bitfield::full(n),
        Rng::new(2),
    );
    let mut m = Client::magnet(
        ClientConfig::new(*b"-SV0100-mmmmmmmmmmmm", 7001),
        info_hash,
        MemStorage::empty(0),
        Rng::new(3),
    );
    let now = Instant::from_secs(1);
    let seeder_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    m.handle_input(
        now,
        Input::Command(ClientCommand::AddPeers {
            id: 1,
            peers: vec![seeder_addr],
        }),
    );
    let out = drain(&mut m);
    let Some(Transmit::Connect { conn: m_conn, to }) = out.first().cloned() else {
        panic!("the magnet client does not dial: {out:?}")
    };
    assert_eq!(to, seeder_addr);
    let mut seeder = seeder;
    let s_conn = ConnId::inbound(0);
    seeder.handle_input(
        now,
        Input::Connected {
            conn: s_conn,
            peer: "127.0.0.2:7001".parse().unwrap(),
        },
    );
    m.handle_input(
        now,
        Input::Connected {
            conn: m_conn,
            peer: seeder_addr,
        },
    );
    (seeder, m, s_conn, m_conn, now)
}

#[test]
fn a_magnet_client_fetches_the_info_dictionary_from_a_seeder_and_checks_it() {
    // 3 metadata pieces: a torrent with enough piece hashes (~2500 x 20 bytes).
    let meta = synthetic_torrent(1, 2500 * 16 * 1024, 16 * 1024, "http://127.0.0.1:1/a");
    assert!(meta.info_bytes.len() > 2 * 16 * 1024);
    let (mut seeder, mut m, s_conn, m_conn, now) = seeder_and_magnet(&meta, meta.info_hash);
    assert!(m.is_magnet() && !m.is_complete());
    let events = shuttle(&mut seeder, s_conn, &mut m, m_conn, now);
    let got = events.iter().find_map(|e| match e {
        ClientEvent::MetadataReceived { info_bytes } => Some(info_bytes.clone()),
        _ => None,
    });
    assert_eq!(got.as_deref(), Some(meta.info_bytes.as_slice()));
    assert_eq!(
        Metainfo::from_info_bytes(&got.unwrap()).unwrap().info_hash,
        meta.info_hash
    );
    assert_eq!(m.known_peers(), vec!["127.0.0.1:7000".parse().unwrap()]);
    assert_eq!(m.stats().peers, 1, "the seeder stays connected");
}

#[test]
fn metadata_that_fails_the_info_hash_gets_its_sender_banned() {
    let meta = synthetic_torrent(1, 100_000, 16 * 1024, "http://127.0.0.1:1/a");
    // A liar serves another info dictionary under this info-hash.
    let mut other = synthetic_torrent(1, 100_000, 32 * 1024, "http://127.0.0.1:1/a");
    let wanted = meta.info_hash;
    other.info_hash = wanted;
    let (mut seeder, mut m, s_conn, m_conn, now) = seeder_and_magnet(&other, wanted);
    let events = shuttle(&mut seeder, s_conn, &mut m, m_conn, now);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ClientEvent::MetadataReceived { .. }))
    );
    assert!(events.contains(&ClientEvent::PeerBanned {
        ip: "127.0.0.1".parse().unwrap()
    }));
    assert_eq!(m.stats().peers, 0);
    assert!(m.known_peers().is_empty());
}

#[test]
fn a_peer_that_refused_the_connection_is_dialled_again_with_backoff_then_given_up() {
    let mut c = client(Vec::new());
    let peer: SocketAddr = "127.0.0.9:7000".parse().unwrap();
    let mut now = Instant::from_secs(1);
    c.handle_input(
        now,
        Input::Command(ClientCommand::AddPeers {
            id: 1,
            peers: vec![peer],
        }),
    );
    let mut dials = Vec::new();
    for _ in 0..200 {
        for t in drain(&mut c) {
            if let Transmit::Connect { conn, to } = t {
                assert_eq!(to, peer);
                dials.push(now);
                c.handle_input(now, Input::ConnectFailed { conn });
            }
        }
        now += Duration::from_secs(1);
        c.handle_timeout(now);
    }
    assert_eq!(dials.len(), 1 + REDIALS as usize, "{dials:?}");
    let gaps: Vec<u64> = dials
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]).as_secs())
        .collect();
    assert!(
        gaps.windows(2).all(|g| g[1] > g[0]),
        "backoff grows: {gaps:?}"
    );
}

#[test]
fn with_mse_required_a_peer_that_closed_during_the_mse_handshake_is_dialled_again() {
    let mut c = client(Vec::new());
    c.cfg.encryption = Encryption::Require;
    let peer: SocketAddr = "127.0.0.9:7000".parse().unwrap();
    let mut now = Instant::from_secs(1);
    c.handle_input(
        now,
        Input::Command(ClientCommand::AddPeers {
            id: 1,
            peers: vec![peer],
        }),
    );
    let mut dials = 0;
    for _ in 0..60 {
        for t in drain(&mut c) {
            if let Transmit::Connect { conn, to } = t {
                assert_eq!(to, peer);
                dials += 1;
                // it accepts, reads our MSE opening, and closes (not ready for us yet)
                c.handle_input(now, Input::Connected { conn, peer });
                c.handle_input(
                    now,
                    Input::Closed {
                        conn,
                        reason: servent_core::CloseReason::Reset,
                    },
                );
            }
        }
        now += Duration::from_secs(1);
        c.handle_timeout(now);
    }
    assert!(dials > 1, "dialled {dials} time(s)");
    assert!(dials <= 1 + REDIALS as usize, "dialled {dials} times");
}

#[test]
fn have_all_after_the_extension_handshake_is_accepted_as_libtorrent_sends_it() {
    let mut c = client(Vec::new());
    let now = Instant::from_secs(1);
    let conn = ConnId::inbound(1);
    c.handle_input(
        now,
        Input::Connected {
            conn,
            peer: "127.0.0.5:1".parse().unwrap(),
        },
    );
    let hs = Handshake {
        reserved: Reserved::ours(),
        info_hash: c.info_hash(),
        peer_id: [7; 20],
    };
    let mut bytes = hs.encode().to_vec();
    let eh = ExtHandshake {
        ut_pex: Some(1),
        ..Default::default()
    };
    Message::Extended {
        id: 0,
        payload: &eh.encode(),
    }
    .encode_into(&mut bytes);
    Message::HaveAll.encode_into(&mut bytes);
    Message::Unchoke.encode_into(&mut bytes);
    c.handle_input(now, Input::Received { conn, data: &bytes });
    let out = drain(&mut c);
    assert!(!out.contains(&Transmit::Close { conn }), "{out:?}");
    assert_eq!(c.stats().peers, 1);
    // We are interested in a seed and ask it for blocks at once.
    let sent: Vec<u8> = out
        .iter()
        .filter_map(|t| match t {
            Transmit::Send { conn: c2, data } if *c2 == conn => Some(data.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(sent.windows(5).any(|w| w == [0, 0, 0, 1, 2]), "interested");
    assert!(sent.windows(5).any(|w| w == [0, 0, 0, 13, 6]), "a request");
    // A later have-none is still refused.
    let mut again = Vec::new();
    Message::HaveNone.encode_into(&mut again);
    c.handle_input(now, Input::Received { conn, data: &again });
    assert!(drain(&mut c).contains(&Transmit::Close { conn }));
}

#[test]
fn a_whole_piece_from_a_web_seed_is_verified_before_it_counts() {
    let meta = synthetic_torrent(1, 100_000, 16 * 1024, "http://127.0.0.1:1/a");
    let mut data = vec![0u8; meta.total_length as usize];
    crate::storage::synthetic_bytes(1, 0, &mut data);
    let mut c = client(Vec::new());
    let now = Instant::from_secs(1);
    let piece = |i: usize| data[i * 16384..((i + 1) * 16384).min(data.len())].to_vec();
    let mut bad = piece(1);
    bad[7] ^= 1;
    let cmds = [
        (1, 1, bad),
        (2, 1, piece(1)),
        (3, 6, piece(6)),
        (4, 2, vec![0; 5]),
    ];
    for (id, index, data) in cmds {
        c.handle_input(
            now,
            Input::Command(ClientCommand::PieceData { id, index, data }),
        );
    }
    let done: Vec<(u64, bool)> = std::iter::from_fn(|| c.poll_event())
        .filter_map(|e| match e {
            ClientEvent::PieceDataDone { id, ok, .. } => Some((id, ok)),
            _ => None,
        })
        .collect();
    assert_eq!(done, vec![(1, false), (2, true), (3, true), (4, false)]);
    assert_eq!(c.have().ones().collect::<Vec<_>>(), vec![1, 6]);
}

#[test]
fn a_later_bitfield_counts_as_haves_as_aria2_sends_it() {
    let mut c = client(Vec::new());
    let now = Instant::from_secs(1);
    let conn = ConnId::inbound(1);
    c.handle_input(
        now,
        Input::Connected {
            conn,
            peer: "127.0.0.5:1".parse().unwrap(),
        },
    );
    let hs = Handshake {
        reserved: Reserved::ours(),
        info_hash: c.info_hash(),
        peer_id: [7; 20],
    };
    let n = c.picker.piece_count();
    let mut bytes = hs.encode().to_vec();
    Message::HaveNone.encode_into(&mut bytes);
    Message::Have(0).encode_into(&mut bytes);
    let mut later = Bitfield::new(n);
    later.set(2);
    later.set(3);
    Message::Bitfield(later.as_bytes()).encode_into(&mut bytes);
    c.handle_input(now, Input::Received { conn, data: &bytes });
    assert!(!drain(&mut c).contains(&Transmit::Close { conn }));
    let has: Vec<u32> = c.peers.values().flat_map(|p| p.has.ones()).collect();
    assert_eq!(has, vec![0, 2, 3], "have 0 kept, 2 and 3 added");
    assert_eq!(c.picker.availability(2), 1);
    // A bitfield of the wrong length is still malformed.
    let mut bad = Vec::new();
    Message::Bitfield(&[0xff; 40]).encode_into(&mut bad);
    c.handle_input(now, Input::Received { conn, data: &bad });
    assert!(drain(&mut c).contains(&Transmit::Close { conn }));
}

/// What happened between a leecher and a seeder run to quiescence.
struct PairRun {
    leecher: Vec<ClientEvent>,
    connects: usize,
    /// Sends (either way) that start with the plaintext BitTorrent handshake.
    plain_handshakes: usize,
    /// The leecher's sends that start with it.
    leecher_plain_handshakes: usize,
    /// The seeder's sends that carry content bytes as they are (unencrypted payload).
    plain_payload_sends: usize,
    leecher_complete: bool,
}

/// A seeder of 100 kB and a leecher with the given encryption policies; the leecher
/// dials, reconnects as it likes; bytes and closes are carried until nothing moves.
fn run_pair(leecher_enc: Encryption, seeder_enc: Encryption) -> PairRun {
    let meta = synthetic_torrent(1, 100_000, 16 * 1024, "http://127.0.0.1:1/a");
    let mut data = vec![0u8; meta.total_length as usize];
    crate::storage::synthetic_bytes(1, 0, &mut data);
    let n = meta.piece_count() as u32;
    let mut scfg = ClientConfig::new(*b"-SV0100-ssssssssssss", 7000);
    scfg.encryption = seeder_enc;
    let mut seeder = Client::new(
        scfg,
        &meta,
        MemStorage::with(data.clone()),
        Bitfield::full(n),
        Rng::new(2),
    );
    let mut lcfg = ClientConfig::new(*b"-SV0100-llllllllllll", 7001);
    lcfg.encryption = leecher_enc;
    let mut leecher = Client::new(
        lcfg,
        &meta,
        MemStorage::empty(meta.total_length),
        Bitfield::new(n),
        Rng::new(3),
    );
    let seeder_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let mut now = Instant::from_secs(1);
    leecher.handle_input(
        now,
        Input::Command(ClientCommand::AddPeers {
            id: 1,
            peers: vec![seeder_addr],
        }),
    );
    let mut links: Vec<(ConnId, ConnId)> = Vec::new();
    let mut run = PairRun {
        leecher: Vec::new(),
        connects: 0,
        plain_handshakes: 0,
        leecher_plain_handshakes: 0,
        plain_payload_sends: 0,
        leecher_complete: false,
    };
    let mut idle = 0;
    let mut next_in = 0;
    for _ in 0..5000 {
        let mut moved = false;
        for t in drain(&mut leecher) {
            match t {
                Transmit::Connect { conn, .. } => {
                    let sc = ConnId::inbound(next_in);
                    next_in += 1;
                    run.connects += 1;
                    links.push((conn, sc));
                    seeder.handle_input(
                        now,
                        Input::Connected {
                            conn: sc,
                            peer: "127.0.0.2:7001".parse().unwrap(),
                        },
                    );
                    leecher.handle_input(
                        now,
                        Input::Connected {
                            conn,
                            peer: seeder_addr,
                        },
                    );
                    moved = true;
                }
                Transmit::Send { conn, data } => {
                    if data.starts_with(crate::mse::BT_PROTOCOL_PREFIX) {
                        run.plain_handshakes += 1;
                        run.leecher_plain_handshakes += 1;
                    }
                    if let Some((_, sc)) = links.iter().find(|(l, _)| *l == conn) {
                        seeder.handle_input(
                            now,
                            Input::Received {
                                conn: *sc,
                                data: &data,
                            },
                        );
                        moved = true;
                    }
                }
                Transmit::Close { conn } => {
                    if let Some(i) = links.iter().position(|(l, _)| *l == conn) {
                        let (_, sc) = links.remove(i);
                        seeder.handle_input(
                            now,
                            Input::Closed {
                                conn: sc,
                                reason: servent_core::CloseReason::Closed,
                            },
                        );
                        moved = true;
                    }
                }
                _ => {}
            }
        }
        for t in drain(&mut seeder) {
            match t {
                Transmit::Send { conn, data: sent } => {
                    if sent.starts_with(crate::mse::BT_PROTOCOL_PREFIX) {
                        run.plain_handshakes += 1;
                    }
                    if sent
                        .windows(32)
                        .any(|w| data.windows(32).step_by(4096).any(|c| c == w))
                    {
                        run.plain_payload_sends += 1;
                    }
                    let data = sent;
                    if let Some((l, _)) = links.iter().find(|(_, s)| *s == conn) {
                        leecher.handle_input(
                            now,
                            Input::Received {
                                conn: *l,
                                data: &data,
                            },
                        );
                        moved = true;
                    }
                }
                Transmit::Close { conn } => {
                    if let Some(i) = links.iter().position(|(_, s)| *s == conn) {
                        let (l, _) = links.remove(i);
                        leecher.handle_input(
                            now,
                            Input::Closed {
                                conn: l,
                                reason: servent_core::CloseReason::Closed,
                            },
                        );
                        moved = true;
                    }
                }
                _ => {}
            }
        }
        run.leecher
            .extend(std::iter::from_fn(|| leecher.poll_event()));
        while seeder.poll_event().is_some() {}
        if moved {
            idle = 0;
        } else {
            idle += 1;
            if idle > 40 {
                break;
            }
            now += Duration::from_secs(1);
            leecher.handle_timeout(now);
            seeder.handle_timeout(now);
        }
    }
    run.leecher_complete = leecher.is_complete() && leecher.storage().data() == data.as_slice();
    run
}

#[test]
fn mse_prefer_on_both_sides_hides_the_handshake_and_sends_the_payload_in_plaintext() {
    let r = run_pair(Encryption::Prefer, Encryption::Prefer);
    assert!(r.leecher_complete);
    assert_eq!(r.connects, 1);
    assert_eq!(
        r.leecher_plain_handshakes, 0,
        "our handshake rides in MSE's IA"
    );
    assert!(
        r.plain_payload_sends > 0,
        "plaintext selected for the payload"
    );
}

#[test]
fn mse_require_on_either_side_encrypts_everything() {
    for (l, s) in [
        (Encryption::Require, Encryption::Prefer),
        (Encryption::Prefer, Encryption::Require),
    ] {
        let r = run_pair(l, s);
        assert!(r.leecher_complete);
        assert_eq!(r.plain_handshakes, 0);
        assert_eq!(r.plain_payload_sends, 0, "RC4 payload");
    }
}

#[test]
fn mse_prefer_falls_back_to_plaintext_when_the_peer_refuses_mse() {
    let r = run_pair(Encryption::Prefer, Encryption::Plaintext);
    assert!(r.leecher_complete);
    assert_eq!(r.connects, 2, "one MSE attempt, then plaintext");
    assert_eq!(r.plain_handshakes, 2, "ours and the seeder's");
}

#[test]
fn mse_required_refuses_plaintext_peers_both_ways() {
    let r = run_pair(Encryption::Plaintext, Encryption::Require);
    assert!(!r.leecher_complete);
    assert!(
        !r.leecher
            .iter()
            .any(|e| matches!(e, ClientEvent::PeerConnected { .. }))
    );
    let r = run_pair(Encryption::Require, Encryption::Plaintext);
    assert!(!r.leecher_complete);
    assert_eq!(
        r.leecher_plain_handshakes, 0,
        "require never retries in plaintext"
    );
    assert!(
        r.connects <= 1 + REDIALS as usize,
        "MSE redials are bounded"
    );
    // Plaintext on both sides still works.
    let r = run_pair(Encryption::Plaintext, Encryption::Prefer);
    assert!(r.leecher_complete);
    assert_eq!(r.plain_handshakes, 2);
}

proptest! {
    #[test]
    fn arbitrary_bytes_after_a_good_handshake_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut c = client(Vec::new());
        let now = Instant::from_secs(1);
        let conn = ConnId::inbound(1);
        c.handle_input(now, Input::Connected { conn, peer: "127.0.0.5:1".parse().unwrap() });
        let hs = Handshake { reserved: Reserved::ours(), info_hash: c.info_hash(), peer_id: [7; 20] };
        c.handle_input(now, Input::Received { conn, data: &hs.encode() });
        c.handle_input(now, Input::Received { conn, data: &data });
        c.handle_timeout(now + Duration::from_secs(11));
        drain(&mut c);
    }

    #[test]
    fn arbitrary_bytes_to_an_mse_responder_never_panic(a in proptest::collection::vec(any::<u8>(), 0..700), b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut c = client(Vec::new());
        c.cfg.encryption = Encryption::Prefer;
        let now = Instant::from_secs(1);
        let conn = ConnId::inbound(1);
        c.handle_input(now, Input::Connected { conn, peer: "127.0.0.5:1".parse().unwrap() });
        c.handle_input(now, Input::Received { conn, data: &a });
        c.handle_input(now, Input::Received { conn, data: &b });
        c.handle_timeout(now + Duration::from_secs(30));
        drain(&mut c);
    }

    #[test]
    fn arbitrary_bytes_to_a_magnet_client_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut c = Client::magnet(ClientConfig::new(*b"-SV0100-aaaaaaaaaaaa", 1), InfoHash([5; 20]), MemStorage::empty(0), Rng::new(1));
        let now = Instant::from_secs(1);
        let conn = ConnId::inbound(1);
        c.handle_input(now, Input::Connected { conn, peer: "127.0.0.5:1".parse().unwrap() });
        let hs = Handshake { reserved: Reserved::ours(), info_hash: c.info_hash(), peer_id: [7; 20] };
        c.handle_input(now, Input::Received { conn, data: &hs.encode() });
        let eh = ExtHandshake { ut_metadata: Some(3), metadata_size: Some(40_000), ..Default::default() };
        let mut msg = Vec::new();
        Message::Extended { id: 0, payload: &eh.encode() }.encode_into(&mut msg);
        c.handle_input(now, Input::Received { conn, data: &msg });
        let mut framed = Vec::new();
        Message::Extended { id: UT_METADATA_ID, payload: &data }.encode_into(&mut framed);
        c.handle_input(now, Input::Received { conn, data: &framed });
        c.handle_input(now, Input::Received { conn, data: &data });
        c.handle_timeout(now + Duration::from_secs(30));
        drain(&mut c);
    }
}
