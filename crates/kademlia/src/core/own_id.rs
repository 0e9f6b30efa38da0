//! BEP 42 for our own id: once several nodes agree on our public address and our id does
//! not fit it, take one that does and rebuild the table around it.

use super::*;

impl Dht {
    /// Counts one node's report of our address; once `bep42_votes` different nodes agree on
    /// one public address that our id does not fit, takes a BEP 42 id for it.
    pub(super) fn vote_ip(&mut self, now: Instant, voter: Ipv4Addr, seen: Ipv4Addr) {
        let need = self.cfg.bep42_votes;
        if need == 0 || bep42::is_exempt(seen) {
            return;
        }
        if self.ip_votes.len() >= 64 && !self.ip_votes.contains_key(&voter) {
            // keep the table small: start over (the agreeing majority comes back quickly)
            self.ip_votes.clear();
        }
        self.ip_votes.insert(voter, seen);
        let agree = self.ip_votes.values().filter(|&&v| v == seen).count();
        if agree < need {
            return;
        }
        self.external = Some(seen);
        if bep42::is_valid(&self.id, seen) {
            return;
        }
        let old = self.id;
        let new = bep42::make_id(seen, &Id::random(&mut self.rng));
        self.id = new;
        // the buckets are laid out around our id: rebuild them around the new one
        let nodes: Vec<crate::core::table::Entry> = self.table.entries().copied().collect();
        self.table = RoutingTable::new(new, self.cfg.k, now);
        for e in nodes {
            if e.info.id != new {
                self.table
                    .insert(e.info, e.last_seen, e.last_response.is_some());
            }
        }
        self.ip_votes.clear();
        self.emit(Event::IdChanged {
            old,
            new,
            external: seen,
        });
        // tell the network where we are now
        if let Some(key) = self.new_lookup(now, u64::MAX, Kind::Refresh, new) {
            self.begin_search(now, key);
        }
    }
}
