//! Peer connections: dialling, accepting, the handshake (MSE or plaintext), bans, drops and redials.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Connections.

    pub(super) fn connect_more(&mut self, now: Instant) {
        if self.stopped || self.seeding_done {
            return;
        }
        while self.peers.len() + self.half_open.len() < self.cfg.max_peers
            && self.half_open.len() < self.cfg.max_half_open
        {
            let Some(addr) = self.candidates.pop_first() else {
                break;
            };
            if self.banned.contains(&addr.ip()) || self.peers.values().any(|p| p.addr == addr) {
                continue;
            }
            self.tried.insert(addr);
            let conn = ConnId::outbound(self.next_conn);
            self.next_conn += 1;
            self.half_open.insert(conn);
            self.roles.insert(conn, Role::Peer);
            self.peers.insert(conn, self.new_peer(addr, now));
            self.send(Transmit::Connect { conn, to: addr });
        }
    }

    pub(super) fn new_peer(&self, addr: SocketAddr, now: Instant) -> Peer {
        Peer {
            addr,
            buf: RecvBuf::new(wire::FRAME.max_frame_len() + wire::HANDSHAKE_LEN),
            connected_at: now,
            handshake: None,
            fast: false,
            ext: None,
            has: Bitfield::new(self.picker.piece_count()),
            first_msg: true,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            inflight: Vec::new(),
            requests: VecDeque::new(),
            allowed_fast: Vec::new(),
            given_fast: Vec::new(),
            down_total: 0,
            up_total: 0,
            down_round: 0,
            up_round: 0,
            down_tick: 0,
            down_rate: 0.0,
            last_recv: now,
            last_send: now,
            strikes: 0,
            pex_sent: BTreeSet::new(),
            crypt: Crypt::Plain,
            revealed: Vec::new(),
        }
    }

    pub(super) fn add_candidates(&mut self, peers: impl IntoIterator<Item = SocketAddr>) -> usize {
        let mut added = 0;
        for a in peers {
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            if a.port() == 0
                || self.banned.contains(&a.ip())
                || self.tried.contains(&a)
                || self.peers.values().any(|p| p.addr == a)
            {
                continue;
            }
            if self.candidates.insert(a) {
                added += 1;
            }
        }
        added
    }

    pub(super) fn handshake_msg(&self) -> [u8; wire::HANDSHAKE_LEN] {
        Handshake {
            reserved: Reserved::ours(),
            info_hash: self.info_hash,
            peer_id: self.cfg.peer_id,
        }
        .encode()
    }

    /// Bans `ip` for a protocol violation: closes this connection (typed reason at `-v`
    /// through [`ClientEvent::PeerDisconnected`]) and never dials or accepts the IP again.
    pub(super) fn ban(&mut self, conn: ConnId, ip: IpAddr, reason: &str) {
        self.banned.insert(ip);
        self.candidates.retain(|a| a.ip() != ip);
        self.redial.retain(|a, _| a.ip() != ip);
        self.emit(ClientEvent::PeerBanned { ip });
        self.drop_peer(conn, reason, true);
    }

    pub(super) fn drop_peer(&mut self, conn: ConnId, reason: &str, close: bool) {
        self.half_open.remove(&conn);
        self.roles.remove(&conn);
        if let Some(f) = &mut self.fetch {
            f.remove_peer(conn);
        }
        let Some(p) = self.peers.remove(&conn) else {
            return;
        };
        // An outgoing MSE handshake that failed (most plaintext-only peers just close the
        // connection): with `prefer`, dial the peer again in plaintext.
        if matches!(p.crypt, Crypt::Init(_))
            && self.cfg.encryption == Encryption::Prefer
            && self.plain_retry.len() < MAX_PLAIN_RETRY
            && self.plain_retry.insert(p.addr)
        {
            self.tried.remove(&p.addr);
            self.candidates.insert(p.addr);
        } else if !conn.is_inbound()
            && p.handshake.is_none()
            // an MSE handshake that failed is dialed again only when MSE is all we speak
            // (with `prefer` the plaintext retry above comes first)
            && (!matches!(p.crypt, Crypt::Init(_)) || self.cfg.encryption == Encryption::Require)
            && !self.banned.contains(&p.addr.ip())
            && (self.redial.len() < MAX_CANDIDATES || self.redial.contains_key(&p.addr))
        {
            let n = self.redial.get(&p.addr).map_or(0, |e| e.0) + 1;
            if n <= REDIALS {
                let due = self.last_tick + Duration::from_secs(1 << n);
                self.redial.insert(p.addr, (n, Some(due)));
            }
        }
        for (r, _) in &p.inflight {
            self.picker.unrequest(r);
        }
        if p.handshake.is_some() {
            self.picker.peer_gone(&p.has);
            self.emit(ClientEvent::PeerDisconnected {
                addr: p.addr,
                reason: reason.to_string(),
            });
        } else if reason != "connection failed" {
            self.emit(ClientEvent::HandshakeFailed {
                addr: p.addr,
                reason: reason.to_string(),
                encrypted: !matches!(p.crypt, Crypt::Plain),
            });
        }
        if self.optimistic == Some(conn) {
            self.optimistic = None;
        }
        if close {
            self.send(Transmit::Close { conn });
        }
    }
}
