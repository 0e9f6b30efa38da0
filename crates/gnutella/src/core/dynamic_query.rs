//! Dynamic querying: an ultrapeer widens a query round by round, one neighbour at a time,
//! until enough results came back (or the deadline).

use super::links::State;
use super::query::query_urns;
use super::{PeerRole, Servent};
use crate::wire::{Guid, scan_query};
use servent_core::{ConnId, Instant};
use std::collections::BTreeSet;

/// The degree assumed for a neighbour that sent no X-Degree (a 0.4 servent).
pub(super) const DQ_DEFAULT_DEGREE: u32 = 6;

/// Servents a query sent with `ttl` to a neighbour of degree `degree` reaches in theory:
/// 1 + (d-1) + (d-1)^2 + ... (`ttl` terms), times 0.8 per hop beyond the first for the
/// overlap of a real mesh (gtk-gnutella's correction).
pub(super) fn dq_horizon(degree: u32, ttl: u8) -> f64 {
    let d = f64::from(degree.clamp(1, 64).saturating_sub(1));
    let mut sum = 0.0;
    let mut term = 1.0;
    for _ in 0..ttl.min(8) {
        sum += term;
        term *= d;
    }
    sum * 0.8f64.powi(i32::from(ttl.clamp(1, 8)) - 1)
}

/// A neighbour a dynamic query may use next.
#[derive(Clone, Copy, Debug)]
pub(super) struct DqPeer {
    pub(super) conn: ConnId,
    pub(super) degree: u32,
    pub(super) max_ttl: u8,
    /// It sent a last-hop QRP table and that table may match.
    pub(super) matches: bool,
    /// Its last-hop QRP table rules the query out.
    pub(super) ruled_out: bool,
}

/// A dynamic query an ultrapeer runs for one of its leaves or for itself.
#[derive(Debug)]
pub(super) struct DynQuery {
    /// The leaf that asked (None: our own search).
    pub(super) leaf: Option<ConnId>,
    /// The Query payload, as the copies carry it.
    pub(super) payload: Vec<u8>,
    /// Hops of the copies we send.
    pub(super) hops: u8,
    /// Highest TTL of a copy.
    pub(super) ceiling: u8,
    /// Results wanted.
    pub(super) target: u32,
    /// Ultrapeer connections that got a copy (at most our connections).
    pub(super) used: BTreeSet<ConnId>,
    /// Results routed back through us (or to us) so far.
    pub(super) results: u32,
    /// The leaf's last query status: (hits it kept, `results` when it said so).
    pub(super) status: Option<(u32, u32)>,
    /// Theoretical servents reached so far.
    pub(super) horizon: f64,
    /// When the next round is due.
    pub(super) next: Instant,
    /// When the query stops widening.
    pub(super) deadline: Instant,
}

impl DynQuery {
    /// The results that count towards the target: a leaf's own count, when it sends one,
    /// divided by the 3 ultrapeers a leaf usually asks (it counts what they all sent),
    /// plus what came through us since; else what came through us.
    pub(super) fn effective(&self) -> u32 {
        match self.status {
            Some((kept, at)) => (kept / 3).saturating_add(self.results.saturating_sub(at)),
            None => self.results,
        }
    }
}

impl Servent {
    /// The ultrapeer neighbours a dynamic query may still use, best first: those whose
    /// last-hop QRP table may match, then those without a table (0.4 peers, tables not in
    /// yet), then those whose table rules the query out (useful only with TTL 2 or more).
    /// Each with its degree and highest TTL, and whether its table rules the query out.
    pub(super) fn dq_candidates(
        &self,
        text: &str,
        urns: &[&str],
        skip: Option<ConnId>,
        used: &BTreeSet<ConnId>,
    ) -> Vec<DqPeer> {
        let mut out: Vec<(u8, DqPeer)> = Vec::new();
        for (id, c) in &self.conns {
            if Some(*id) == skip || used.contains(id) || !matches!(c.state, State::Overlay) {
                continue;
            }
            if !matches!(c.role, Some(PeerRole::Ultrapeer | PeerRole::Legacy)) {
                continue;
            }
            let ext = c.ext.as_deref();
            let rank = match ext.and_then(|e| e.qrp_in.table()) {
                Some(t) if t.may_match(text, urns) => 0,
                None => 1,
                Some(_) => 2,
            };
            out.push((
                rank,
                DqPeer {
                    conn: *id,
                    degree: ext.and_then(|e| e.degree).unwrap_or(DQ_DEFAULT_DEGREE),
                    max_ttl: ext.and_then(|e| e.max_ttl).unwrap_or(u8::MAX),
                    matches: rank == 0,
                    ruled_out: rank == 2,
                },
            ));
        }
        // A stable sort keeps connection order within a rank: deterministic.
        out.sort_by_key(|(rank, _)| *rank);
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Starts a dynamic query (an ultrapeer's own search, or a query from its leaf `leaf`):
    /// the copies to the leaves whose QRP tables match, then a probe with a low TTL to
    /// `dq_probe` ultrapeers, matching ones first; later rounds (see [`Self::dq_round`])
    /// widen it. No copy gets a TTL above `ceiling`. Falls back to the plain route when
    /// dynamic querying is off or `dq_max` queries run. Returns the copies sent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dq_start(
        &mut self,
        now: Instant,
        id: Guid,
        ceiling: u8,
        hops: u8,
        payload: &[u8],
        leaf: Option<ConnId>,
        target: u32,
    ) -> usize {
        if !self.cfg.dynamic_query || self.dqs.len() >= self.cfg.dq_max || ceiling == 0 {
            return self.route_query_06(id, ceiling, hops, payload, leaf);
        }
        let Ok((_, criteria)) = scan_query(payload) else {
            return 0;
        };
        let ext_area = payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
        let text = String::from_utf8_lossy(criteria).into_owned();
        let urns = query_urns(ext_area);
        // Our leaves: every one whose table may match, at once.
        let mut leaves = Vec::new();
        let mut blocked = 0;
        for (cid, c) in &self.conns {
            if Some(*cid) == leaf
                || c.role != Some(PeerRole::Leaf)
                || !matches!(c.state, State::Overlay)
            {
                continue;
            }
            let table = c.ext.as_ref().and_then(|e| e.qrp_in.table());
            if table.is_some_and(|t| t.may_match(&text, &urns)) {
                leaves.push(*cid);
            } else {
                blocked += 1;
            }
        }
        // The probe: TTL 1 when enough neighbours' last-hop tables match, else TTL 2 (a
        // few connections, or none that matches) to reach beyond them.
        let used = BTreeSet::new();
        let cands = self.dq_candidates(&text, &urns, leaf, &used);
        if cands.len() <= self.cfg.dq_probe.max(1) {
            // The probe would use every ultrapeer connection and leave none to widen with
            // (a neighbour drops a second copy as a duplicate): the plain route, at once.
            return self.route_query_06(id, ceiling, hops, payload, leaf);
        }
        let matching = cands.iter().filter(|p| p.matches).count();
        let probe_ttl = if matching >= self.cfg.dq_probe.max(1) {
            1
        } else {
            2.min(ceiling)
        };
        let probe: Vec<DqPeer> = cands
            .into_iter()
            .filter(|p| probe_ttl > 1 || !p.ruled_out)
            .take(self.cfg.dq_probe.max(1))
            .collect();
        let mut q = DynQuery {
            leaf,
            payload: payload.to_vec(),
            hops,
            ceiling,
            target: target.max(1),
            used: BTreeSet::new(),
            results: 0,
            status: None,
            horizon: 0.0,
            next: now,
            deadline: now + self.cfg.dq_lifetime,
        };
        let mut sent = 0;
        for l in leaves {
            self.send_query_copy(l, id, 1, hops, payload);
            sent += 1;
        }
        self.stats.qrp_blocked += blocked;
        let mut wait = 1u32;
        for p in probe {
            let ttl = probe_ttl.min(p.max_ttl).max(1);
            self.send_query_copy(p.conn, id, ttl, hops, payload);
            q.used.insert(p.conn);
            q.horizon += dq_horizon(p.degree, ttl);
            wait = wait.max(u32::from(ttl));
            sent += 1;
        }
        q.next = now + self.cfg.dq_hop_wait * wait;
        self.stats.dq_started += 1;
        // A replaced entry (the same id again) is simply restarted.
        self.dqs.insert(id, q);
        sent
    }

    /// `n` results for query `id` came back through us (or to us).
    pub(super) fn dq_results(&mut self, id: Guid, n: u32) {
        if let Some(q) = self.dqs.get_mut(&id) {
            q.results = q.results.saturating_add(n);
            if q.effective() >= q.target {
                self.dqs.remove(&id);
                self.stats.dq_satisfied += 1;
            }
        }
    }

    /// Leaf `from` says it kept `kept` hits for query `id` (`0xFFFF`: stop it).
    pub(super) fn dq_status(&mut self, from: ConnId, id: Guid, kept: u16) {
        let Some(q) = self.dqs.get_mut(&id) else {
            return;
        };
        if q.leaf != Some(from) {
            return;
        }
        if kept == crate::wire::QUERY_STATUS_STOP {
            self.dqs.remove(&id);
            return;
        }
        q.status = Some((u32::from(kept), q.results));
        if q.effective() >= q.target {
            self.dqs.remove(&id);
            self.stats.dq_satisfied += 1;
        }
    }

    /// Runs the rounds that are due and drops the queries past their lifetime.
    pub(super) fn dq_due(&mut self, now: Instant) {
        let due: Vec<Guid> = self
            .dqs
            .iter()
            .filter(|(_, q)| q.next <= now || q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.dq_round(now, id);
        }
    }

    /// One widening round: estimate the results per ultrapeer reached so far, the hosts
    /// still needed for the target, split them over the unused connections and send the
    /// query to the best unused one with the TTL whose theoretical horizon (from its
    /// X-Degree) covers its share; then wait that TTL's hops. Ends the query when its time
    /// is up or every connection was used.
    pub(super) fn dq_round(&mut self, now: Instant, id: Guid) {
        let Some(q) = self.dqs.remove(&id) else {
            return;
        };
        if q.deadline <= now {
            return;
        }
        let mut q = q;
        let (text, urns_owned) = match scan_query(&q.payload) {
            Ok((_, criteria)) => {
                let ext_area = q.payload.get(2 + criteria.len() + 1..).unwrap_or(&[]);
                (
                    String::from_utf8_lossy(criteria).into_owned(),
                    query_urns(ext_area)
                        .into_iter()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                )
            }
            Err(_) => return,
        };
        let urns: Vec<&str> = urns_owned.iter().map(String::as_str).collect();
        let cands = self.dq_candidates(&text, &urns, q.leaf, &q.used);
        let needed = f64::from(q.target.saturating_sub(q.effective()).max(1));
        let per_host = f64::from(q.results) / q.horizon.max(1.0);
        let hosts = needed / per_host.max(1e-6);
        let per_conn = hosts / cands.len().max(1) as f64;
        for p in &cands {
            let max = q.ceiling.min(p.max_ttl).max(1);
            // The highest TTL whose horizon does not overshoot the share (at least 1).
            let ttl = (1..=max)
                .rev()
                .find(|t| dq_horizon(p.degree, *t) <= per_conn)
                .unwrap_or(1);
            q.used.insert(p.conn);
            if ttl == 1 && p.ruled_out {
                // Its table says no servent one hop away has it: skip it.
                continue;
            }
            self.send_query_copy(p.conn, id, ttl, q.hops, &q.payload);
            self.stats.dq_round_copies += 1;
            q.horizon += dq_horizon(p.degree, ttl);
            q.next = now + self.cfg.dq_hop_wait * u32::from(ttl);
            self.dqs.insert(id, q);
            return;
        }
        // Every connection was used.
    }
}
