//! How a client is set up: its settings ([`ClientConfig`]), its trackers
//! ([`TrackerEndpoint`]) and its peer id.
//! Part of the client core ([`super::Client`]).

use super::*;

/// How to reach one tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerEndpoint {
    /// The URL as written in the torrent.
    pub url: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// HTTP (with its `Host` header and path) or UDP.
    pub kind: TrackerKind,
}

/// The protocol of a tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackerKind {
    /// `http://host:port/path`.
    Http {
        /// `Host` header value.
        host: String,
        /// Path (and query) of the announce URL.
        path: String,
    },
    /// `udp://host:port`.
    Udp,
}

impl TrackerEndpoint {
    /// Parses `http://host[:port]/path` or `udp://host:port[/…]`, resolving the host with
    /// `resolve(host, port)` (the caller's DNS). `None` for other schemes (https needs TLS).
    pub fn parse(
        url: &str,
        resolve: impl Fn(&str, u16) -> Option<SocketAddr>,
    ) -> Option<TrackerEndpoint> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i)?, rest.get(i..)?),
            None => (rest, "/"),
        };
        let default_port = match scheme {
            "http" => 80,
            "udp" => return parse_udp(url, authority, &resolve),
            _ => return None,
        };
        let (host, port) = split_host_port(authority, default_port)?;
        Some(TrackerEndpoint {
            url: url.to_string(),
            addr: resolve(&host, port)?,
            kind: TrackerKind::Http {
                host: authority.to_string(),
                path: path.to_string(),
            },
        })
    }
}

fn parse_udp(
    url: &str,
    authority: &str,
    resolve: &impl Fn(&str, u16) -> Option<SocketAddr>,
) -> Option<TrackerEndpoint> {
    let (host, port) = split_host_port(authority, 0)?;
    if port == 0 {
        return None;
    }
    Some(TrackerEndpoint {
        url: url.to_string(),
        addr: resolve(&host, port)?,
        kind: TrackerKind::Udp,
    })
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

/// Settings of a client.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Our peer id.
    pub peer_id: [u8; 20],
    /// The port we accept peers on (announced to trackers and in the extension handshake).
    pub listen_port: u16,
    /// Tracker tiers.
    pub trackers: Vec<Vec<TrackerEndpoint>>,
    /// Most connected peers, handshaking ones included (more are refused at once; while full,
    /// the oldest inbound connection that has not handshaken makes room).
    pub max_peers: usize,
    /// Most connections from one IP address (more from it are refused at once).
    pub max_peers_per_ip: usize,
    /// A connection whose BitTorrent handshake (MSE included) is not done within this is
    /// closed (slowloris).
    pub handshake_timeout: Duration,
    /// A peer that sends nothing at all, not even a keep-alive, for this long is closed
    /// (peers send keep-alives every 2 minutes).
    pub idle_timeout: Duration,
    /// Most connection attempts at once.
    pub max_half_open: usize,
    /// Peers unchoked at once, the optimistic one included.
    pub upload_slots: usize,
    /// Time between choke rounds.
    pub choke_interval: Duration,
    /// Every this many rounds the optimistic unchoke moves on.
    pub optimistic_rounds: u32,
    /// A request unanswered this long is given to someone else.
    pub request_timeout: Duration,
    /// Most requests outstanding to one peer.
    pub max_requests: usize,
    /// Hand disk work (block writes and reads, piece hashes, flushes) to the caller as
    /// [`ClientEvent::Disk`] jobs instead of doing it inline on the storage (see
    /// [`disk`](self::disk)); off by default (the simulator and tests run inline).
    pub disk_jobs: bool,
    /// With `disk_jobs`: bytes of pieces held in memory (received blocks, stores not yet
    /// written) past which no new piece is started; at least one piece always may.
    pub disk_memory: u64,
    /// Stay after completion (else leave as soon as every piece is verified).
    pub seed: bool,
    /// Stop seeding at this upload/size ratio.
    pub seed_ratio: Option<f64>,
    /// Stop seeding after this long.
    pub seed_time: Option<Duration>,
    /// Upload limit in bytes per second.
    pub upload_limit: Option<u64>,
    /// Download limit in bytes per second.
    pub download_limit: Option<u64>,
    /// Peers asked of trackers.
    pub numwant: u32,
    /// Bad pieces a peer may contribute to before it is banned.
    pub ban_strikes: u32,
    /// Our client name (extension handshake `v`).
    pub client_name: String,
    /// Message Stream Encryption policy.
    pub encryption: Encryption,
    /// Super-seeding (BEP 16 style) while we are a seed: announce no pieces, reveal a few to
    /// each peer (the ones revealed least so far) and a new one when the peer reports it
    /// has one, so the seeder's upload goes to pieces the swarm lacks.
    pub super_seed: bool,
}

impl ClientConfig {
    /// Defaults for peer id `peer_id` listening on `listen_port`.
    pub fn new(peer_id: [u8; 20], listen_port: u16) -> ClientConfig {
        ClientConfig {
            peer_id,
            listen_port,
            trackers: Vec::new(),
            max_peers: 60,
            max_peers_per_ip: 16,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            max_half_open: 16,
            upload_slots: 4,
            choke_interval: Duration::from_secs(10),
            optimistic_rounds: 3,
            request_timeout: Duration::from_secs(30),
            max_requests: 500,
            disk_jobs: false,
            disk_memory: MAX_HELD_BYTES,
            seed: true,
            seed_ratio: None,
            seed_time: None,
            upload_limit: None,
            download_limit: None,
            numwant: 50,
            ban_strikes: 2,
            client_name: concat!("servent ", env!("CARGO_PKG_VERSION")).to_string(),
            encryption: Encryption::Plaintext,
            super_seed: false,
        }
    }
}

/// A peer id in Azureus style: `-SV0100-` and 12 random bytes from `rng`.
pub fn make_peer_id(rng: &mut Rng) -> [u8; 20] {
    let mut id = *b"-SV0100-000000000000";
    for b in id.iter_mut().skip(8) {
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"
            .get(rng.below(36) as usize)
            .copied()
            .unwrap_or(b'0');
    }
    id
}
