//! Incoming bytes: decryption, the handshake, then each peer message (BEP 3, 6, 10 and its extensions) and what it changes.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Incoming bytes.

    pub(super) fn received(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        if matches!(self.roles.get(&conn), Some(Role::Tracker)) {
            self.tracker_bytes(now, conn, data);
            return;
        }
        let data = match self.unwrap_stream(conn, data) {
            Ok(Some(d)) => d,
            Ok(None) => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.last_recv = now;
                }
                return;
            }
            Err(why) => {
                self.drop_peer(conn, why, true);
                return;
            }
        };
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.last_recv = now;
        // Past the handshake with nothing buffered (the usual case), messages are decoded
        // straight from the bytes received and only an incomplete tail is kept: a block is
        // not copied into the buffer first.
        let direct = p.handshake.is_some() && p.buf.is_empty();
        if !direct && p.buf.extend(&data).is_err() {
            self.drop_peer(conn, "receive buffer overflow", true);
            return;
        }
        if p.handshake.is_none() {
            let hs = match Handshake::decode(p.buf.as_slice()) {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    self.drop_peer(conn, &e.to_string(), true);
                    return;
                }
            };
            p.buf.consume(wire::HANDSHAKE_LEN);
            if let Err(why) = self.on_handshake(now, conn, hs) {
                self.drop_peer(conn, why, true);
                return;
            }
        }
        // Messages: decode from the buffer one at a time; the buffer is taken out so the
        // handler may borrow `self` mutably.
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        let mut buf = std::mem::replace(&mut p.buf, RecvBuf::new(0));
        let mut error: Option<String> = None;
        let mut oversized = false;
        let pieces = self.picker.piece_count();
        let mut used_total = 0;
        let src: &[u8] = if direct { &data[..] } else { buf.as_slice() };
        loop {
            let rest = src.get(used_total..).unwrap_or_default();
            if let Err(e) = wire::check_message_head(rest, pieces) {
                // No client sends more than a message's type can carry: banned.
                error = Some(format!("oversized message: {e}"));
                oversized = true;
                self.limit_closes += 1;
                break;
            }
            match decode_message(rest) {
                Ok(Some((m, used))) => {
                    let r = self.on_message(now, conn, m);
                    used_total += used;
                    if let Err(why) = r {
                        error = Some(why.to_string());
                        break;
                    }
                    if !self.peers.contains_key(&conn) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(if matches!(e, wire::WireError::UnknownId(_)) {
                        format!("unknown message: {e}")
                    } else {
                        format!("malformed message: {e}")
                    });
                    break;
                }
            }
        }
        if let Some(why) = error {
            match self.peers.get(&conn).map(|p| p.addr.ip()) {
                Some(ip) if oversized => self.ban(conn, ip, &why),
                _ => self.drop_peer(conn, &why, true),
            }
            return;
        }
        if direct {
            if buf
                .extend(data.get(used_total..).unwrap_or_default())
                .is_err()
            {
                self.drop_peer(conn, "receive buffer overflow", true);
                return;
            }
        } else {
            buf.consume(used_total);
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.buf = buf;
        }
        self.fill_requests(now, conn);
        self.serve(now, conn);
    }

    pub(super) fn on_handshake(
        &mut self,
        now: Instant,
        conn: ConnId,
        hs: Handshake,
    ) -> Result<(), &'static str> {
        if hs.info_hash != self.info_hash {
            return Err("wrong info-hash");
        }
        if hs.peer_id == self.cfg.peer_id {
            if let Some(p) = self.peers.get(&conn) {
                self.tried.insert(p.addr);
            }
            return Err("connected to ourselves");
        }
        if self
            .peers
            .iter()
            .any(|(c, p)| *c != conn && p.handshake.is_some_and(|h| h.peer_id == hs.peer_id))
        {
            return Err("already connected to this peer");
        }
        let count = self.picker.piece_count();
        let have = self.picker.have().clone();
        let Some(p) = self.peers.get_mut(&conn) else {
            return Err("gone");
        };
        p.handshake = Some(hs);
        p.fast = hs.reserved.has(Reserved::FAST);
        let a = p.addr;
        self.redial.remove(&a);
        let Some(p) = self.peers.get_mut(&conn) else {
            return Err("gone");
        };
        let ext = hs.reserved.has(Reserved::EXTENSION);
        let addr = p.addr;
        let inbound = conn.is_inbound();
        if inbound {
            let h = self.handshake_msg();
            self.send_peer(conn, h.to_vec());
        }
        let fast = hs.reserved.has(Reserved::FAST);
        let magnet = self.fetch.is_some();
        let super_seeding = self.super_seeding();
        if magnet || super_seeding {
            if fast {
                self.send_msg(conn, &Message::HaveNone, now);
            }
        } else if fast && have.is_full() {
            self.send_msg(conn, &Message::HaveAll, now);
        } else if fast && have.count() == 0 {
            self.send_msg(conn, &Message::HaveNone, now);
        } else if have.count() > 0 {
            self.send_msg(conn, &Message::Bitfield(have.as_bytes()), now);
        }
        if ext {
            // BEP 9: we fetch (magnet) or serve (non-private torrents) the info dictionary.
            let serve = !self.private && !self.info_bytes.is_empty();
            let eh = ExtHandshake {
                ut_pex: (!self.private).then_some(UT_PEX_ID),
                ut_metadata: (magnet || serve).then_some(UT_METADATA_ID),
                port: Some(self.cfg.listen_port),
                client: Some(self.cfg.client_name.clone()),
                reqq: Some(MAX_PEER_REQUESTS as u32),
                metadata_size: if serve {
                    u32::try_from(self.info_bytes.len()).ok()
                } else {
                    None
                },
            };
            let payload = eh.encode();
            self.send_msg(
                conn,
                &Message::Extended {
                    id: 0,
                    payload: &payload,
                },
                now,
            );
        }
        // Allowed-fast pieces bootstrap peers with nothing to trade; a seed does not grant
        // them (every choked leecher would pull the same few pieces from it).
        if fast && !magnet && have.count() > 0 && !have.is_full() {
            if let IpAddr::V4(ip) = addr.ip() {
                let set = wire::allowed_fast_set(ip, &self.info_hash, count, ALLOWED_FAST_K);
                for i in set.iter().copied().filter(|i| have.get(*i)) {
                    self.send_msg(conn, &Message::AllowedFast(i), now);
                }
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.given_fast = set;
                }
            }
        }
        if super_seeding {
            self.reveal(now, conn);
        }
        self.emit(ClientEvent::PeerConnected { addr, inbound });
        Ok(())
    }

    pub(super) fn super_seeding(&self) -> bool {
        self.cfg.super_seed && self.is_complete()
    }

    /// Super-seeding: tops up the pieces revealed to `conn` with those revealed least.
    pub(super) fn reveal(&mut self, now: Instant, conn: ConnId) {
        let n = self.picker.piece_count();
        if self.reveal_count.len() != n as usize {
            self.reveal_count = vec![0; n as usize];
        }
        let start = self.rng.below(u64::from(n.max(1))) as u32;
        loop {
            let Some(p) = self.peers.get_mut(&conn) else {
                return;
            };
            p.revealed.retain(|i| !p.has.get(*i));
            if p.revealed.len() >= SUPER_REVEAL {
                return;
            }
            let pick = (0..n)
                .map(|k| (start + k) % n)
                .filter(|i| !p.has.get(*i) && !p.revealed.contains(i))
                .min_by_key(|i| self.reveal_count.get(*i as usize).copied().unwrap_or(0));
            let Some(i) = pick else { return };
            p.revealed.push(i);
            if let Some(c) = self.reveal_count.get_mut(i as usize) {
                *c += 1;
            }
            self.send_msg(conn, &Message::Have(i), now);
        }
    }

    pub(super) fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        m: Message<'_>,
    ) -> Result<(), &'static str> {
        let n = self.picker.piece_count();
        let magnet = self.fetch.is_some();
        let Some(p) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        // BEP 6 wants bitfield/have-all/have-none first, but BEP 10's extension handshake
        // "should be sent immediately after the standard handshake": libtorrent and aria2
        // send it before their have-all, so extended messages (and keep-alives) do not count.
        let first = p.first_msg;
        if !matches!(m, Message::Extended { .. } | Message::KeepAlive) {
            p.first_msg = false;
        }
        if magnet {
            // Without the metadata the piece count is unknown: what peers have is not
            // checked (nor needed); the order rules still hold.
            match m {
                Message::Have(_) | Message::Bitfield(_) => return Ok(()),
                Message::HaveAll if p.fast => return Ok(()),
                Message::HaveAll | Message::HaveNone if !first || !p.fast => {
                    return Err("have-all/none out of place");
                }
                Message::HaveNone => return Ok(()),
                _ => {}
            }
        }
        match m {
            Message::KeepAlive | Message::Port(_) | Message::Suggest(_) => {}
            Message::Choke => {
                p.peer_choking = true;
                if !p.fast {
                    let dropped: Vec<BlockRef> = p.inflight.drain(..).map(|(r, _)| r).collect();
                    for r in &dropped {
                        self.picker.unrequest(r);
                    }
                }
            }
            Message::Unchoke => p.peer_choking = false,
            Message::Interested => {
                p.peer_interested = true;
                // A free upload slot is given at once, not at the next choke round.
                let unchoked = self.peers.values().filter(|q| !q.am_choking).count();
                if unchoked < self.cfg.upload_slots && !self.stopped && !self.seeding_done {
                    if let Some(p) = self.peers.get_mut(&conn) {
                        if p.am_choking {
                            p.am_choking = false;
                            self.send_msg(conn, &Message::Unchoke, now);
                        }
                    }
                }
            }
            Message::NotInterested => p.peer_interested = false,
            Message::Have(i) => {
                if i >= n {
                    return Err("have for a piece out of range");
                }
                if p.has.set(i) {
                    self.picker.peer_has(i);
                }
                if self.super_seeding() {
                    self.reveal(now, conn);
                }
                self.update_interest(now, conn);
            }
            Message::Bitfield(b) => {
                let bf = Bitfield::from_bytes(b, n).ok_or("malformed bitfield")?;
                if first {
                    self.set_has(now, conn, bf);
                } else {
                    // aria2 sends a later bitfield instead of many haves: take it as haves
                    // (a peer cannot lose pieces, so cleared bits are ignored).
                    self.add_has(now, conn, &bf);
                }
            }
            Message::HaveAll if !first && p.fast => {
                let bf = Bitfield::full(n);
                self.add_has(now, conn, &bf);
            }
            Message::HaveAll | Message::HaveNone => {
                if !first || !p.fast {
                    return Err("have-all/none out of place");
                }
                let bf = if m == Message::HaveAll {
                    Bitfield::full(n)
                } else {
                    Bitfield::new(n)
                };
                self.set_has(now, conn, bf);
            }
            Message::Request(r) => self.on_request(now, conn, r)?,
            Message::Cancel(r) => p.requests.retain(|q| *q != r),
            Message::Reject(r) => {
                if !p.fast {
                    return Err("reject without the fast extension");
                }
                if let Some(pos) = p.inflight.iter().position(|(q, _)| *q == r) {
                    p.inflight.swap_remove(pos);
                    self.picker.unrequest(&r);
                }
            }
            Message::AllowedFast(i) => {
                if i < n && !p.allowed_fast.contains(&i) && p.allowed_fast.len() < 64 {
                    p.allowed_fast.push(i);
                }
            }
            Message::Piece { index, begin, data } => {
                self.on_piece(now, conn, index, begin, data)?
            }
            Message::Extended { id, payload } => {
                if id == 0 {
                    let eh =
                        ExtHandshake::decode(payload).map_err(|_| "bad extension handshake")?;
                    let offer = eh.ut_metadata.and(eh.metadata_size);
                    p.ext = Some(eh);
                    if let (Some(f), Some(size)) = (&mut self.fetch, offer) {
                        // A size we refuse (0, above 8 MiB) means: do not ask this peer.
                        let _ = f.add_peer(conn, i64::from(size));
                    }
                } else if id == UT_METADATA_ID {
                    self.on_metadata_msg(now, conn, payload);
                } else if id == UT_PEX_ID && !self.private {
                    if let Ok(pex) = Pex::decode(payload) {
                        self.add_candidates(pex.added);
                        self.connect_more(now);
                    }
                }
            }
        }
        Ok(())
    }

    /// A `ut_metadata` message (BEP 9): a piece for our fetch, or a request we answer.
    pub(super) fn on_metadata_msg(&mut self, now: Instant, conn: ConnId, payload: &[u8]) {
        if let Some(f) = &mut self.fetch {
            f.handle_message(now, conn, payload);
            return;
        }
        let Some(reply_id) = self
            .peers
            .get(&conn)
            .and_then(|p| p.ext.as_ref())
            .and_then(|e| e.ut_metadata)
        else {
            return;
        };
        if let Ok(MetadataMsg::Request { piece }) = MetadataMsg::decode(payload) {
            let reply = if self.private || self.info_bytes.is_empty() {
                MetadataMsg::Reject { piece }.encode()
            } else {
                metadata::serve(&self.info_bytes, piece).encode()
            };
            self.send_msg(
                conn,
                &Message::Extended {
                    id: reply_id,
                    payload: &reply,
                },
                now,
            );
        }
    }

    /// Sends the metadata fetch's requests and acts on its events.
    pub(super) fn pump_fetch(&mut self, now: Instant) {
        let Some(mut f) = self.fetch.take() else {
            return;
        };
        while let Some((conn, piece)) = f.poll_request(now) {
            let id = self
                .peers
                .get(&conn)
                .and_then(|p| p.ext.as_ref())
                .and_then(|e| e.ut_metadata);
            match id {
                Some(id) => {
                    let payload = MetadataMsg::Request { piece }.encode();
                    self.send_msg(
                        conn,
                        &Message::Extended {
                            id,
                            payload: &payload,
                        },
                        now,
                    );
                }
                None => f.remove_peer(conn),
            }
        }
        let mut events = Vec::new();
        while let Some(e) = f.poll_event() {
            events.push(e);
        }
        self.fetch = Some(f);
        for e in events {
            match e {
                FetchEvent::BadPeer { peer, .. } => {
                    self.drop_peer(peer, "bad ut_metadata message", true);
                }
                FetchEvent::HashMismatch { peers } => {
                    for c in peers {
                        if let Some(ip) = self.peers.get(&c).map(|p| p.addr.ip()) {
                            self.banned.insert(ip);
                            self.emit(ClientEvent::PeerBanned { ip });
                        }
                        self.drop_peer(c, "sent metadata that fails the info-hash", true);
                    }
                }
                FetchEvent::Complete(info_bytes) => {
                    self.emit(ClientEvent::MetadataReceived { info_bytes });
                }
            }
        }
    }

    /// Pieces a peer announced after its first message (a late bitfield or have-all).
    pub(super) fn add_has(&mut self, now: Instant, conn: ConnId, bf: &Bitfield) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        for i in bf.ones() {
            if p.has.set(i) {
                self.picker.peer_has(i);
            }
        }
        if p.has.is_full() && self.is_complete() {
            self.drop_peer(conn, "both seeding", true);
            return;
        }
        if self.super_seeding() {
            self.reveal(now, conn);
        }
        self.update_interest(now, conn);
    }

    pub(super) fn set_has(&mut self, now: Instant, conn: ConnId, bf: Bitfield) {
        for i in bf.ones() {
            self.picker.peer_has(i);
        }
        let reveal = self.super_seeding();
        let both_seeds = bf.is_full() && self.is_complete();
        if let Some(p) = self.peers.get_mut(&conn) {
            p.has = bf;
        }
        if both_seeds {
            self.drop_peer(conn, "both seeding", true);
            return;
        }
        if reveal {
            self.reveal(now, conn);
        }
        self.update_interest(now, conn);
    }

    pub(super) fn update_interest(&mut self, now: Instant, conn: ConnId) {
        let Some(p) = self.peers.get(&conn) else {
            return;
        };
        let want = !self.is_complete() && self.picker.interesting(&p.has);
        if want != p.am_interested {
            if let Some(p) = self.peers.get_mut(&conn) {
                p.am_interested = want;
            }
            let m = if want {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send_msg(conn, &m, now);
        }
    }

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        r: BlockRef,
    ) -> Result<(), &'static str> {
        let valid = r.index < self.picker.piece_count()
            && self.picker.have().get(r.index)
            && r.length > 0
            && r.length <= 128 * 1024
            && u64::from(r.begin) + u64::from(r.length)
                <= u64::from(self.picker.piece_len(r.index));
        let Some(p) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        let allowed = !p.am_choking || p.given_fast.contains(&r.index);
        if !valid || !allowed || p.requests.len() >= MAX_PEER_REQUESTS {
            if p.fast {
                self.send_msg(conn, &Message::Reject(r), now);
            }
            return Ok(());
        }
        p.requests.push_back(r);
        Ok(())
    }

    pub(super) fn on_piece(
        &mut self,
        now: Instant,
        conn: ConnId,
        index: u32,
        begin: u32,
        data: &[u8],
    ) -> Result<(), &'static str> {
        let r = BlockRef {
            index,
            begin,
            length: u32::try_from(data.len()).map_err(|_| "block too long")?,
        };
        let len = u64::from(r.length);
        self.downloaded += len;
        self.down_tick += len;
        let Some(p) = self.peers.get_mut(&conn) else {
            return Ok(());
        };
        p.down_total += len;
        p.down_round += len;
        p.down_tick += len;
        let Some(pos) = p.inflight.iter().position(|(q, _)| *q == r) else {
            self.wasted += len;
            // A block of another length than any we ask for (or than the request for the
            // same place) is not a late duplicate: the peer is broken or hostile.
            if r.length > BLOCK_LEN
                || p.inflight
                    .iter()
                    .any(|(q, _)| q.index == r.index && q.begin == r.begin)
            {
                let ip = p.addr.ip();
                self.ban(conn, ip, "block length differs from its request");
            }
            return Ok(());
        };
        p.inflight.swap_remove(pos);
        if !self.picker.expects(&r) {
            self.wasted += len;
            return Ok(());
        }
        let done = self.picker.received(&r, conn.raw());
        if self.cfg.disk_jobs {
            self.buffer_block(now, index, begin, data, done);
        } else {
            self.write_block(now, index, begin, data);
        }
        // Endgame: the others asked for the same block need not send it.
        let others: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(c, p)| **c != conn && p.inflight.iter().any(|(q, _)| *q == r))
            .map(|(c, _)| *c)
            .collect();
        for c in others {
            if let Some(p) = self.peers.get_mut(&c) {
                p.inflight.retain(|(q, _)| *q != r);
            }
            self.send_msg(c, &Message::Cancel(r), now);
        }
        if done && !self.cfg.disk_jobs {
            self.verify_piece(now, index);
        }
        Ok(())
    }

    /// A whole piece from outside the swarm (web seed): write it and verify it. `Some(ok)`
    /// answers at once; `None`: the answer comes with the piece's hash.
    pub(super) fn piece_data(
        &mut self,
        now: Instant,
        id: u64,
        index: u32,
        data: Vec<u8>,
    ) -> Option<bool> {
        if self.fetch.is_some() || index >= self.picker.piece_count() {
            return Some(false);
        }
        if self.picker.have().get(index) {
            return Some(true);
        }
        if data.len() != self.picker.piece_len(index) as usize {
            return Some(false);
        }
        let offset = u64::from(index) * self.piece_length;
        self.downloaded += data.len() as u64;
        self.down_tick += data.len() as u64;
        self.submit(
            now,
            Pending::Write {
                piece: index,
                answer: Some(id),
            },
            DiskJob::Write { offset, data },
        );
        self.verify_piece(now, index);
        None
    }

    /// The hash of piece `index` came back: `ok` when it matches.
    pub(super) fn piece_checked(&mut self, now: Instant, index: u32, ok: bool) {
        if self.picker.have().get(index) {
            return;
        }
        let len = u64::from(self.picker.piece_len(index));
        self.drop_buffer(index);
        if ok {
            self.picker.verified(index);
            self.storage.mark_verified(index);
            self.flush_pending = true;
            self.emit(ClientEvent::PieceVerified { index });
            let conns: Vec<ConnId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.handshake.is_some())
                .map(|(c, _)| *c)
                .collect();
            for c in conns {
                self.send_msg(c, &Message::Have(index), now);
                self.update_interest(now, c);
            }
            if self.is_complete() {
                self.on_complete(now);
            }
        } else {
            self.wasted += len;
            let senders = self.picker.failed(index);
            let mut addrs = Vec::new();
            let sole = senders.len() == 1;
            for key in senders {
                let conn = self.peers.keys().copied().find(|c| c.raw() == key);
                let Some(conn) = conn else { continue };
                let Some(p) = self.peers.get_mut(&conn) else {
                    continue;
                };
                p.strikes += if sole { self.cfg.ban_strikes } else { 1 };
                addrs.push(p.addr);
                if p.strikes >= self.cfg.ban_strikes {
                    let ip = p.addr.ip();
                    self.banned.insert(ip);
                    self.emit(ClientEvent::PeerBanned { ip });
                    self.drop_peer(conn, "sent bad data", true);
                }
            }
            self.emit(ClientEvent::PieceFailed {
                index,
                senders: addrs,
            });
        }
    }

    pub(super) fn on_complete(&mut self, now: Instant) {
        self.completed_at = Some(now);
        self.emit(ClientEvent::Completed);
        self.pending_event = AnnounceEvent::Completed;
        if !self.cfg.trackers.is_empty() {
            self.set_timer(Timer::Announce, Some(now));
        }
        // Every piece is in: make them durable now, as a disk job like the others (a flush
        // already outstanding is followed by this one as soon as it is answered).
        self.flush_pending = false;
        self.flush_now(now);
        // Seeds need not talk to seeds.
        let seeds: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.has.is_full())
            .map(|(c, _)| *c)
            .collect();
        for c in seeds {
            self.drop_peer(c, "both seeding", true);
        }
        if !self.cfg.seed {
            self.finish_seeding(now);
        }
    }

    pub(super) fn finish_seeding(&mut self, now: Instant) {
        if self.seeding_done {
            return;
        }
        self.seeding_done = true;
        self.emit(ClientEvent::SeedingDone);
        self.leave(now);
    }

    pub(super) fn leave(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            self.drop_peer(c, "leaving", true);
        }
        self.candidates.clear();
        self.pending_event = AnnounceEvent::Stopped;
        if !self.cfg.trackers.is_empty() {
            self.set_timer(Timer::Announce, Some(now));
        }
        for t in [Timer::Choke, Timer::Pex] {
            self.set_timer(t, None);
        }
    }
}
