//! What a member accepts from its peers: the per-IP token bucket, counted and logged
//! drops, and the counters `chord stats` reports.

use super::*;

/// The limits a member enforces on its peers, with their defaults (`chord run --help`
/// names each flag). [`Limits::apply`] copies them into a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// [`Config::max_datagram`].
    pub max_datagram: usize,
    /// [`Config::max_pending`].
    pub max_pending: usize,
    /// [`Config::rate_per_ip`].
    pub rate_per_ip: f64,
    /// [`Config::burst_per_ip`].
    pub burst_per_ip: f64,
    /// [`Config::max_store`].
    pub max_items: usize,
    /// [`Config::max_store_bytes`].
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        let c = Config::new(Ring::FULL, Id::ZERO, SocketAddr::from(([127, 0, 0, 1], 0)));
        Limits {
            max_datagram: c.max_datagram,
            max_pending: c.max_pending,
            rate_per_ip: c.rate_per_ip,
            burst_per_ip: c.burst_per_ip,
            max_items: c.max_store,
            max_bytes: c.max_store_bytes,
        }
    }
}

impl Limits {
    /// Sets these limits on `cfg`.
    pub fn apply(&self, cfg: &mut Config) {
        cfg.max_datagram = self.max_datagram.min(MAX_DATAGRAM);
        cfg.max_pending = self.max_pending.min(MAX_PENDING);
        cfg.rate_per_ip = self.rate_per_ip;
        cfg.burst_per_ip = self.burst_per_ip;
        cfg.max_store = self.max_items;
        cfg.max_store_bytes = self.max_bytes;
    }
}

/// What a node counted since it started (`chord stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Requests served (after every check below).
    pub requests_in: u64,
    /// Datagrams dropped because they did not decode (garbage, truncated, bad lengths).
    pub malformed: u64,
    /// Datagrams dropped for exceeding [`Config::max_datagram`].
    pub oversized: u64,
    /// Requests dropped by the per-IP rate limit.
    pub rate_limited: u64,
    /// Requests from a ring of another size, answered with an error.
    pub wrong_ring: u64,
    /// Requests held until their source answered a challenge.
    pub challenged: u64,
}

/// Why a datagram was dropped, as logged at `-v`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DropReason {
    Malformed,
    Oversized,
    RateLimited,
}

/// A token bucket: tokens left and when they were counted.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ChordNode {
    /// The values of a Stats answer, in the order of [`crate::wire::STAT_NAMES`].
    pub(super) fn stat_values(&self) -> Vec<u64> {
        let s = self.stats;
        let n = |x: usize| x as u64;
        vec![
            n(self.succs.len()),
            n(self.fingers.iter().flatten().count()),
            n(self.store.len()),
            n(self.store_bytes),
            n(self.tombs.len()),
            n(self.pending.len()),
            s.datagrams_in,
            s.requests_in,
            s.malformed,
            s.oversized,
            s.rate_limited,
            s.wrong_ring,
        ]
    }

    /// Source IPs the rate limit currently tracks.
    pub fn tracked_ips(&self) -> usize {
        self.limiter.len()
    }

    /// Counts a dropped datagram and logs its typed reason (at most once a second per
    /// reason, with the running count, so a flood cannot flood the log).
    pub(super) fn dropped(
        &mut self,
        now: Instant,
        from: SocketAddr,
        why: DropReason,
        detail: &dyn std::fmt::Display,
    ) {
        let count = match why {
            DropReason::Malformed => {
                self.stats.malformed += 1;
                self.stats.malformed
            }
            DropReason::Oversized => {
                self.stats.oversized += 1;
                self.stats.oversized
            }
            DropReason::RateLimited => {
                self.stats.rate_limited += 1;
                self.stats.rate_limited
            }
        };
        let slot = &mut self.drop_logged[why as usize];
        if slot.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1)) {
            *slot = Some(now);
            tracing::info!(%from, reason = ?why, %detail, total = count, "chord: dropped a datagram");
        }
    }

    /// The per-IP token bucket: whether a request from `ip` may be served now.
    pub(super) fn allow(&mut self, now: Instant, ip: std::net::IpAddr) -> bool {
        if ip.is_loopback() && !self.cfg.limit_loopback {
            return true;
        }
        let (rate, burst) = (
            self.cfg.rate_per_ip.max(0.0),
            self.cfg.burst_per_ip.max(1.0),
        );
        let key = match ip {
            std::net::IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(v) => v.octets(),
        };
        if !self.limiter.contains_key(&key) {
            if now >= self.limiter_prune_at {
                // Sources whose bucket has refilled are as good as new: forget them.
                self.limiter.retain(|_, b| {
                    b.tokens + rate * now.saturating_duration_since(b.at).as_secs_f64() < burst
                });
                let refill = if rate > 0.0 { burst / rate } else { 60.0 };
                self.limiter_prune_at = now + Duration::from_secs_f64(refill.clamp(0.1, 60.0));
            }
            if self.limiter.len() >= self.cfg.max_tracked_ips.max(1) {
                // Full: forget one (the first in the keyed order, which a peer cannot
                // predict) rather than refuse every newcomer.
                if let Some(k) = self.limiter.keys().next().copied() {
                    self.limiter.remove(&k);
                }
            }
        }
        let b = self.limiter.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + rate * now.saturating_duration_since(b.at).as_secs_f64()).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;

    /// IPv6 source addresses whose octets, hashed as the limiter's `[u8; 16]` key is (the
    /// length 16, then the bytes), all have the same FxHash: what a peer owning a /64 could
    /// send against an unkeyed per-IP table.
    fn fx_colliding_sources(n: usize) -> Vec<[u8; 16]> {
        const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95; // servent_core's FxHasher
        let prefix = 16u64.wrapping_mul(FX_SEED).rotate_left(5);
        servent_core::keyed::fx_colliding_words(n, 0x00c0_ffee)
            .into_iter()
            .map(|mut w| {
                let a = u64::from_le_bytes(w[..8].try_into().unwrap()) ^ prefix;
                w[..8].copy_from_slice(&a.to_le_bytes());
                w
            })
            .collect()
    }

    #[test]
    fn fxhash_colliding_source_ips_spread_in_the_keyed_limiter() {
        let ips = fx_colliding_sources(20_000);
        let fx = std::hash::BuildHasherDefault::<servent_core::FxHasher>::default();
        let fx_hashes: std::collections::BTreeSet<u64> =
            ips.iter().map(|k| fx.hash_one(k)).collect();
        assert_eq!(
            fx_hashes.len(),
            1,
            "the attack is real under an unkeyed hash"
        );

        let ring = Ring::new(16).unwrap_or(Ring::FULL);
        let me = SocketAddr::from(([10, 0, 0, 1], 4000));
        let mut cfg = Config::new(ring, ring.id(1), me);
        cfg.max_tracked_ips = 100_000;
        let mut n = ChordNode::new(cfg, Rng::new(9));
        n.create(Instant::ZERO);
        let ping = Message {
            bits: 16,
            txid: 1,
            body: Body::Ping,
        }
        .encode();
        for k in &ips {
            let from = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*k)), 6881);
            n.handle_input(Instant::ZERO, Input::Datagram { from, data: &ping });
            while n.poll_transmit().is_some() {}
        }
        assert_eq!(n.tracked_ips(), 20_000);
        assert_eq!(n.stats().requests_in, 0); // Pings are answered before any request
        // Counted, not timed: under the node's secret key every source hashes apart, so each
        // insert and lookup probes a chain of about one.
        let keyed: std::collections::BTreeSet<u64> = n
            .limiter
            .keys()
            .map(|k| n.limiter.hasher().hash_one(k))
            .collect();
        assert_eq!(keyed.len(), 20_000);
        // The same holds for the verified and held tables (keyed by peer addresses).
        let addrs: std::collections::BTreeSet<u64> = ips
            .iter()
            .map(|k| {
                n.verified
                    .hasher()
                    .hash_one(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(*k)), 1))
            })
            .collect();
        assert_eq!(addrs.len(), 20_000);
    }
}
