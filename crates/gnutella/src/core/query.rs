//! Queries: routing a Query through an ultrapeer's leaves (QRP), answering one from the
//! library, and delivering hits to the user's search.

use super::library::SharedFile;
use super::links::State;
use super::{Event, Hit, PeerRole, Servent};
use crate::wire::{
    Body, Guid, HEADER_LEN, Header, HitFlags, HitRecord, Kind, Message, QueryHit, Trailer,
    scan_query,
};
use servent_core::ConnId;
use std::net::SocketAddrV4;

impl Servent {
    /// An ultrapeer routes a Query: to each leaf whose QRP table may match (whatever the
    /// TTL), and, while `out_ttl` is at least 1, to every mesh neighbour — except that a
    /// neighbour that gets it with TTL 1 (the last hop) must have a table that may match,
    /// if it sent one. Returns on how many connections it went.
    pub(super) fn route_query_06(
        &mut self,
        id: Guid,
        out_ttl: u8,
        hops: u8,
        payload: &[u8],
        from: Option<ConnId>,
    ) -> usize {
        let Ok((_, criteria)) = scan_query(payload) else {
            return 0;
        };
        let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(criteria);
        let urns = query_urns(ext_area);
        let mut targets: Vec<(ConnId, u8)> = Vec::new();
        let mut blocked = 0;
        for (id, c) in &self.conns {
            if Some(*id) == from || !matches!(c.state, State::Overlay) {
                continue;
            }
            let table = c.ext.as_ref().and_then(|e| e.qrp_in.table());
            match c.role {
                Some(PeerRole::Leaf) => {
                    if table.is_some_and(|t| t.may_match(&text, &urns)) {
                        targets.push((*id, out_ttl.max(1)));
                    } else {
                        blocked += 1;
                    }
                }
                Some(PeerRole::Ultrapeer) if out_ttl == 1 => {
                    if table.is_none_or(|t| t.may_match(&text, &urns)) {
                        targets.push((*id, 1));
                    } else {
                        blocked += 1;
                    }
                }
                Some(PeerRole::Ultrapeer | PeerRole::Legacy) if out_ttl >= 1 => {
                    targets.push((*id, out_ttl));
                }
                _ => {}
            }
        }
        self.stats.qrp_blocked += blocked;
        let n = targets.len();
        for (conn, ttl) in targets {
            let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
            v.extend_from_slice(
                &Header {
                    id,
                    kind: Kind::Query,
                    ttl,
                    hops,
                    len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                }
                .to_bytes(),
            );
            v.extend_from_slice(payload);
            self.send_bytes(conn, v, Some(Kind::Query));
        }
        n
    }

    /// One Query copy with `ttl` and `hops` to `conn`.
    pub(super) fn send_query_copy(
        &mut self,
        conn: ConnId,
        id: Guid,
        ttl: u8,
        hops: u8,
        payload: &[u8],
    ) {
        let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
        v.extend_from_slice(
            &Header {
                id,
                kind: Kind::Query,
                ttl,
                hops,
                len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            }
            .to_bytes(),
        );
        v.extend_from_slice(payload);
        self.send_bytes(conn, v, Some(Kind::Query));
    }

    pub(super) fn answer_query(
        &mut self,
        h: &Header,
        min_speed: [u8; 2],
        criteria: &[u8],
        ext_area: &[u8],
        from: ConnId,
    ) {
        if self.library.is_empty() {
            return;
        }
        // A firewalled querier cannot reach a firewalled responder, not even with Push.
        let source_firewalled = min_speed[0] & crate::wire::QUERY_FLAGS_MARK != 0
            && min_speed[0] & crate::wire::QUERY_FLAG_FIREWALLED != 0;
        if self.cfg.firewalled && source_firewalled {
            return;
        }
        let max = self.cfg.max_results.min(255);
        // HUGE: a query naming `urn:sha1:` URNs matches the files with those hashes.
        let mut found: Vec<&SharedFile> = query_urns(ext_area)
            .into_iter()
            .filter_map(crate::wire::urn::parse_sha1_urn)
            .filter_map(|h| self.library.by_sha1(&h))
            .take(max)
            .collect();
        if found.is_empty() {
            found = self.library.search(criteria, max);
        }
        if found.is_empty() {
            return;
        }
        let mut results = Vec::with_capacity(found.len());
        let mut room = self.cfg.max_payload.saturating_sub(11 + 16 + 7);
        for f in found {
            let extension = f.urn().map(String::into_bytes).unwrap_or_default();
            let need = 10 + f.name.len() + extension.len();
            if need > room {
                break;
            }
            room -= need;
            results.push(HitRecord {
                index: f.index,
                size: u32::try_from(f.size).unwrap_or(u32::MAX),
                name: f.name.as_bytes().to_vec(),
                extension,
            });
        }
        if results.is_empty() {
            return;
        }
        let hit = Message {
            id: h.id,
            ttl: h.hops.saturating_add(1).min(self.cfg.max_ttl.max(1)),
            hops: 0,
            body: Body::QueryHit(QueryHit {
                port: self.cfg.advertised.port(),
                ip: *self.cfg.advertised.ip(),
                speed: self.cfg.speed_kbps,
                results,
                trailer: Some(Trailer::ours(HitFlags {
                    push: Some(self.cfg.firewalled),
                    busy: Some(false),
                    have_uploaded: None,
                    speed_measured: None,
                })),
                servent_id: self.cfg.servent_id,
            }),
        };
        self.stats.queries_answered += 1;
        self.send_bytes(from, hit.encode(), Some(Kind::QueryHit));
    }

    pub(super) fn deliver_hits(&mut self, search: u64, h: &Header, qh: QueryHit) {
        let flags = qh.flags();
        let addr = SocketAddrV4::new(qh.ip, qh.port);
        let vendor = qh.trailer.as_ref().map(|t| t.vendor);
        for r in qh.results {
            self.emit(Event::Hit {
                search,
                hit: Hit {
                    addr,
                    servent_id: qh.servent_id,
                    index: r.index,
                    name: String::from_utf8_lossy(&r.name).into_owned(),
                    size: r.size,
                    speed: qh.speed,
                    push: flags.push.unwrap_or(false),
                    busy: flags.busy.unwrap_or(false),
                    vendor,
                    hops: h.hops.saturating_add(1),
                    sha1: r
                        .extension
                        .split(|b| *b == 0x1c)
                        .filter_map(|x| std::str::from_utf8(x).ok())
                        .find_map(crate::wire::urn::parse_sha1_urn),
                },
            });
        }
    }
}

/// URNs (`urn:...`) in a Query's extension area (after the criteria's NUL), at most 8.
pub(super) fn query_urns(ext: &[u8]) -> Vec<&str> {
    ext.split(|b| *b == 0x1c || *b == 0)
        .filter_map(|x| std::str::from_utf8(x).ok())
        .filter(|x| x.len() > 4 && x.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")))
        .take(8)
        .collect()
}
