//! Overlay links: opening, sniffing what an inbound connection is, the 0.4 and 0.6
//! handshakes, deflate, and closing (with the one-link-per-servent rule).

use super::flood_control::Budget;
use super::handshake::{
    Decision, Deflater, Handshake, HandshakeConfig, Headers, Inflater, Progress, Version,
};
use super::qrp::{self, Table};
use super::{DownReason, Event, HandoffKind, MAX_HANDSHAKE, MAX_ROUNDS, PeerRole, Role, Servent};
use crate::wire::http::{self, Giv};
use crate::wire::{CONNECT_04, HEADER_LEN, OK_04};
use servent_core::framing::RecvBuf;
use servent_core::{ConnId, Instant, Transmit};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug)]
pub(super) enum State {
    /// Outbound, waiting for the TCP connection.
    Connecting,
    /// Outbound, `GNUTELLA CONNECT/0.4` sent, waiting for `GNUTELLA OK`.
    AwaitOk,
    /// Inbound, reading the first bytes to decide what it is.
    Sniff,
    /// The handshake is done: descriptors flow.
    Overlay,
    /// Outbound because of a Push: send `GIV` once connected.
    PushConnecting { giv: Giv },
    /// A 0.6 handshake (either side) in progress.
    Handshake06(Box<Handshake>),
}

/// What a 0.6 link carries beyond a 0.4 one.
#[derive(Debug, Default)]
pub(super) struct Ext {
    pub(super) deflater: Option<Deflater>,
    pub(super) inflater: Option<Inflater>,
    /// The QRP table the peer sends us (leaves to ultrapeers, ultrapeers to ultrapeers).
    pub(super) qrp_in: qrp::Receiver,
    /// The table we last sent the peer.
    pub(super) qrp_sent: Option<Arc<Table>>,
    pub(super) user_agent: Option<String>,
    /// The peer's X-Degree (ultrapeer connections it aims at), for dynamic querying.
    pub(super) degree: Option<u32>,
    /// The peer's X-Max-TTL.
    pub(super) max_ttl: Option<u8>,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) state: State,
    pub(super) peer: SocketAddr,
    pub(super) buf: RecvBuf,
    pub(super) cmd: Option<u64>,
    pub(super) since: Instant,
    /// Set when the handshake decided what the peer is (a slot is taken from then on).
    pub(super) role: Option<PeerRole>,
    pub(super) ext: Option<Box<Ext>>,
    /// Where the peer accepts connections: the address we dialled, its `Listen-IP` (0.6),
    /// or the address in its own Pong (hops 0). One overlay link per such address.
    pub(super) listen: Option<SocketAddr>,
    /// Pings and Queries this link sent in the current one-second window.
    pub(super) budget: Budget,
}

impl Conn {
    pub(super) fn new(
        state: State,
        peer: SocketAddr,
        buf_cap: usize,
        cmd: Option<u64>,
        now: Instant,
    ) -> Conn {
        let state_kind = &state;
        let listen = matches!(state_kind, State::Connecting).then_some(peer);
        Conn {
            state,
            peer,
            buf: RecvBuf::new(buf_cap),
            cmd,
            since: now,
            role: None,
            ext: None,
            listen,
            budget: Budget {
                window: None,
                pings: 0,
                queries: 0,
            },
        }
    }
}

pub(super) enum Sniffed {
    Wait,
    Gone,
    Overlay,
}

impl Servent {
    pub(super) fn open(&mut self, now: Instant, addr: SocketAddr, cmd: Option<u64>) {
        let conn = self.new_conn_id();
        self.conns.insert(
            conn,
            Conn::new(State::Connecting, addr, MAX_HANDSHAKE, cmd, now),
        );
        self.transmit(Transmit::Connect { conn, to: addr });
        self.arm_tick(now);
    }

    /// Whether an overlay connection (open or being opened) goes to the servent listening
    /// at `a`.
    pub fn linked_to(&self, a: SocketAddr) -> bool {
        self.conns.values().any(|c| {
            !matches!(c.state, State::PushConnecting { .. }) && (c.peer == a || c.listen == Some(a))
        })
    }

    /// Records that the peer of `conn` listens at `listen`. When another overlay connection
    /// already goes to that servent (both of us dialled), one of the two is closed: the link
    /// dialled by the servent with the lower listen address stays, so both ends close the
    /// same one. Returns whether `conn` is still open.
    pub(super) fn note_listen(&mut self, conn: ConnId, listen: SocketAddr) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.listen.is_some() {
            return true;
        }
        c.listen = Some(listen);
        let other = self
            .conns
            .iter()
            .find(|(id, c)| {
                **id != conn
                    && c.listen == Some(listen)
                    && !matches!(c.state, State::PushConnecting { .. })
            })
            .map(|(id, _)| *id);
        let Some(other) = other else {
            return true;
        };
        // The link I dialled stays when my address is the lower one; else the one it dialled.
        let keep_mine = SocketAddr::V4(self.cfg.advertised) < listen;
        let drop = match (conn.is_inbound(), other.is_inbound()) {
            (true, false) if keep_mine => conn,
            (true, false) => other,
            (false, true) if keep_mine => other,
            // Two links in the same direction: the newer goes.
            _ => conn,
        };
        self.stats.duplicate_links += 1;
        self.close(drop, DownReason::Duplicate, None);
        drop != conn
    }

    pub(super) fn close(&mut self, conn: ConnId, reason: DownReason, cmd: Option<u64>) {
        if let Some(c) = self.conns.remove(&conn) {
            self.transmit(Transmit::Close { conn });
            self.lost(conn, c, reason, cmd);
        }
    }

    /// Reports the end of a connection already removed from the table.
    pub(super) fn lost(&mut self, conn: ConnId, c: Conn, reason: DownReason, cmd: Option<u64>) {
        match c.state {
            State::Overlay => self.emit(Event::PeerDown {
                conn,
                peer: c.peer,
                reason,
                cmd,
            }),
            State::Connecting | State::AwaitOk => self.emit(Event::ConnectFailed {
                cmd: c.cmd,
                addr: c.peer,
            }),
            State::Handshake06(_) if !conn.is_inbound() => self.emit(Event::ConnectFailed {
                cmd: c.cmd,
                addr: c.peer,
            }),
            State::Sniff | State::PushConnecting { .. } | State::Handshake06(_) => {}
        }
        if c.role == Some(PeerRole::Leaf) {
            self.qrp_dirty = true;
            // Nobody is left to want the results of its dynamic queries.
            self.dqs.retain(|_, q| q.leaf != Some(conn));
        }
        if self.cfg.role.is_06() {
            self.urgent_refill = true;
        }
    }

    pub(super) fn connected(&mut self, now: Instant, conn: ConnId, peer: SocketAddr) {
        if conn.is_inbound() {
            let (mut pending, mut same_ip) = (0, 0);
            for (id, c) in &self.conns {
                if id.is_inbound() && !matches!(c.state, State::Overlay) {
                    pending += 1;
                    if c.peer.ip() == peer.ip() {
                        same_ip += 1;
                    }
                }
            }
            if self
                .banned
                .get(&peer.ip())
                .is_some_and(|&until| now < until)
            {
                self.stats.refused_banned += 1;
                self.transmit(Transmit::Close { conn });
                return;
            }
            if pending >= self.cfg.max_pending || same_ip >= self.cfg.max_pending_per_ip {
                self.stats.refused_pending += 1;
                self.transmit(Transmit::Close { conn });
                return;
            }
            self.conns.insert(
                conn,
                Conn::new(State::Sniff, peer, MAX_HANDSHAKE, None, now),
            );
            self.arm_tick(now);
            return;
        }
        let hs_cfg = self.hs_config();
        let is_06 = self.cfg.role.is_06();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.since = now;
        match std::mem::replace(&mut c.state, State::AwaitOk) {
            State::Connecting if is_06 => {
                let mut hs = Handshake::outbound(hs_cfg, peer);
                let out = hs.take_output();
                c.state = State::Handshake06(Box::new(hs));
                self.send_bytes(conn, out, None);
            }
            State::Connecting => {
                self.send_bytes(conn, CONNECT_04.to_vec(), None);
            }
            State::PushConnecting { giv } => {
                let index = giv.index;
                let peer = c.peer;
                self.conns.remove(&conn);
                self.send_bytes(conn, http::giv_line(&giv).into_bytes(), None);
                self.emit(Event::Handoff {
                    conn,
                    peer,
                    kind: HandoffKind::Pushed { index },
                });
            }
            other => c.state = other,
        }
    }

    pub(super) fn received(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if matches!(c.state, State::Handshake06(_)) {
                self.handshake_bytes(now, conn, data);
                return;
            }
            if matches!(c.state, State::Overlay)
                && c.ext.as_ref().is_some_and(|e| e.inflater.is_some())
            {
                self.inflate_bytes(now, conn, data);
                return;
            }
            let room = c.buf.capacity_limit().saturating_sub(c.buf.len());
            if room == 0 {
                self.stats.malformed += 1;
                self.close(
                    conn,
                    DownReason::Protocol("receive buffer full".into()),
                    None,
                );
                return;
            }
            let (now_part, rest) = data.split_at(room.min(data.len()));
            data = rest;
            // Cannot fail: we checked the room.
            let _ = c.buf.extend(now_part);
            if matches!(c.state, State::Overlay) {
                self.stats.bytes_in += now_part.len() as u64;
            }
            if !self.process(now, conn) {
                return;
            }
        }
    }

    /// Handles what is buffered on `conn`; `false` once the connection is gone.
    pub(super) fn process(&mut self, now: Instant, conn: ConnId) -> bool {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return false;
            };
            match c.state {
                State::Overlay => return self.process_overlay(now, conn),
                State::AwaitOk => {
                    let got = c.buf.as_slice();
                    let n = got.len().min(OK_04.len());
                    if got[..n] != OK_04[..n] {
                        self.close(conn, DownReason::Protocol("handshake refused".into()), None);
                        return false;
                    }
                    if n < OK_04.len() {
                        return true;
                    }
                    c.buf.consume(OK_04.len());
                    self.overlay_up(now, conn);
                }
                State::Sniff => match self.sniff(now, conn) {
                    Sniffed::Wait => return true,
                    Sniffed::Gone => return false,
                    Sniffed::Overlay => {}
                },
                State::Connecting | State::PushConnecting { .. } => return true,
                // Handshake bytes never reach the buffer (see `received`).
                State::Handshake06(_) => return true,
            }
        }
    }

    /// The 0.6 handshake settings of our current role.
    pub(super) fn hs_config(&self) -> HandshakeConfig {
        let mut h = HandshakeConfig::new(
            &self.cfg.user_agent,
            self.cfg.role == Role::Ultrapeer,
            (!self.cfg.firewalled).then_some(SocketAddr::V4(self.cfg.advertised)),
        );
        h.deflate = self.cfg.deflate;
        h.degree = u32::try_from(self.cfg.up_peers).unwrap_or(u32::MAX);
        h.max_ttl = self.cfg.mesh_ttl;
        h
    }

    /// Our policy on a peer's handshake headers: which slot it takes, or a refusal.
    pub(super) fn decide(
        &self,
        conn: ConnId,
        peer_addr: SocketAddr,
        version: Version,
        peer: &Headers,
    ) -> (Decision, Option<PeerRole>) {
        let try_ups = self.try_ultrapeers(10, peer_addr);
        // A refusal names other ultrapeers only, never the refuser.
        let me = SocketAddr::V4(self.cfg.advertised);
        let others: Vec<SocketAddr> = try_ups.iter().copied().filter(|a| *a != me).collect();
        let refuse = |reason: &str| {
            (
                Decision::Refuse {
                    code: 503,
                    reason: reason.to_string(),
                    try_ultrapeers: others.clone(),
                },
                None,
            )
        };
        let peer_role = match version {
            Version::V04 => PeerRole::Legacy,
            Version::V06 if peer.ultrapeer == Some(true) => PeerRole::Ultrapeer,
            Version::V06 => PeerRole::Leaf,
        };
        match self.cfg.role {
            Role::Flat04 => refuse("Not a 0.6 servent"),
            Role::Leaf | Role::Auto => {
                if conn.is_inbound() {
                    return refuse("I am a leaf");
                }
                if peer_role != PeerRole::Ultrapeer {
                    return refuse("Not an ultrapeer");
                }
                if self.role_count(PeerRole::Ultrapeer) >= self.cfg.leaf_ultrapeers {
                    return refuse("Ultrapeer slots full");
                }
                (
                    Decision::Accept {
                        ultrapeer_needed: None,
                        try_ultrapeers: Vec::new(),
                    },
                    Some(PeerRole::Ultrapeer),
                )
            }
            Role::Ultrapeer => {
                let mesh = self.role_count(PeerRole::Ultrapeer) + self.role_count(PeerRole::Legacy);
                let leaves = self.role_count(PeerRole::Leaf);
                match peer_role {
                    PeerRole::Leaf if !conn.is_inbound() => return refuse("Not an ultrapeer"),
                    PeerRole::Leaf if leaves >= self.cfg.up_leaves => {
                        return refuse("Leaf slots full");
                    }
                    PeerRole::Ultrapeer | PeerRole::Legacy if mesh >= self.cfg.up_peers => {
                        return refuse("Ultrapeer slots full");
                    }
                    _ => {}
                }
                // The ultrapeer draft (leaf guidance): `X-Ultrapeer-Needed` tells an
                // ultrapeer(-capable) peer whether we want it as an ultrapeer. Short of
                // ultrapeer links we do (saying False would ask it to become our leaf, which
                // gtk-gnutella refuses with 403). To a leaf it says whether the network
                // needs more ultrapeers, judged by our leaf slots being over half used
                // (what drives the supernode election of `Role::Auto`).
                let needed = match peer_role {
                    PeerRole::Leaf => leaves * 2 >= self.cfg.up_leaves,
                    _ => mesh < self.cfg.up_peers,
                };
                (
                    Decision::Accept {
                        ultrapeer_needed: Some(needed),
                        try_ultrapeers: try_ups,
                    },
                    Some(peer_role),
                )
            }
        }
    }

    /// Feeds handshake bytes to the 0.6 handshake of `conn` and acts on its progress.
    pub(super) fn handshake_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let State::Handshake06(hs) = &mut c.state else {
            return;
        };
        let mut step = hs.feed(data);
        // Each round answers one decision; a handshake has at most two.
        for _ in 0..4 {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let peer_addr = c.peer;
            let State::Handshake06(hs) = &mut c.state else {
                return;
            };
            let out = hs.take_output();
            if !out.is_empty() {
                self.send_bytes(conn, out, None);
            }
            match step {
                Err(e) => {
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(e.to_string()), None);
                    return;
                }
                Ok(Progress::NeedMore) => return,
                Ok(Progress::Decide { version, peer }) => {
                    if peer.ultrapeer == Some(true) && peer.ultrapeer_needed == Some(true) {
                        self.needed_seen = true;
                    }
                    if let (true, Some(l)) = (conn.is_inbound(), peer.listen) {
                        if !self.note_listen(conn, l) {
                            return;
                        }
                    }
                    if peer.ultrapeer == Some(true) {
                        if !conn.is_inbound() {
                            self.learn_ultrapeer(peer_addr);
                        } else if let Some(l) = peer.listen {
                            self.learn_ultrapeer(l);
                        }
                    }
                    for a in peer.try_ultrapeers.iter().copied() {
                        self.learn_ultrapeer(a);
                    }
                    let (decision, role) = self.decide(conn, peer_addr, version, &peer);
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    c.role = role;
                    let ext = c.ext.get_or_insert_with(Box::default);
                    if let Some(ua) = &peer.user_agent {
                        ext.user_agent = Some(ua.clone());
                    }
                    ext.degree = peer.degree;
                    ext.max_ttl = peer.max_ttl;
                    let State::Handshake06(hs) = &mut c.state else {
                        return;
                    };
                    step = hs.respond(decision);
                }
                Ok(Progress::Established(link)) => {
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    let ext = c.ext.get_or_insert_with(Box::default);
                    if link.deflate_out {
                        ext.deflater = Some(Deflater::new());
                    }
                    if link.deflate_in {
                        ext.inflater = Some(Inflater::new());
                    }
                    if ext.user_agent.is_none() {
                        ext.user_agent = link.peer.user_agent.clone();
                    }
                    if c.role.is_none() {
                        c.role = Some(match link.version {
                            Version::V04 => PeerRole::Legacy,
                            Version::V06 => PeerRole::Leaf,
                        });
                    }
                    c.buf = RecvBuf::new(MAX_HANDSHAKE);
                    self.overlay_up(now, conn);
                    if !link.leftover.is_empty() {
                        self.received(now, conn, &link.leftover);
                    }
                    return;
                }
                Ok(Progress::Refused { code, reason, peer }) => {
                    for a in peer.try_ultrapeers.iter().chain(peer.try_hosts.iter()) {
                        self.learn_ultrapeer(*a);
                    }
                    self.close(
                        conn,
                        DownReason::Protocol(format!("refused: {code} {reason}")),
                        None,
                    );
                    return;
                }
                Ok(Progress::Closed) => {
                    self.close(conn, DownReason::Protocol("we refused".into()), None);
                    return;
                }
            }
        }
    }

    /// Inflates bytes of a deflate link into its frame buffer, handling frames as they
    /// complete; the inflated bytes never exceed the buffer's room (a zlib bomb stalls, it
    /// does not grow memory).
    pub(super) fn inflate_bytes(&mut self, now: Instant, conn: ConnId, mut data: &[u8]) {
        let mut out = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let room = c.buf.capacity_limit().saturating_sub(c.buf.len());
            if room == 0 {
                self.stats.malformed += 1;
                self.close(
                    conn,
                    DownReason::Protocol("receive buffer full".into()),
                    None,
                );
                return;
            }
            let Some(inf) = c.ext.as_mut().and_then(|e| e.inflater.as_mut()) else {
                return;
            };
            out.clear();
            let used = match inf.decompress(data, &mut out, room) {
                Ok(n) => n,
                Err(e) => {
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(e.to_string()), None);
                    return;
                }
            };
            data = data.get(used..).unwrap_or(&[]);
            if out.is_empty() {
                if data.is_empty() {
                    return;
                }
                if used == 0 {
                    self.stats.malformed += 1;
                    self.close(
                        conn,
                        DownReason::Protocol("deflate stream stalled".into()),
                        None,
                    );
                    return;
                }
                continue;
            }
            // Cannot fail: `out` is at most `room` bytes.
            let _ = c.buf.extend(&out);
            self.stats.bytes_in += out.len() as u64;
            if !self.process(now, conn) {
                return;
            }
        }
        self.stats.malformed += 1;
        self.close(
            conn,
            DownReason::Protocol("deflate stream too long".into()),
            None,
        );
    }

    pub(super) fn overlay_up(&mut self, now: Instant, conn: ConnId) {
        let cap = HEADER_LEN + self.cfg.max_payload;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.state = State::Overlay;
        c.buf.set_capacity_limit(cap);
        let (peer, cmd, role) = (c.peer, c.cmd, c.role);
        self.emit(Event::PeerUp { conn, peer, cmd });
        // QRP: a leaf sends its table to each ultrapeer; an ultrapeer its merged table to
        // each ultrapeer neighbour.
        if self.cfg.role.is_06() && role == Some(PeerRole::Ultrapeer) {
            self.rebuild_qrp();
            self.send_qrp(conn);
        }
        if self.cfg.ping_ttl > 0 {
            self.send_ping(now, self.cfg.ping_ttl, Some(conn));
        }
    }

    pub(super) fn sniff(&mut self, now: Instant, conn: ConnId) -> Sniffed {
        let hs_cfg = self.hs_config();
        let Some(c) = self.conns.get_mut(&conn) else {
            return Sniffed::Gone;
        };
        let got = c.buf.as_slice();
        let prefix = |want: &[u8]| {
            let n = got.len().min(want.len());
            got[..n] == want[..n]
        };
        const CONNECT: &[u8] = b"GNUTELLA CONNECT/";
        if self.cfg.role.is_06() && prefix(CONNECT) {
            if got.len() < CONNECT.len() {
                return Sniffed::Wait;
            }
            let head = got.to_vec();
            c.buf = RecvBuf::new(MAX_HANDSHAKE);
            c.state = State::Handshake06(Box::new(Handshake::inbound(hs_cfg, c.peer)));
            self.handshake_bytes(now, conn, &head);
            // The handshake state takes the rest of the bytes (or the connection is gone).
            return Sniffed::Overlay;
        }
        if prefix(CONNECT_04) {
            if got.len() < CONNECT_04.len() {
                return Sniffed::Wait;
            }
            c.buf.consume(CONNECT_04.len());
            let overlay = self
                .conns
                .values()
                .filter(|c| matches!(c.state, State::Overlay | State::AwaitOk | State::Connecting))
                .count();
            if overlay >= self.cfg.max_conns {
                // 0.4 has no way to say "busy": close without answering.
                self.conns.remove(&conn);
                self.transmit(Transmit::Close { conn });
                return Sniffed::Gone;
            }
            self.send_bytes(conn, OK_04.to_vec(), None);
            self.overlay_up(now, conn);
            return Sniffed::Overlay;
        }
        if prefix(b"GET ") {
            if got.len() < 4 {
                return Sniffed::Wait;
            }
            let head = got.to_vec();
            let peer = c.peer;
            self.conns.remove(&conn);
            self.emit(Event::Handoff {
                conn,
                peer,
                kind: HandoffKind::Http { head },
            });
            return Sniffed::Gone;
        }
        if prefix(b"GIV ") {
            let line = match c.buf.take_until(b"\n\n", MAX_HANDSHAKE) {
                Ok(Some(line)) => http::parse_giv(line),
                Ok(None) => return Sniffed::Wait,
                Err(_) => Err(http::HttpError::BadGiv),
            };
            let rest = c.buf.as_slice().to_vec();
            let peer = c.peer;
            match line {
                Ok(giv) => {
                    self.conns.remove(&conn);
                    self.emit(Event::Handoff {
                        conn,
                        peer,
                        kind: HandoffKind::Giv { giv, rest },
                    });
                }
                Err(_) => {
                    self.conns.remove(&conn);
                    self.transmit(Transmit::Close { conn });
                }
            }
            return Sniffed::Gone;
        }
        // Nothing we speak.
        self.conns.remove(&conn);
        self.transmit(Transmit::Close { conn });
        Sniffed::Gone
    }
}
