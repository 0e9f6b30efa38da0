//! What other nodes store with us: announced peers, BEP 44 items, and the tokens that
//! prove a querier's address (SHA-1 of its IP and a rotating secret).

use super::*;

impl Dht {
    pub(super) fn token(&self, ip: Ipv4Addr, secret: u64) -> Vec<u8> {
        let mut h = Sha1::new();
        h.update(ip.octets());
        h.update(secret.to_be_bytes());
        h.finalize()[..8].to_vec()
    }

    pub(super) fn valid_token(&self, ip: Ipv4Addr, token: &[u8]) -> bool {
        self.secrets.iter().any(|s| self.token(ip, *s) == token)
    }

    /// Stores a BEP 44 item after the checks of a `put`.
    pub(super) fn store_item(
        &mut self,
        now: Instant,
        item: Item,
        cas: Option<i64>,
    ) -> Result<(), (i64, &'static str)> {
        if !item.is_valid() {
            return Err(match &item.mutable {
                Some(_) if item.v.len() <= bep44::MAX_VALUE => {
                    (bep44::ERR_INVALID_SIGNATURE, "invalid signature")
                }
                _ => (bep44::ERR_VALUE_TOO_BIG, "message (v field) too big"),
            });
        }
        let target = item.target();
        let expiry = now + self.cfg.item_ttl;
        let seq = item.mutable.as_ref().map(|m| m.seq);
        match self.items.get_mut(&target) {
            Some((old, exp)) => {
                if let (Some(new), Some(have)) = (&item.mutable, &old.mutable) {
                    if cas.is_some_and(|c| c != have.seq) {
                        return Err((bep44::ERR_CAS_MISMATCH, "CAS mismatch"));
                    }
                    if new.seq < have.seq {
                        return Err((bep44::ERR_SEQ_TOO_LOW, "sequence number less than current"));
                    }
                    if new.seq > have.seq {
                        *old = item;
                    }
                }
                *exp = expiry;
            }
            None => {
                if self.items.len() >= self.cfg.max_items {
                    return Err((krpc::ERR_SERVER, "storage full"));
                }
                self.items.insert(target, (item, expiry));
            }
        }
        self.emit(Event::ItemStored { target, seq });
        Ok(())
    }

    pub(super) fn store_peer(&mut self, now: Instant, info_hash: Id, peer: SocketAddrV4) -> bool {
        if !self.store.contains_key(&info_hash) && self.store.len() >= self.cfg.max_hashes {
            return false;
        }
        let expiry = now + self.cfg.peer_ttl;
        let max = self.cfg.max_peers_per_hash;
        let peers = self.store.entry(info_hash).or_default();
        if let Some(p) = peers.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = expiry;
        } else if peers.len() < max {
            peers.push((peer, expiry));
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|(_, e)| *e) {
            *oldest = (peer, expiry);
        }
        true
    }
}
