//! The DHT as a peer source: which info-hashes to look up (or announce) when, and which
//! found peers to hand to which client. Sans-IO: time is passed in, the driver
//! ([`crate::driver::dht`]) runs the Kademlia node and does what [`DhtSource::poll`] says.
//!
//! The rules:
//! - a torrent registered with [`DhtSource::track`] is due at once; a registration for the
//!   same info-hash replaces the earlier one (a magnet's metadata fetch, port 0, is followed
//!   by the download with our port);
//! - one lookup at a time, the due torrents in info-hash order; with a port the lookup is an
//!   announce (`get_peers` then `announce_peer` to the closest nodes), with port 0 a
//!   `get_peers` only;
//! - a lookup that found peers (and, for an announce, stored our port somewhere) is repeated
//!   after [`REFRESH`]; one that found nobody is retried after 2, 4, 8 … at most
//!   [`MAX_BACKOFF`] seconds;
//! - when bootstrap nodes are known, a wake-up at least [`REBOOTSTRAP`] after the last join
//!   joins through them again first (a node that found nobody at start, because its
//!   bootstrap node was not up yet, catches up);
//! - the peers of one lookup, and those announced to our node meanwhile, are handed over
//!   deduplicated and at most [`MAX_FOUND`] at a time; a peer announced to our node for a
//!   tracked torrent is handed over at once;
//! - at most [`MAX_TRACKED`] torrents are tracked (a new one beyond is refused).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::Instant;

use crate::metainfo::InfoHash;

/// The first retry of a lookup that found nobody; doubled each time.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest wait between two lookups that found nobody.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The wait before a successful lookup is repeated (a re-announce).
pub const REFRESH: Duration = Duration::from_secs(300);
/// The first re-join through the bootstrap nodes comes this long after start, the next
/// ones [`REBOOTSTRAP`] apart.
pub const FIRST_REBOOTSTRAP: Duration = Duration::from_secs(10);
/// The least time between two re-joins through the bootstrap nodes.
pub const REBOOTSTRAP: Duration = Duration::from_secs(60);
/// Most peers handed to a client from one lookup.
pub const MAX_FOUND: usize = 200;
/// Most torrents tracked at once.
pub const MAX_TRACKED: usize = 4096;

/// What the driver is to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DhtAction {
    /// Join again through the bootstrap nodes; answer with [`DhtSource::bootstrap_done`].
    Bootstrap,
    /// Look peers up for `info_hash`; with `port` above 0 also announce that port. Answer
    /// with [`DhtSource::lookup_done`].
    Lookup {
        /// The torrent.
        info_hash: InfoHash,
        /// Our TCP port to announce; 0: look up only.
        port: u16,
    },
}

/// What a lookup returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupResult {
    /// The peers found.
    pub peers: Vec<SocketAddr>,
    /// For an announce: some node stored our port. A `get_peers` that completed counts as
    /// stored.
    pub stored: bool,
    /// The lookup failed (timed out, no node answered).
    pub failed: bool,
}

/// A tracked torrent: its port, its destination `K` (the driver's handle on the client) and
/// when it is due.
#[derive(Debug)]
struct Tracked<K> {
    port: u16,
    client: K,
    next: Instant,
    backoff: Duration,
}

/// The scheduler of the DHT peer source; `K` is what the driver hands found peers to (a
/// client's command sender).
#[derive(Debug)]
pub struct DhtSource<K> {
    tracked: BTreeMap<InfoHash, Tracked<K>>,
    /// Re-join through the bootstrap nodes at this time; `None` without bootstrap nodes.
    rebootstrap: Option<Instant>,
    /// A bootstrap or a lookup handed out and not answered yet.
    busy: bool,
}

impl<K> DhtSource<K> {
    /// A scheduler started at `now`; `bootstrap`: bootstrap nodes are known, to re-join
    /// through.
    pub fn new(now: Instant, bootstrap: bool) -> DhtSource<K> {
        DhtSource {
            tracked: BTreeMap::new(),
            rebootstrap: bootstrap.then(|| now + FIRST_REBOOTSTRAP),
            busy: false,
        }
    }

    /// Looks peers up for `info_hash` from `now` on, announcing `port` (0: look up only),
    /// handing found peers to `client`; replaces an earlier registration of the same
    /// info-hash. `false` when [`MAX_TRACKED`] other torrents are tracked.
    pub fn track(&mut self, now: Instant, info_hash: InfoHash, port: u16, client: K) -> bool {
        if self.tracked.len() >= MAX_TRACKED && !self.tracked.contains_key(&info_hash) {
            return false;
        }
        self.tracked.insert(
            info_hash,
            Tracked {
                port,
                client,
                next: now,
                backoff: FIRST_BACKOFF,
            },
        );
        true
    }

    /// Stops looking peers up for `info_hash`.
    pub fn untrack(&mut self, info_hash: &InfoHash) {
        self.tracked.remove(info_hash);
    }

    /// Torrents tracked.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// Whether no torrent is tracked.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// When [`DhtSource::poll`] next has something to do: the earliest due torrent; `None`
    /// when nothing is tracked or a job is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.busy {
            return None;
        }
        self.tracked.values().map(|t| t.next).min()
    }

    /// The next job at `now`, if any is due: a re-join through the bootstrap nodes first
    /// when that is due too, then the due torrent of the lowest info-hash. One job at a
    /// time: nothing until the outstanding one is answered.
    pub fn poll(&mut self, now: Instant) -> Option<DhtAction> {
        if self.busy {
            return None;
        }
        let (info_hash, port) = self
            .tracked
            .iter()
            .find(|(_, t)| t.next <= now)
            .map(|(h, t)| (*h, t.port))?;
        if self.rebootstrap.is_some_and(|at| at <= now) {
            self.rebootstrap = Some(now + REBOOTSTRAP);
            self.busy = true;
            return Some(DhtAction::Bootstrap);
        }
        self.busy = true;
        Some(DhtAction::Lookup { info_hash, port })
    }

    /// The re-join handed out by [`DhtSource::poll`] is done (whatever it found).
    pub fn bootstrap_done(&mut self) {
        self.busy = false;
    }

    /// The lookup for `info_hash` handed out by [`DhtSource::poll`] is done at `now`, with
    /// `result`; `announced`: peers announced to our node for it meanwhile. Returns the
    /// peers to hand over (deduplicated, at most [`MAX_FOUND`]) and to whom; `None` when
    /// there are none or the torrent is no longer tracked.
    pub fn lookup_done(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        result: LookupResult,
        announced: impl IntoIterator<Item = SocketAddr>,
    ) -> Option<(&K, Vec<SocketAddr>)> {
        self.busy = false;
        let t = self.tracked.get_mut(&info_hash)?;
        let mut found = result.peers;
        found.extend(announced);
        dedup_keep_order(&mut found);
        found.truncate(MAX_FOUND);
        if !result.failed && result.stored && !found.is_empty() {
            t.backoff = FIRST_BACKOFF;
            t.next = now + REFRESH;
        } else {
            t.next = now + t.backoff;
            t.backoff = (t.backoff * 2).min(MAX_BACKOFF);
        }
        (!found.is_empty()).then_some((&t.client, found))
    }

    /// A peer announced itself to our node for `info_hash`: whom to hand it to, when the
    /// torrent is tracked.
    pub fn peer_announced(&self, info_hash: &InfoHash) -> Option<&K> {
        self.tracked.get(info_hash).map(|t| &t.client)
    }

    /// Every tracked torrent's destination (for the driver to drop those that are gone).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.tracked.retain(|_, t| keep(&t.client));
    }
}

/// Removes repeated addresses, keeping the first of each (lookup peers before announced
/// ones).
fn dedup_keep_order(v: &mut Vec<SocketAddr>) {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|a| seen.insert(*a));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ih(b: u8) -> InfoHash {
        InfoHash([b; 20])
    }

    fn peer(p: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], p))
    }

    fn at(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn found(peers: &[u16]) -> LookupResult {
        LookupResult {
            peers: peers.iter().map(|p| peer(*p)).collect(),
            stored: true,
            failed: false,
        }
    }

    #[test]
    fn a_new_torrent_is_looked_up_at_once_and_again_after_the_refresh_once_peers_are_found() {
        let mut s: DhtSource<u8> = DhtSource::new(at(0), false);
        assert_eq!(s.poll(at(0)), None, "nothing tracked");
        s.track(at(0), ih(1), 6881, 7);
        assert_eq!(s.poll_timeout(), Some(at(0)));
        assert_eq!(
            s.poll(at(0)),
            Some(DhtAction::Lookup {
                info_hash: ih(1),
                port: 6881
            })
        );
        assert_eq!(s.poll(at(0)), None, "one lookup at a time");
        assert_eq!(s.poll_timeout(), None);
        let (to, peers) = s.lookup_done(at(3), ih(1), found(&[1, 2]), []).unwrap();
        assert_eq!((*to, peers), (7, vec![peer(1), peer(2)]));
        assert_eq!(s.poll_timeout(), Some(at(3) + REFRESH));
        assert_eq!(s.poll(at(302)), None);
        assert!(s.poll(at(303)).is_some());
    }

    #[test]
    fn lookups_that_find_nobody_back_off_2_4_8_up_to_60_seconds_and_reset_on_success() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        s.track(at(0), ih(1), 0, ());
        let mut now = at(0);
        let mut waits = Vec::new();
        for _ in 0..7 {
            assert!(s.poll(now).is_some());
            assert!(s.lookup_done(now, ih(1), found(&[]), []).is_none());
            let next = s.poll_timeout().unwrap();
            waits.push(next.saturating_duration_since(now).as_secs());
            now = next;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60]);
        // A failed lookup with peers in hand (say, announced to us) still backs off.
        assert!(s.poll(now).is_some());
        let failed = LookupResult {
            failed: true,
            ..found(&[1])
        };
        assert!(s.lookup_done(now, ih(1), failed, []).is_some());
        assert_eq!(s.poll_timeout(), Some(now + MAX_BACKOFF));
        now += MAX_BACKOFF;
        assert!(s.poll(now).is_some());
        s.lookup_done(now, ih(1), found(&[1]), []);
        now += REFRESH;
        assert!(s.poll(now).is_some());
        s.lookup_done(now, ih(1), found(&[]), []);
        assert_eq!(s.poll_timeout(), Some(now + FIRST_BACKOFF), "backoff reset");
    }

    #[test]
    fn an_announce_no_node_stored_is_retried_soon() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        s.track(at(0), ih(1), 6881, ());
        s.poll(at(0));
        let r = LookupResult {
            stored: false,
            ..found(&[1])
        };
        assert!(
            s.lookup_done(at(0), ih(1), r, []).is_some(),
            "peers still handed over"
        );
        assert_eq!(s.poll_timeout(), Some(at(2)));
    }

    #[test]
    fn found_peers_are_deduplicated_and_bounded() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        s.track(at(0), ih(1), 0, ());
        s.poll(at(0));
        let many: Vec<u16> = (1..=300).chain(1..=10).collect();
        let announced = [peer(5), peer(400)];
        let (_, peers) = s
            .lookup_done(at(1), ih(1), found(&many), announced)
            .unwrap();
        assert_eq!(peers.len(), MAX_FOUND);
        assert_eq!(peers[..3], [peer(1), peer(2), peer(3)]);
        let mut sorted = peers.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), peers.len(), "no peer twice");
    }

    #[test]
    fn due_torrents_take_turns_in_info_hash_order_and_a_new_registration_replaces_the_old() {
        let mut s: DhtSource<u8> = DhtSource::new(at(0), false);
        s.track(at(0), ih(2), 0, 2);
        s.track(at(0), ih(1), 0, 1);
        let Some(DhtAction::Lookup { info_hash, .. }) = s.poll(at(0)) else {
            panic!()
        };
        assert_eq!(info_hash, ih(1));
        s.lookup_done(at(0), ih(1), found(&[1]), []);
        let Some(DhtAction::Lookup { info_hash, port }) = s.poll(at(0)) else {
            panic!()
        };
        assert_eq!((info_hash, port), (ih(2), 0));
        // The magnet's fetch (port 0) is followed by the download, with a port: due at once.
        s.track(at(1), ih(2), 7000, 9);
        let to = s
            .lookup_done(at(1), ih(2), found(&[3]), [])
            .map(|(k, _)| *k);
        assert_eq!(to, Some(9), "found peers go to the new registration");
        assert_eq!(s.len(), 2);
        assert_eq!(s.peer_announced(&ih(2)), Some(&9));
        assert_eq!(s.peer_announced(&ih(3)), None);
        s.untrack(&ih(2));
        assert_eq!(s.peer_announced(&ih(2)), None);
    }

    #[test]
    fn a_lookup_answered_for_a_torrent_no_longer_tracked_frees_the_scheduler() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        s.track(at(0), ih(1), 0, ());
        s.track(at(0), ih(2), 0, ());
        s.poll(at(0));
        s.untrack(&ih(1));
        assert!(s.lookup_done(at(0), ih(1), found(&[1]), []).is_none());
        assert!(matches!(s.poll(at(0)), Some(DhtAction::Lookup { .. })));
    }

    #[test]
    fn with_bootstrap_nodes_a_due_lookup_rejoins_first_at_most_once_a_minute() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), true);
        s.track(at(0), ih(1), 0, ());
        assert!(matches!(s.poll(at(0)), Some(DhtAction::Lookup { .. })));
        s.lookup_done(at(0), ih(1), found(&[]), []);
        // Due again at 2, 6 (lookups only), then 14: past the first re-join at 10.
        let mut actions = Vec::new();
        for _ in 0..8 {
            let now = s.poll_timeout().unwrap();
            match s.poll(now).unwrap() {
                DhtAction::Bootstrap => {
                    actions.push((now.as_secs_f64() as u64, 'b'));
                    s.bootstrap_done();
                    assert!(matches!(s.poll(now), Some(DhtAction::Lookup { .. })));
                }
                DhtAction::Lookup { .. } => actions.push((now.as_secs_f64() as u64, 'l')),
            }
            s.lookup_done(now, ih(1), found(&[]), []);
        }
        assert_eq!(
            actions,
            [
                (2, 'l'),
                (6, 'l'),
                (14, 'b'),
                (30, 'l'),
                (62, 'l'),
                (122, 'b'),
                (182, 'b'),
                (242, 'b')
            ]
        );
        // Without bootstrap nodes, never.
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        s.track(at(100), ih(1), 0, ());
        assert!(matches!(s.poll(at(100)), Some(DhtAction::Lookup { .. })));
    }

    #[test]
    fn tracked_torrents_are_bounded_but_a_known_one_may_register_again() {
        let mut s: DhtSource<()> = DhtSource::new(at(0), false);
        for i in 0..MAX_TRACKED as u32 {
            let mut h = [0u8; 20];
            h[..4].copy_from_slice(&i.to_be_bytes());
            assert!(s.track(at(0), InfoHash(h), 0, ()));
        }
        assert!(!s.track(at(0), ih(0xff), 0, ()));
        assert!(s.track(at(0), InfoHash([0; 20]), 1, ()));
        assert_eq!(s.len(), MAX_TRACKED);
        s.retain(|_| false);
        assert!(s.is_empty());
    }
}
