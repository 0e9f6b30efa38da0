//! Answering other nodes: each query's answer, the amplification cap for unverified
//! sources, the per-IP rate limit, and who may enter the routing table (a querier is
//! pinged first; BEP 43 read-only nodes never).

use super::*;

impl Dht {
    pub(super) fn heard(&mut self, now: Instant, info: NodeInfo, responded: bool) {
        if self.cfg.enforce_bep42 && !bep42::is_valid(&info.id, *info.addr.ip()) {
            self.stats.bep42_rejected += 1;
            return;
        }
        if let Inserted::Cached { ping: Some(n) } = self.table.insert(info, now, responded) {
            let already = self.pending.values().any(|p| p.node == Some(n.id));
            if !already {
                self.query(
                    now,
                    n.addr,
                    Some(n.id),
                    Query::Ping { id: self.id },
                    Purpose::Check,
                );
            }
        }
    }

    pub(super) fn allow(&mut self, now: Instant, ip: Ipv4Addr) -> bool {
        // Every node of a loopback test shares 127.0.0.1: a per-IP limit would throttle the
        // test, and protects nothing on the local host.
        if ip.is_loopback() && !self.cfg.limit_loopback {
            return true;
        }
        let (rate, burst) = (self.cfg.rate_per_ip, self.cfg.burst_per_ip);
        if !self.limiter.contains_key(&ip) && self.limiter.len() >= self.cfg.max_tracked_ips {
            // Full: forget one tracked address at random (the first at or after a random
            // point). Refusing every new address instead would let a flood from forged
            // addresses lock out every legitimate newcomer.
            let at = Ipv4Addr::from(self.rng.next_u64() as u32);
            let victim = self
                .limiter
                .range(at..)
                .next()
                .or_else(|| self.limiter.iter().next())
                .map(|(k, _)| *k);
            if let Some(v) = victim {
                self.limiter.remove(&v);
            }
        }
        let (tokens, last) = self.limiter.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + rate * now.saturating_duration_since(*last).as_secs_f64()).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub(super) fn answer(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: &[u8],
        q: Query,
        read_only: bool,
        query_len: usize,
    ) {
        let sender = q.sender();
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        let k = self.cfg.k;
        match q {
            Query::Ping { .. } => {}
            Query::Stats { .. } => {
                if !from.ip().is_loopback() {
                    self.send_msg(
                        from,
                        Message::error(
                            tid,
                            krpc::ERR_GENERIC,
                            "sv_stats is answered to local queries only",
                        ),
                    );
                    return;
                }
                r.stats = Some(self.report_pairs());
                r.buckets = self
                    .table
                    .bucket_sizes()
                    .into_iter()
                    .map(|b| b as i64)
                    .collect();
            }
            Query::FindNode { target, .. } => {
                r.nodes = self.table.closest_verified(&target, k, now);
            }
            Query::GetPeers { info_hash, .. } => {
                r.token = Some(self.token(*from.ip(), self.secrets[0]));
                let stored = self.stored_peers(&info_hash);
                if stored.is_empty() {
                    r.nodes = self.table.closest_verified(&info_hash, k, now);
                } else {
                    let mut v = stored;
                    self.rng.shuffle(&mut v);
                    v.truncate(self.cfg.max_values);
                    r.values = v;
                }
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                token,
                implied_port,
                ..
            } => {
                if !self.valid_token(*from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    self.send_msg(from, Message::error(tid, krpc::ERR_PROTOCOL, "bad token"));
                    return;
                }
                let peer =
                    SocketAddrV4::new(*from.ip(), if implied_port { from.port() } else { port });
                if !self.store_peer(now, info_hash, peer) {
                    self.send_msg(from, Message::error(tid, krpc::ERR_SERVER, "storage full"));
                    return;
                }
                self.emit(Event::PeerAnnounced { info_hash, peer });
            }
            Query::Get { target, seq, .. } => {
                r.token = Some(self.token(*from.ip(), self.secrets[0]));
                if let Some((item, _)) = self.items.get(&target) {
                    match &item.mutable {
                        None => r.v = Some(item.v.clone()),
                        Some(m) => {
                            r.k = Some(m.k);
                            r.seq = Some(m.seq);
                            if seq.is_none_or(|s| m.seq > s) {
                                r.v = Some(item.v.clone());
                                r.sig = Some(m.sig);
                            }
                        }
                    }
                }
                // the value is what was asked for: no nodes next to it (keeps the answer
                // near 1 KB at most)
                if r.v.is_none() {
                    r.nodes = self.table.closest_verified(&target, k, now);
                }
            }
            Query::Put {
                token, item, cas, ..
            } => {
                if !self.valid_token(*from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    self.send_msg(from, Message::error(tid, krpc::ERR_PROTOCOL, "bad token"));
                    return;
                }
                if let Err((code, why)) = self.store_item(now, item, cas) {
                    self.send_msg(from, Message::error(tid, code, why));
                    return;
                }
            }
        }
        let verified = self
            .table
            .get(&sender)
            .is_some_and(|e| e.info.addr == from && e.last_response.is_some());
        self.reply(now, from, tid, r, verified, query_len);
        if !read_only {
            self.consider_querier(
                now,
                NodeInfo {
                    id: sender,
                    addr: from,
                },
            );
        }
    }

    /// Sends answer `r`. To an unverified source, whatever the answer has beyond its
    /// query's size is paid from the amplification budget; when that is spent, nodes and
    /// peers are left out until the answer is no larger than the query.
    pub(super) fn reply(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        tid: &[u8],
        r: Response,
        verified: bool,
        query_len: usize,
    ) {
        let version = self.cfg.version.map(|v| v.to_vec());
        let encode = |r: &Response| {
            let mut m = Message::response(tid, r.clone());
            m.ip = Some(from);
            m.version.clone_from(&version);
            m.encode()
        };
        let mut r = r;
        let mut data = encode(&r);
        let allowed = query_len.saturating_mul(AMPLIFICATION);
        if !verified && data.len() > allowed {
            let cap = cfg_budget(&self.cfg);
            let (tokens, last) = &mut self.reply_budget;
            *tokens = (*tokens + cap * now.saturating_duration_since(*last).as_secs_f64()).min(cap);
            *last = now;
            let excess = (data.len() - allowed) as f64;
            if *tokens >= excess {
                *tokens -= excess;
            } else {
                self.stats.trimmed += 1;
                // peers first, then a BEP 44 value, then nodes, until it fits
                while data.len() > allowed {
                    let over = data.len() - allowed;
                    if !r.values.is_empty() {
                        let n = over.div_ceil(krpc::COMPACT_PEER + 2).min(r.values.len());
                        r.values.truncate(r.values.len() - n);
                    } else if r.v.is_some() || r.k.is_some() {
                        (r.v, r.k, r.sig, r.seq) = (None, None, None, None);
                    } else if !r.nodes.is_empty() {
                        let n = over.div_ceil(krpc::COMPACT_NODE).min(r.nodes.len());
                        r.nodes.truncate(r.nodes.len() - n);
                    } else {
                        break;
                    }
                    data = encode(&r);
                }
            }
        }
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(Transmit::Datagram {
                to: SocketAddr::V4(from),
                data,
            });
        }
    }

    /// A node queried us: one we know at that address is refreshed; a new one is pinged,
    /// and enters the table only if it answers (so an address that only sends queries —
    /// forged, or a client gone a second later — is never handed out to others).
    pub(super) fn consider_querier(&mut self, now: Instant, info: NodeInfo) {
        if self.cfg.enforce_bep42 && !bep42::is_valid(&info.id, *info.addr.ip()) {
            self.stats.bep42_rejected += 1;
            return;
        }
        if info.id == self.id {
            return;
        }
        match self.table.get(&info.id) {
            Some(e) if e.info.addr == info.addr => {
                self.table.insert(info, now, false);
                return;
            }
            Some(_) => return,
            None => {}
        }
        if self.verifying >= self.cfg.max_verify_pings
            || self.verify_addrs.contains(&info.addr)
            || !self.table.would_take(&info.id, now)
        {
            return;
        }
        let q = Query::Ping { id: self.id };
        if self.query(now, info.addr, Some(info.id), q, Purpose::Verify) {
            self.verifying += 1;
            self.verify_addrs.insert(info.addr);
            self.stats.verify_pings += 1;
        }
    }

    /// The node's counters as (name, value), sorted by name (the `sv_stats` answer and the
    /// state file).
    pub fn report_pairs(&self) -> Vec<(String, i64)> {
        let (hashes, peers) = self.stored();
        let mut v = self.stats.pairs();
        v.push(("nodes".into(), self.table.len() as i64));
        v.push(("stored_hashes".into(), hashes as i64));
        v.push(("stored_peers".into(), peers as i64));
        v.push(("stored_items".into(), self.items.len() as i64));
        v.push(("lookups".into(), self.lookups.len() as i64));
        v.sort();
        v
    }
}
