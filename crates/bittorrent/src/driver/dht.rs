//! The DHT peer source's I/O: a Kademlia node (servent-kademlia's [`DhtClient`]) on a UDP
//! socket, run by one task that does what the sans-IO [`DhtSource`] schedules — lookups and
//! announces for the tracked torrents, re-joins through the bootstrap nodes — and hands the
//! peers found to each torrent's client core as [`ClientCommand::AddPeers`]. The node's id
//! and routing table are loaded from the state file on start and saved to it (atomically:
//! temporary file, fsync, rename, fsync of the folder) on [`DhtPeerSource::stop`], so a later
//! run rejoins without bootstrap nodes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use servent_core::{Id, Instant, Rng};
use servent_kademlia::Event as DhtEvent;
use servent_kademlia::client::{ClientError, ClientOpts, DhtClient};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::client::ClientCommand;
use crate::core::dht_source::{DhtAction, DhtSource, LookupResult};
use crate::metainfo::InfoHash;

/// How long one DHT lookup, announce or join may take.
pub const DHT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`DhtPeerSource::stop`] waits for the node to save its state.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Why the DHT peer source did not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DhtSourceError {
    /// The state folder could not be created.
    #[error("creating the state folder {path}: {source}")]
    StateDir {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The node did not start (the socket, the state file).
    #[error("starting the DHT node on {listen}: {source}")]
    Start {
        /// The UDP address asked for.
        listen: SocketAddr,
        /// The error.
        source: ClientError,
    },
}

/// How to run the DHT node.
#[derive(Clone, Debug)]
pub struct DhtSourceOpts {
    /// Our UDP address.
    pub listen: SocketAddr,
    /// The state file (id and routing table), its folder created when missing; `None`:
    /// nothing is kept.
    pub state: Option<PathBuf>,
    /// Nodes to join through, now and again later while lookups find nobody.
    pub bootstrap: Vec<SocketAddr>,
    /// The node's randomness (its id when no state is saved, transaction ids).
    pub rng: Rng,
}

/// A torrent registration for the task.
struct Track {
    info_hash: InfoHash,
    port: u16,
    client: mpsc::Sender<ClientCommand>,
}

type Stop = Arc<Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>>;

/// The DHT node shared by every torrent of one run: clone it into each torrent's task,
/// [`DhtPeerSource::track`] each torrent, [`DhtPeerSource::stop`] once at the end.
#[derive(Clone, Debug)]
pub struct DhtPeerSource {
    tracks: mpsc::Sender<Track>,
    stop: Stop,
    /// The node's UDP address.
    pub local: SocketAddr,
    /// Nodes in the routing table after the first join.
    pub joined: usize,
}

/// Resolves `HOST:PORT` names (a torrent's `nodes`) to at most four IPv4 addresses each; a
/// name that does not resolve is skipped with a warning (the torrent's author chose it).
pub async fn resolve_nodes(nodes: &[(String, u16)]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for (h, p) in nodes {
        let name = format!("{h}:{p}");
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(a) => out.extend(a.filter(SocketAddr::is_ipv4).take(4)),
            Err(e) => tracing::warn!("DHT node {name}: {e}"),
        }
    }
    out
}

impl DhtPeerSource {
    /// Starts the node: creates the state folder, loads the state file, binds the socket,
    /// joins through the bootstrap nodes (a join that reaches nobody is only warned of:
    /// lookups start anyway and the task joins again later), then runs the task.
    pub async fn start(opts: DhtSourceOpts) -> Result<DhtPeerSource, DhtSourceError> {
        if let Some(dir) = opts
            .state
            .as_deref()
            .and_then(std::path::Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| DhtSourceError::StateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut o = ClientOpts::with_rng(opts.listen, opts.rng);
        o.state = opts.state;
        o.timeout = DHT_TIMEOUT;
        let mut client = DhtClient::start(o)
            .await
            .map_err(|source| DhtSourceError::Start {
                listen: opts.listen,
                source,
            })?;
        let local = client.local;
        let boot = opts.bootstrap;
        let joined = client.bootstrap(boot.clone()).await.unwrap_or(0);
        if joined == 0 {
            tracing::warn!(?boot, "no DHT node answered yet; looking up anyway");
        }
        tracing::info!("dht: node on udp {local}, {joined} nodes in the routing table");
        let (tx, rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(run(client, rx, stop_rx, boot));
        Ok(DhtPeerSource {
            tracks: tx,
            stop: Arc::new(Mutex::new(Some((stop_tx, task)))),
            local,
            joined,
        })
    }

    /// Looks peers up for `info_hash` from now on, announcing our TCP `port` (0: look up
    /// only, as while fetching a magnet's metadata), handing found peers to `client` (a
    /// client node's commander); replaces an earlier registration of the same info-hash.
    pub async fn track(&self, info_hash: InfoHash, port: u16, client: mpsc::Sender<ClientCommand>) {
        let _ = self
            .tracks
            .send(Track {
                info_hash,
                port,
                client,
            })
            .await;
    }

    /// Stops the node and saves its state file (waiting at most 5 s); later calls, from any
    /// clone, do nothing.
    pub async fn stop(&self) {
        let taken = self.stop.lock().ok().and_then(|mut g| g.take());
        if let Some((tx, task)) = taken {
            let _ = tx.send(());
            let _ = tokio::time::timeout(STOP_WAIT, task).await;
        }
    }
}

/// The task: registrations in, scheduler jobs out to the node, found peers to the clients.
async fn run(
    mut dht: DhtClient,
    mut tracks: mpsc::Receiver<Track>,
    mut stop: oneshot::Receiver<()>,
    boot: Vec<SocketAddr>,
) {
    let origin = tokio::time::Instant::now();
    let now = || {
        let d = origin.elapsed();
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    };
    let at = |t: Instant| origin + Duration::from_micros(t.as_micros());
    let mut source: DhtSource<mpsc::Sender<ClientCommand>> =
        DhtSource::new(now(), !boot.is_empty());
    let far = Duration::from_secs(3600);
    loop {
        let due = source
            .poll_timeout()
            .map_or_else(|| tokio::time::Instant::now() + far, at);
        tokio::select! {
            _ = &mut stop => break,
            t = tracks.recv() => match t {
                Some(t) => {
                    // Clients that are gone free their places first.
                    source.retain(|c| !c.is_closed());
                    if !source.track(now(), t.info_hash, t.port, t.client) {
                        tracing::warn!(info_hash = %t.info_hash, "dht: too many torrents tracked");
                    }
                }
                None => break,
            },
            ev = dht.next_event() => match ev {
                Some(DhtEvent::PeerAnnounced { info_hash, peer }) => {
                    if let Some(c) = source.peer_announced(&InfoHash(info_hash.0)) {
                        let _ = c.try_send(ClientCommand::AddPeers { id: 0, peers: vec![SocketAddr::V4(peer)] });
                    }
                }
                Some(_) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(due) => {
                while let Some(action) = source.poll(now()) {
                    match action {
                        DhtAction::Bootstrap => {
                            // A node that found nobody at start (bootstrap node not up yet)
                            // tries again.
                            let joined = tokio::select! {
                                r = dht.bootstrap(boot.clone()) => r.unwrap_or(0),
                                _ = &mut stop => return shutdown(dht).await,
                            };
                            tracing::debug!(joined, "dht re-bootstrap");
                            source.bootstrap_done();
                        }
                        DhtAction::Lookup { info_hash, port } => {
                            let id = Id(info_hash.0);
                            let r = tokio::select! {
                                r = async {
                                    if port != 0 {
                                        dht.announce(id, port, false).await.map(|(stored, p)| (p, stored > 0))
                                    } else {
                                        dht.get_peers(id).await.map(|f| (f.peers, true))
                                    }
                                } => r,
                                _ = &mut stop => return shutdown(dht).await,
                            };
                            let result = match r {
                                Ok((peers, stored)) => LookupResult {
                                    peers: peers.into_iter().map(SocketAddr::V4).collect(),
                                    stored,
                                    failed: false,
                                },
                                Err(e) => {
                                    tracing::debug!("dht lookup: {e}");
                                    LookupResult { failed: true, ..LookupResult::default() }
                                }
                            };
                            let announced: Vec<SocketAddr> = dht
                                .take_announced()
                                .into_iter()
                                .filter(|(h, _)| h.0 == info_hash.0)
                                .map(|(_, p)| SocketAddr::V4(p))
                                .collect();
                            let found = source.lookup_done(now(), info_hash, result, announced);
                            tracing::debug!(%info_hash, peers = found.as_ref().map_or(0, |f| f.1.len()), "dht lookup");
                            if let Some((client, peers)) = found {
                                let _ = client.try_send(ClientCommand::AddPeers { id: 0, peers });
                            }
                            // One lookup per wake-up, as registrations and events wait.
                            break;
                        }
                    }
                }
            }
        }
    }
    shutdown(dht).await;
}

/// Stops the node, saving its state file.
async fn shutdown(dht: DhtClient) {
    if let Err(e) = dht.shutdown().await {
        tracing::warn!("dht: saving the routing table: {e}");
    }
}
