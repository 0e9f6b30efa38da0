//! Descriptor routing: flooding requests with loop detection, reverse-path routing of
//! replies, TTL and hops, and the 0.6 descriptors (Bye, QRP, vendor messages).

use super::flood_control::Allowance;
use super::links::State;
use super::qrp::{self, RouteUpdate};
use super::{DownReason, MAX_BANNED, PONGS_PER_PING, PeerRole, Role, Route, Servent};
use crate::wire::{Body, Guid, HEADER_LEN, Header, Kind, Message, Pong, scan_query, scan_queryhit};
use servent_core::framing::{FrameError, RecvBuf};
use servent_core::{ConnId, Instant};
use std::net::{SocketAddr, SocketAddrV4};

impl Servent {
    pub(super) fn is_overlay(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, State::Overlay))
    }

    /// Sends a fresh Ping on `only` or on every connection; returns on how many.
    pub(super) fn send_ping(&mut self, now: Instant, ttl: u8, only: Option<ConnId>) -> usize {
        let msg = Message {
            id: Guid::random(&mut self.rng),
            ttl: ttl.clamp(1, self.cfg.max_ttl.max(1)),
            hops: 0,
            body: Body::Ping,
        };
        self.routes
            .put(now, (msg.id, Kind::Ping), Route::Local(None));
        let bytes = msg.encode();
        match only {
            Some(c) => {
                self.send_bytes(c, bytes, Some(Kind::Ping));
                1
            }
            None => self.flood(&bytes, &[], Kind::Ping, None),
        }
    }

    /// Sends `head` then `payload` (one buffer per connection) on every overlay connection
    /// except `except`; returns on how many.
    pub(super) fn flood(
        &mut self,
        head: &[u8],
        payload: &[u8],
        kind: Kind,
        except: Option<ConnId>,
    ) -> usize {
        let mut targets = std::mem::take(&mut self.scratch);
        targets.clear();
        targets.extend(
            self.conns
                .iter()
                .filter(|(id, c)| matches!(c.state, State::Overlay) && Some(**id) != except)
                .map(|(id, _)| *id),
        );
        let n = targets.len();
        for &t in &targets {
            let mut v = Vec::with_capacity(head.len() + payload.len());
            v.extend_from_slice(head);
            v.extend_from_slice(payload);
            self.send_bytes(t, v, Some(kind));
        }
        self.scratch = targets;
        n
    }

    pub(super) fn process_overlay(&mut self, now: Instant, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let mut buf = std::mem::replace(&mut c.buf, RecvBuf::new(0));
        let spec = self.frame;
        let mut alive = true;
        loop {
            match buf.next_frame(&spec) {
                Ok(Some(f)) => {
                    if let Err(reason) = self.descriptor(now, conn, f.header, f.payload) {
                        self.stats.malformed += 1;
                        self.close(conn, DownReason::Protocol(reason), None);
                        alive = false;
                        break;
                    }
                    if !self.conns.contains_key(&conn) {
                        alive = false;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let reason = match e {
                        FrameError::TooLarge { announced, max } => {
                            format!("payload length {announced} over the limit of {max}")
                        }
                        other => other.to_string(),
                    };
                    self.stats.malformed += 1;
                    self.close(conn, DownReason::Protocol(reason), None);
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.buf = buf;
            }
        }
        alive
    }

    /// Routes one descriptor from `from`; an error closes the connection.
    pub(super) fn descriptor(
        &mut self,
        now: Instant,
        from: ConnId,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), String> {
        let kind_byte = header.get(16).copied().unwrap_or(0);
        if Kind::from_byte(kind_byte).is_none() {
            let mut id = [0u8; 16];
            if let Some(b) = header.get(..16) {
                id.copy_from_slice(b);
            }
            return self.descriptor_06(from, Guid(id), kind_byte, payload);
        }
        let h = Header::decode(header).map_err(|e| e.to_string())?;
        self.stats.rx[h.kind.index()] += 1;
        // Ultrapeers pass queries to their leaves even when the TTL ran out.
        if h.ttl == 0 && !(self.cfg.role == Role::Leaf && h.kind == Kind::Query) {
            self.stats.ttl_expired += 1;
            return Ok(());
        }
        let ttl = h.ttl.min(self.cfg.max_ttl);
        if matches!(h.kind, Kind::Ping | Kind::Query) {
            let ping = h.kind == Kind::Ping;
            let limit = if ping {
                self.cfg.max_pings_per_sec
            } else {
                self.cfg.max_queries_per_sec
            };
            let Some(c) = self.conns.get_mut(&from) else {
                return Ok(());
            };
            match c.budget.take(now, ping, limit) {
                Allowance::Ok => {}
                Allowance::Drop => {
                    self.stats.throttled += 1;
                    return Ok(());
                }
                Allowance::Flood(n) => {
                    let ip = c.peer.ip();
                    self.stats.throttled += 1;
                    self.stats.flooders_closed += 1;
                    if self.banned.len() >= MAX_BANNED {
                        self.banned.retain(|_, until| now < *until);
                    }
                    if self.banned.len() < MAX_BANNED {
                        self.banned.insert(ip, now + self.cfg.flood_ban);
                    }
                    return Err(format!(
                        "{} flood: {n} in one second, allowance {limit}",
                        if ping { "ping" } else { "query" }
                    ));
                }
            }
        }
        // Queries and QueryHits are most of the traffic: route them from borrowed views.
        match h.kind {
            Kind::Query => {
                let (min_speed, criteria) = scan_query(payload).map_err(|e| e.to_string())?;
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Query), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                self.stats.queries_seen += 1;
                let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
                self.answer_query(&h, min_speed, criteria, ext_area, from);
                match self.cfg.role {
                    Role::Leaf => {}
                    Role::Ultrapeer => {
                        let hops = h.hops.saturating_add(1);
                        let from_leaf = self
                            .conns
                            .get(&from)
                            .is_some_and(|c| c.role == Some(PeerRole::Leaf));
                        if from_leaf {
                            // Our leaf's query: the mesh part is a dynamic query; no copy
                            // goes further than the plain route would have sent it (TTL
                            // on arrival, at most `mesh_ttl`, less our hop).
                            let ceiling = ttl.min(self.cfg.mesh_ttl).saturating_sub(1);
                            let target = self.cfg.dq_leaf_results;
                            self.dq_start(now, h.id, ceiling, hops, payload, Some(from), target);
                        } else {
                            let out_ttl = ttl.min(self.cfg.mesh_ttl).saturating_sub(1);
                            self.route_query_06(h.id, out_ttl, hops, payload, Some(from));
                        }
                    }
                    _ => self.forward_flood(&h, ttl, payload, from),
                }
                return Ok(());
            }
            Kind::QueryHit => {
                let servent_id = scan_queryhit(payload).map_err(|e| e.to_string())?;
                if servent_id != self.cfg.servent_id {
                    self.push_routes.put(now, servent_id, from);
                }
                match self.routes.get(now, &(h.id, Kind::Query)) {
                    Some(Route::Local(Some(search))) => {
                        if let Body::QueryHit(qh) =
                            Body::decode(h.kind, payload).map_err(|e| e.to_string())?
                        {
                            let n = u32::try_from(qh.results.len()).unwrap_or(u32::MAX);
                            self.deliver_hits(search, &h, qh);
                            self.dq_results(h.id, n);
                        }
                    }
                    Some(Route::Conn(back)) if back != from && self.cfg.role != Role::Leaf => {
                        // The result count is the payload's first byte (checked by
                        // `scan_queryhit` above).
                        let n = payload.first().copied().map_or(0, u32::from);
                        self.forward_reply(&h, ttl, payload, back);
                        self.dq_results(h.id, n);
                    }
                    _ => self.stats.unroutable += 1,
                }
                return Ok(());
            }
            _ => {}
        }
        let body = Body::decode(h.kind, payload).map_err(|e| e.to_string())?;
        match body {
            Body::Ping => {
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Ping), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                let pong_ttl = h.hops.saturating_add(1).min(self.cfg.max_ttl.max(1));
                let pong = Message {
                    id: h.id,
                    ttl: pong_ttl,
                    hops: 0,
                    body: Body::Pong(Pong {
                        port: self.cfg.advertised.port(),
                        ip: *self.cfg.advertised.ip(),
                        files: u32::try_from(self.library.len()).unwrap_or(u32::MAX),
                        kbytes: self.library.kbytes(),
                    }),
                };
                self.send_bytes(from, pong.encode(), Some(Kind::Pong));
                match self.cfg.role {
                    // A leaf routes nothing.
                    Role::Leaf => {}
                    // Pong caching: an ultrapeer answers from its cache instead of
                    // flooding the Ping.
                    Role::Ultrapeer => {
                        let peer = self.conns.get(&from).map(|c| c.peer);
                        let cached: Vec<Pong> = self
                            .pongs
                            .iter()
                            .rev()
                            .filter(|p| {
                                Some(SocketAddr::V4(SocketAddrV4::new(p.ip, p.port))) != peer
                            })
                            .take(PONGS_PER_PING)
                            .cloned()
                            .collect();
                        for p in cached {
                            let m = Message {
                                id: h.id,
                                ttl: pong_ttl,
                                hops: 1,
                                body: Body::Pong(p),
                            };
                            self.stats.cached_pongs += 1;
                            self.send_bytes(from, m.encode(), Some(Kind::Pong));
                        }
                    }
                    _ => self.forward_flood(&h, ttl, payload, from),
                }
            }
            Body::Pong(p) => {
                let addr = SocketAddrV4::new(p.ip, p.port);
                if h.hops == 0 && !self.note_listen(from, SocketAddr::V4(addr)) {
                    // The neighbour's own Pong said where it listens: a second link to a
                    // servent we are linked with, now closed.
                    return Ok(());
                }
                self.learn_host(addr);
                if self.cfg.role == Role::Ultrapeer && addr != self.cfg.advertised {
                    self.pongs.retain(|q| (q.ip, q.port) != (p.ip, p.port));
                    if self.pongs.len() >= self.cfg.pong_cache.max(1) {
                        self.pongs.pop_front();
                    }
                    self.pongs.push_back(p.clone());
                }
                match self.routes.get(now, &(h.id, Kind::Ping)) {
                    Some(Route::Local(_)) => {}
                    Some(Route::Conn(back)) if back != from => {
                        self.forward_reply(&h, ttl, payload, back)
                    }
                    _ => self.stats.unroutable += 1,
                }
            }
            // Routed on the fast path above.
            Body::Query(_) | Body::QueryHit(_) => {}
            Body::Push(p) => {
                if !self
                    .routes
                    .insert_new(now, (h.id, Kind::Push), Route::Conn(from))
                {
                    self.stats.duplicates += 1;
                    return Ok(());
                }
                if p.servent_id == self.cfg.servent_id {
                    self.pushed(now, p);
                } else {
                    match self.push_routes.get(now, &p.servent_id) {
                        Some(next)
                            if next != from
                                && self.is_overlay(next)
                                && self.cfg.role != Role::Leaf =>
                        {
                            self.forward_reply(&h, ttl, payload, next)
                        }
                        _ => self.stats.unroutable += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// A descriptor whose kind 0.4 does not know: Bye, QRP, vendor messages.
    pub(super) fn descriptor_06(
        &mut self,
        from: ConnId,
        id: Guid,
        kind: u8,
        payload: &[u8],
    ) -> Result<(), String> {
        match kind {
            KIND_BYE => {
                let (code, message) = decode_bye(payload).ok_or("truncated Bye")?;
                self.close(from, DownReason::Bye { code, message }, None);
                Ok(())
            }
            qrp::ROUTE_TABLE_UPDATE => {
                self.stats.qrp_rx += 1;
                let Some(c) = self.conns.get_mut(&from) else {
                    return Ok(());
                };
                // Tables from leaves (to us, an ultrapeer) and from ultrapeer neighbours.
                let wanted = matches!(
                    (self.cfg.role, c.role),
                    (Role::Ultrapeer, Some(PeerRole::Leaf | PeerRole::Ultrapeer))
                );
                if !wanted {
                    self.stats.ignored += 1;
                    return Ok(());
                }
                let update = RouteUpdate::decode(payload).map_err(|e| e.to_string())?;
                let ext = c.ext.get_or_insert_with(Box::default);
                let applied = ext.qrp_in.apply(&update).map_err(|e| e.to_string())?;
                if c.role == Some(PeerRole::Leaf) && applied != qrp::Applied::Fragment {
                    self.qrp_dirty = true;
                }
                Ok(())
            }
            k if KIND_VENDOR.contains(&k) => {
                let from_leaf = self.cfg.role == Role::Ultrapeer
                    && self
                        .conns
                        .get(&from)
                        .is_some_and(|c| c.role == Some(PeerRole::Leaf));
                // A leaf's query status (BEAR/LIME 11) steers our dynamic query for it; a
                // truncated one is a protocol error; any other vendor message is ignored.
                match crate::wire::query_status(payload) {
                    Ok(Some(kept)) if from_leaf => {
                        self.stats.dq_status_rx += 1;
                        self.dq_status(from, id, kept);
                    }
                    Ok(_) => self.stats.ignored += 1,
                    Err(e) if from_leaf => return Err(e.to_string()),
                    Err(_) => self.stats.ignored += 1,
                }
                Ok(())
            }
            _ if self.cfg.role.is_06() => {
                self.stats.ignored += 1;
                Ok(())
            }
            k => Err(crate::wire::DecodeError::UnknownKind(k).to_string()),
        }
    }

    /// The header of a forwarded copy: TTL one less, hops one more.
    pub(super) fn forwarded(h: &Header, ttl: u8, payload: &[u8]) -> Option<Vec<u8>> {
        if ttl <= 1 {
            return None;
        }
        let fh = Header {
            ttl: ttl - 1,
            hops: h.hops.saturating_add(1),
            ..*h
        };
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&fh.to_bytes());
        out.extend_from_slice(payload);
        Some(out)
    }

    pub(super) fn forward_flood(&mut self, h: &Header, ttl: u8, payload: &[u8], from: ConnId) {
        if ttl <= 1 {
            self.stats.ttl_expired += 1;
            return;
        }
        let fh = Header {
            ttl: ttl - 1,
            hops: h.hops.saturating_add(1),
            ..*h
        };
        self.flood(&fh.to_bytes(), payload, h.kind, Some(from));
    }

    pub(super) fn forward_reply(&mut self, h: &Header, ttl: u8, payload: &[u8], to: ConnId) {
        if !self.is_overlay(to) {
            self.stats.unroutable += 1;
            return;
        }
        match Self::forwarded(h, ttl, payload) {
            Some(bytes) => self.send_bytes(to, bytes, Some(h.kind)),
            None => self.stats.ttl_expired += 1,
        }
    }
}

/// A descriptor header for a payload kind [`Kind`] does not cover (0.6 messages).
pub(super) fn raw_header(id: Guid, kind: u8, ttl: u8, hops: u8, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..16].copy_from_slice(&id.0);
    h[16] = kind;
    h[17] = ttl;
    h[18] = hops;
    h[19..].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
    h
}

/// Payload descriptor of Bye (0.6).
pub const KIND_BYE: u8 = 0x02;
/// Payload descriptors of vendor messages (0.6): 0x31 vendor, 0x32 standard vendor.
pub const KIND_VENDOR: [u8; 2] = [0x31, 0x32];

/// A Bye payload: code (u16 LE) and an optional NUL-terminated text.
pub fn decode_bye(p: &[u8]) -> Option<(u16, String)> {
    let [a, b, rest @ ..] = p else {
        return None;
    };
    let text = rest.split(|b| *b == 0).next().unwrap_or(&[]);
    let text: String = String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    Some((u16::from_le_bytes([*a, *b]), text))
}
