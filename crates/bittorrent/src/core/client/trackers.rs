//! Trackers: the announce cycle over tiers (BEP 12), HTTP and UDP (BEP 15) exchanges, replies and timeouts.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.

use super::*;

impl<S: Storage> Client<S> {
    // ---------------------------------------------------------------------------------
    // Trackers.

    pub(super) fn current_tracker(&self) -> Option<TrackerEndpoint> {
        let (t, i) = self.tracker_pos;
        self.cfg.trackers.get(t)?.get(i).cloned()
    }

    pub(super) fn announce_request(&self) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: self.info_hash,
            peer_id: self.cfg.peer_id,
            port: self.cfg.listen_port,
            uploaded: self.uploaded,
            downloaded: self.downloaded,
            left: if self.fetch.is_some() {
                MAGNET_LEFT
            } else {
                self.total.saturating_sub(self.picker.have_bytes())
            },
            event: self.pending_event,
            numwant: Some(if self.pending_event == AnnounceEvent::Stopped {
                0
            } else {
                self.cfg.numwant
            }),
            compact: true,
            key: Some(u32::from_be_bytes([
                self.cfg.peer_id[8],
                self.cfg.peer_id[9],
                self.cfg.peer_id[10],
                self.cfg.peer_id[11],
            ])),
        }
    }

    pub(super) fn start_announce(&mut self, now: Instant) {
        if self.job.is_some() {
            return;
        }
        let Some(ep) = self.current_tracker() else {
            self.tracker_pos = (0, 0);
            self.set_timer(Timer::Announce, Some(now + TRACKER_RETRY));
            return;
        };
        self.set_timer(Timer::Announce, None);
        self.set_timer(Timer::TrackerJob, Some(now + TRACKER_TIMEOUT));
        match &ep.kind {
            TrackerKind::Http { host, path } => {
                let sep = if path.contains('?') { '&' } else { '?' };
                let request = format!(
                    "GET {path}{sep}{} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: {}\r\nConnection: close\r\n\r\n",
                    self.announce_request().to_query(),
                    self.cfg.client_name
                )
                .into_bytes();
                let conn = ConnId::outbound(self.next_conn);
                self.next_conn += 1;
                self.roles.insert(conn, Role::Tracker);
                self.send(Transmit::Connect { conn, to: ep.addr });
                self.job = Some(Job::Http {
                    conn,
                    url: ep.url.clone(),
                    request,
                    reply: Vec::new(),
                });
            }
            TrackerKind::Udp => {
                let tid = self.rng.next_u64() as u32;
                self.send(Transmit::Datagram {
                    to: ep.addr,
                    data: UdpRequest::Connect {
                        transaction_id: tid,
                    }
                    .encode(),
                });
                self.job = Some(Job::Udp {
                    addr: ep.addr,
                    url: ep.url.clone(),
                    tid,
                    connection_id: None,
                    attempts: 1,
                });
            }
        }
    }

    pub(super) fn tracker_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(Job::Http {
            conn: jc, reply, ..
        }) = &mut self.job
        else {
            return;
        };
        if *jc != conn {
            return;
        }
        if reply.len() + data.len() > MAX_TRACKER_REPLY {
            self.tracker_done(now, Err("reply too large".into()));
            return;
        }
        reply.extend_from_slice(data);
        // Done as soon as a complete reply with a Content-Length is in.
        if let Ok((status, body)) = parse_http_response(reply) {
            let has_len = String::from_utf8_lossy(reply)
                .to_ascii_lowercase()
                .contains("content-length:");
            if has_len {
                let r = http_result(status, body);
                self.tracker_done(now, r);
            }
        }
    }

    pub(super) fn tracker_closed(&mut self, now: Instant, conn: ConnId) {
        let Some(Job::Http {
            conn: jc, reply, ..
        }) = &self.job
        else {
            return;
        };
        if *jc != conn {
            return;
        }
        let r = match parse_http_response(reply) {
            Ok((status, body)) => http_result(status, body),
            Err(e) => Err(e.to_string()),
        };
        self.tracker_done(now, r);
    }

    pub(super) fn tracker_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let Some(Job::Udp {
            addr,
            tid,
            connection_id,
            ..
        }) = &mut self.job
        else {
            return;
        };
        if *addr != from {
            return;
        }
        let Ok(resp) = UdpResponse::decode(data) else {
            return;
        };
        match resp {
            UdpResponse::Connect {
                transaction_id,
                connection_id: cid,
            } if transaction_id == *tid => {
                *connection_id = Some(cid);
                let new_tid = self.rng.next_u64() as u32;
                if let Some(Job::Udp { tid, addr, .. }) = &mut self.job {
                    *tid = new_tid;
                    let to = *addr;
                    let req = UdpRequest::Announce {
                        connection_id: cid,
                        transaction_id: new_tid,
                        req: self.announce_request(),
                        ip: 0,
                    };
                    self.send(Transmit::Datagram {
                        to,
                        data: req.encode(),
                    });
                    self.set_timer(Timer::TrackerJob, Some(now + TRACKER_TIMEOUT));
                }
            }
            UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } if transaction_id == *tid => {
                let r = AnnounceResponse {
                    interval,
                    min_interval: None,
                    complete: seeders,
                    incomplete: leechers,
                    peers: peers.into_iter().map(SocketAddr::V4).collect(),
                    warning: None,
                };
                self.tracker_done(now, Ok(r));
            }
            UdpResponse::Error {
                transaction_id,
                message,
            } if transaction_id == *tid => {
                self.tracker_done(now, Err(message));
            }
            _ => {}
        }
    }

    pub(super) fn tracker_timeout(&mut self, now: Instant) {
        match &mut self.job {
            Some(Job::Udp {
                addr,
                tid,
                connection_id,
                attempts,
                ..
            }) if *attempts < 3 => {
                // BEP 15 retransmits; we retry the whole exchange a few times.
                *attempts += 1;
                *connection_id = None;
                let new_tid = self.rng.next_u64() as u32;
                *tid = new_tid;
                let to = *addr;
                self.send(Transmit::Datagram {
                    to,
                    data: UdpRequest::Connect {
                        transaction_id: new_tid,
                    }
                    .encode(),
                });
                self.set_timer(Timer::TrackerJob, Some(now + TRACKER_TIMEOUT));
            }
            Some(_) => self.tracker_done(now, Err("timed out".into())),
            None => {}
        }
    }

    pub(super) fn tracker_done(&mut self, now: Instant, result: Result<AnnounceResponse, String>) {
        let Some(job) = self.job.take() else {
            return;
        };
        self.set_timer(Timer::TrackerJob, None);
        let url = match job {
            Job::Http { conn, url, .. } => {
                self.roles.remove(&conn);
                self.send(Transmit::Close { conn });
                url
            }
            Job::Udp { url, .. } => url,
        };
        let event = self.pending_event;
        match result {
            Ok(r) => {
                // BEP 12: a tracker that answered moves to the front of its tier.
                let (t, i) = self.tracker_pos;
                if let Some(tier) = self.cfg.trackers.get_mut(t) {
                    if i < tier.len() {
                        let ep = tier.remove(i);
                        tier.insert(0, ep);
                    }
                }
                self.tracker_pos = (0, 0);
                self.emit(ClientEvent::TrackerReply {
                    url,
                    peers: r.peers.len(),
                    seeders: r.complete,
                    leechers: r.incomplete,
                });
                self.interval = Duration::from_secs(u64::from(r.interval.clamp(30, 3600)));
                if event == AnnounceEvent::Stopped {
                    self.set_timer(Timer::Announce, None);
                    return;
                }
                self.pending_event = AnnounceEvent::None;
                if !self.is_complete() || self.cfg.seed {
                    self.add_candidates(r.peers);
                    self.connect_more(now);
                }
                // Ask again sooner while we lack peers.
                let next = if self.peers.len() < 5 && !self.is_complete() {
                    self.interval.min(Duration::from_secs(60))
                } else {
                    self.interval
                };
                self.set_timer(Timer::Announce, Some(now + next));
            }
            Err(reason) => {
                self.emit(ClientEvent::TrackerError { url, reason });
                let (t, i) = self.tracker_pos;
                let tier_len = self.cfg.trackers.get(t).map_or(0, Vec::len);
                self.tracker_pos = if i + 1 < tier_len {
                    (t, i + 1)
                } else {
                    (t + 1, 0)
                };
                if self.current_tracker().is_some() {
                    self.set_timer(Timer::Announce, Some(now));
                } else {
                    self.tracker_pos = (0, 0);
                    if event == AnnounceEvent::Stopped {
                        self.set_timer(Timer::Announce, None);
                    } else {
                        self.set_timer(Timer::Announce, Some(now + TRACKER_RETRY));
                    }
                }
            }
        }
    }
}
