//! The settings of a node.

use std::time::Duration;

use crate::wire::krpc;

/// Settings of a node. [`Config::default`] follows BEP 5 and common practice.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bucket size and the number of closest nodes a lookup converges on (8).
    pub k: usize,
    /// Parallel queries per lookup (3).
    pub alpha: usize,
    /// The longest we wait for any answer (1 s). A lookup query is considered late much
    /// earlier (see [`Config::min_query_timeout`]), but its answer is still taken until this.
    pub query_timeout: Duration,
    /// The floor of the adaptive timeout (100 ms). A lookup query unanswered after
    /// `srtt + 4·rttvar` (the node's own smoothed RTT when we have timed it, else the
    /// node-wide one; clamped to `[min_query_timeout, query_timeout]`) gives up its α slot
    /// and is retried (or the candidate is given up after `retries`).
    pub min_query_timeout: Duration,
    /// How many times an unanswered lookup query is sent again (3: with 10 % loss each way a
    /// query and its answer are lost together 19 % of the time, four tries 0.13 %).
    pub retries: u8,
    /// The token secret changes this often; tokens from the current and previous secret
    /// are accepted, so a token is valid for up to twice this (5 min: ~10 min validity).
    pub token_rotation: Duration,
    /// Announced peers are forgotten after this (30 min).
    pub peer_ttl: Duration,
    /// At most this many peers stored per info-hash (100).
    pub max_peers_per_hash: usize,
    /// At most this many info-hashes stored (10 000).
    pub max_hashes: usize,
    /// At most this many peers in one get_peers answer (50: about 450 bytes).
    pub max_values: usize,
    /// BEP 44 items stored at most (2000, each value ≤ 1000 bytes); then `put`s of new
    /// targets are refused with 202.
    pub max_items: usize,
    /// BEP 44 items are forgotten this long after their last `put` (2 h).
    pub item_ttl: Duration,
    /// Queries a single IPv4 address may send per second on average (20; loopback
    /// addresses are not limited).
    pub rate_per_ip: f64,
    /// ... and in a burst (40).
    pub burst_per_ip: f64,
    /// Addresses tracked by the rate limiter (4096).
    pub max_tracked_ips: usize,
    /// Lookups running at once; more are refused (64).
    pub max_lookups: usize,
    /// Queries of ours waiting for an answer (2048).
    pub max_pending: usize,
    /// Candidates a lookup remembers (64).
    pub max_candidates: usize,
    /// Periodic work (peer expiry, one bucket refresh) runs this often (60 s).
    pub maintenance: Duration,
    /// Keep nodes whose id does not fit their public address out of the table (BEP 42).
    pub enforce_bep42: bool,
    /// Take a BEP 42 id for our external address once this many different nodes (by IP)
    /// reported the same public address in the `ip` field of their answers (4; 0: never).
    pub bep42_votes: usize,
    /// Our client version (`v`), sent in every message.
    pub version: Option<[u8; 4]>,
    /// BEP 43 read-only node (a short-lived client): every query we send carries `ro=1`,
    /// so that other nodes keep us out of their tables, and queries to us are not answered.
    pub read_only: bool,
    /// Datagrams longer than this are dropped unread (4096; at least 512).
    pub max_datagram: usize,
    /// Apply the per-IP rate limit to loopback addresses too (off: every node of a loopback
    /// test or demo shares 127.0.0.1).
    pub limit_loopback: bool,
    /// Bytes per second (and burst) by which all answers to unverified sources together may
    /// exceed [`AMPLIFICATION`](super::AMPLIFICATION) times their queries (64 KiB). A source is verified once it
    /// answered one of our queries. Beyond the budget such an answer is cut to
    /// `AMPLIFICATION` times its query (peers, then a BEP 44 value, then nodes left out), so
    /// a flood with forged sender addresses cannot use us as an amplifier.
    pub unverified_reply_budget: usize,
    /// Nodes that queried us are pinged before they may enter the table; at most this many
    /// such pings wait for an answer at once (64).
    pub max_verify_pings: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            k: 8,
            alpha: 3,
            query_timeout: Duration::from_secs(1),
            min_query_timeout: Duration::from_millis(100),
            retries: 3,
            token_rotation: Duration::from_secs(300),
            peer_ttl: Duration::from_secs(30 * 60),
            max_peers_per_hash: 100,
            max_hashes: 10_000,
            max_values: 50,
            max_items: 2000,
            item_ttl: Duration::from_secs(2 * 3600),
            rate_per_ip: 20.0,
            burst_per_ip: 40.0,
            max_tracked_ips: 4096,
            max_lookups: 64,
            max_pending: 2048,
            max_candidates: 64,
            maintenance: Duration::from_secs(60),
            enforce_bep42: true,
            bep42_votes: 4,
            version: Some(*b"SV01"),
            read_only: false,
            max_datagram: krpc::MAX_DATAGRAM,
            limit_loopback: false,
            unverified_reply_budget: 64 * 1024,
            max_verify_pings: 64,
        }
    }
}
