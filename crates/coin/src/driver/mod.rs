//! The real node: the sans-IO [`Node`] on servent-runtime's tokio driver (TCP listener and
//! dialer), the chain [`Store`] on its own blocking thread completing the node's requests in
//! order, a redial loop for the configured peers, and the JSON-RPC server ([`rpc`]).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod rpc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use servent_runtime::NodeConfig as DriverConfig;
use tokio::sync::{mpsc, oneshot};

use crate::Params;
use crate::core::node::{Command, Event, Node, NodeConfig};
use crate::store::node::{active_headers, serve};
use crate::store::{Store, StoreError};

/// What to run.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub params: Params,
    pub listen: SocketAddr,
    pub data: PathBuf,
    pub peers: Vec<SocketAddr>,
    pub rpc: Option<SocketAddr>,
    /// How often the configured peers are dialed again when not connected.
    pub redial: Duration,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("data directory {0}: {1}")]
    Data(PathBuf, std::io::Error),
    #[error("chain store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Driver(#[from] servent_runtime::DriverError),
    #[error("os randomness: {0}")]
    Random(#[from] servent_runtime::OsRandomError),
    #[error("cannot bind the RPC port {0}: {1}")]
    RpcBind(SocketAddr, std::io::Error),
    #[error("the store does not hold a chain of this network")]
    WrongChain,
    #[error("the node has stopped")]
    Stopped,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Work for the store thread: the node's requests, or reads for RPC (run between them, so
/// they see a consistent chain).
enum Job {
    Node(crate::core::node::Request),
    Read(Box<dyn FnOnce(&Store) + Send>),
}

/// Ask the node and wait for the event answering `id`.
#[derive(Clone)]
pub struct Api {
    commands: mpsc::Sender<Command>,
    store: mpsc::Sender<Job>,
    waiters: Arc<Mutex<BTreeMap<u64, oneshot::Sender<Event>>>>,
    next: Arc<AtomicU64>,
    pub params: Params,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

impl Api {
    /// Send the command `make(id)` and wait (at most 60 s) for its answer.
    pub async fn ask(&self, make: impl FnOnce(u64) -> Command) -> Result<Event, NodeError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(id, tx);
        }
        self.commands
            .send(make(id))
            .await
            .map_err(|_| NodeError::Stopped)?;
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(e)) => Ok(e),
            _ => {
                if let Ok(mut w) = self.waiters.lock() {
                    w.remove(&id);
                }
                Err(NodeError::Stopped)
            }
        }
    }
    /// Run `f` on the store thread and return what it gives.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Read(Box::new(move |s: &Store| {
            let _ = tx.send(f(s));
        }));
        self.store.send(job).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }
    pub async fn command(&self, c: Command) -> Result<(), NodeError> {
        self.commands.send(c).await.map_err(|_| NodeError::Stopped)
    }
}

fn event_id(e: &Event) -> Option<u64> {
    match e {
        Event::TxResult { id, .. }
        | Event::BlockResult { id, .. }
        | Event::Info { id, .. }
        | Event::Peers { id, .. }
        | Event::Template { id, .. }
        | Event::MempoolTx { id, .. }
        | Event::MempoolTxids { id, .. } => Some(*id),
        _ => None,
    }
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    pub p2p: SocketAddr,
    pub rpc: Option<SocketAddr>,
    pub api: Api,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningNode {
    /// Wait until the node stops (it runs until the process ends).
    pub async fn wait(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Open the store under `opts.data`, start the node, dial the peers, serve RPC.
pub async fn start(opts: NodeOptions) -> Result<RunningNode, NodeError> {
    std::fs::create_dir_all(&opts.data).map_err(|e| NodeError::Data(opts.data.clone(), e))?;
    let path = opts.data.join("chain.redb");
    let params = opts.params.clone();
    let (store, headers) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        let store = Store::open(&path, params)?;
        let headers = active_headers(&store)?;
        Ok((store, headers))
    })
    .await
    .map_err(|_| NodeError::Stopped)??;
    let rng = servent_runtime::os_rng()?;
    let cfg = NodeConfig {
        listen_port: opts.listen.port(),
        unix_at_zero: unix_now(),
        dial_from_table: true,
        ..NodeConfig::default()
    };
    let node = Node::new(cfg, opts.params.clone(), &headers, rng).ok_or(NodeError::WrongChain)?;
    let mut handle = servent_runtime::spawn(
        DriverConfig {
            tcp: Some(opts.listen),
            max_connections: 256,
            ..DriverConfig::default()
        },
        move |_| node,
    )
    .await?;
    let p2p = handle.local.tcp.unwrap_or(opts.listen);
    let commands = handle.commander();
    let (req_tx, mut req_rx) = mpsc::channel::<Job>(4096);
    let api = Api {
        commands: commands.clone(),
        store: req_tx.clone(),
        waiters: Arc::new(Mutex::new(BTreeMap::new())),
        next: Arc::new(AtomicU64::new(1)),
        params: opts.params.clone(),
    };

    // The store thread: requests in, replies back in the same order.
    let replies = commands.clone();
    std::thread::Builder::new()
        .name("coin-store".into())
        .spawn(move || {
            let mut store = store;
            while let Some(job) = req_rx.blocking_recv() {
                match job {
                    Job::Node(req) => {
                        let reply = serve(&mut store, req, unix_now());
                        if replies.blocking_send(Command::StoreDone(reply)).is_err() {
                            return;
                        }
                    }
                    Job::Read(f) => f(&store),
                }
            }
        })
        .map_err(|e| NodeError::Data(opts.data.clone(), e))?;

    let waiters = api.waiters.clone();
    let events = tokio::spawn(async move {
        while let Some(e) = handle.next_event().await {
            match e {
                Event::Store(req) => {
                    if req_tx.send(Job::Node(req)).await.is_err() {
                        return;
                    }
                }
                Event::Tip { height, hash } => {
                    tracing::info!(height, hash = %crate::hash_hex(&hash), "tip");
                }
                Event::Banned { ip, reason } => tracing::warn!(%ip, %reason, "banned"),
                other => {
                    if let Some(id) = event_id(&other) {
                        let w = waiters.lock().ok().and_then(|mut w| w.remove(&id));
                        if let Some(w) = w {
                            let _ = w.send(other);
                        }
                    }
                }
            }
        }
    });
    let peers = opts.peers.clone();
    let redial_every = opts.redial;
    let redial_cmds = commands.clone();
    let redial = tokio::spawn(async move {
        loop {
            for p in &peers {
                if redial_cmds.send(Command::Connect(*p)).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(redial_every).await;
        }
    });
    let mut tasks = vec![events, redial];
    let mut rpc_addr = None;
    if let Some(addr) = opts.rpc {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| NodeError::RpcBind(addr, e))?;
        rpc_addr = listener.local_addr().ok();
        tasks.push(tokio::spawn(rpc::serve(listener, api.clone())));
    }
    Ok(RunningNode {
        p2p,
        rpc: rpc_addr,
        api,
        tasks,
    })
}
