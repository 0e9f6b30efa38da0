//! The Chord node and client over real UDP sockets, on `servent-runtime`'s tokio driver
//! (compiled with the `runtime` feature only).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use servent_core::{Id, Instant, Ring, Rng};
use servent_runtime::driver::{DriverError, NodeConfig, NodeHandle, spawn};

use crate::core::{ChordNode, Command, Config, Event, FailReason, Limits, node_id};
use crate::wire::NodeRef;

/// How long a client waits for one command's answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong driving Chord over sockets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChordError {
    /// The driver could not start or has stopped.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// `--bits` outside 1..=160.
    #[error("ring bits must be between 1 and 160, got {0}")]
    BadBits(u32),
    /// `--id` is not below 2^m.
    #[error("the id is outside the ring of {0} bits")]
    IdOutOfRange(u32),
    /// The command failed.
    #[error("{}", fail_text(*.0))]
    Failed(FailReason),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The OS random source failed.
    #[error(transparent)]
    Random(#[from] servent_runtime::OsRandomError),
}

/// The node's generator: from `seed` in tests, from the OS CSPRNG otherwise (transaction
/// ids are what lets a node tell a forged answer from a real one).
fn node_rng(seed: Option<u64>) -> Result<Rng, ChordError> {
    Ok(match seed {
        Some(s) => Rng::new(s),
        None => servent_runtime::os_rng()?,
    })
}

fn fail_text(r: FailReason) -> String {
    match r {
        FailReason::Unreachable => {
            "no answer: the node (or every node that could help) did not reply".into()
        }
        FailReason::TooManyHops => {
            "the lookup exceeded the hop limit (stale routing tables?)".into()
        }
        FailReason::Busy => "too many requests in progress".into(),
        FailReason::TooLarge => {
            "key or value too large (keys up to 1024 bytes, values up to 8192)".into()
        }
        FailReason::IdTaken => "another node already has this id".into(),
        FailReason::NotMember => "this node is not a ring member".into(),
        FailReason::Refused => "the responsible node refused to store (its store is full)".into(),
        FailReason::WrongRing { ours, theirs } => format!(
            "the ring has m = {theirs} bits but this node was started with --bits {ours}: \
             use --bits {theirs} to join it"
        ),
        FailReason::RateLimited => {
            "the node refused: this address exceeded its request rate (retry later)".into()
        }
    }
}

/// How to run a ring member.
#[derive(Clone, Debug)]
pub struct MemberOpts {
    /// UDP address to bind (port 0 picks one).
    pub listen: SocketAddr,
    /// Ring members to join through, tried in order; empty creates a new ring.
    pub bootstrap: Vec<SocketAddr>,
    /// m.
    pub bits: u32,
    /// The node's id; `None` hashes its address.
    pub id: Option<Id>,
    /// Successor list length r.
    pub succ_list_len: usize,
    /// Periods of stabilize and fix_fingers.
    pub stabilize_every: Duration,
    /// Period of fix_fingers.
    pub fix_fingers_every: Duration,
    /// The RNG seed (transaction ids, timer phases, map keys) for reproducible tests;
    /// `None` (the default, and every real run) draws it from the OS CSPRNG.
    pub seed: Option<u64>,
    /// What the node accepts from peers.
    pub limits: Limits,
}

impl MemberOpts {
    /// Defaults: m = 160, r = 8, stabilize every 500 ms, fix a finger every 100 ms.
    pub fn new(listen: SocketAddr) -> MemberOpts {
        MemberOpts {
            listen,
            bootstrap: Vec::new(),
            bits: 160,
            id: None,
            succ_list_len: 8,
            stabilize_every: Duration::from_millis(500),
            fix_fingers_every: Duration::from_millis(100),
            seed: None,
            limits: Limits::default(),
        }
    }
}

/// A ring member running on its own task.
#[derive(Debug)]
pub struct Member {
    /// The driver handle (commands in, events out).
    pub handle: NodeHandle<ChordNode>,
    /// Who we are.
    pub me: NodeRef,
    /// The bootstrap node the join went through (`None`: a new ring).
    pub joined_via: Option<SocketAddr>,
    next_cmd: u64,
}

/// Starts a member: creates a ring, or joins one and waits for the join to complete.
pub async fn start_member(opts: MemberOpts) -> Result<Member, ChordError> {
    let ring = Ring::new(opts.bits).ok_or(ChordError::BadBits(opts.bits))?;
    if let Some(id) = opts.id {
        if ring.reduce(&id) != id {
            return Err(ChordError::IdOutOfRange(opts.bits));
        }
    }
    let rng = node_rng(opts.seed)?;
    let o = opts.clone();
    let handle = spawn(
        NodeConfig {
            udp: Some(opts.listen),
            ..NodeConfig::default()
        },
        move |local| {
            let addr = local.udp.unwrap_or(o.listen);
            let id =
                o.id.map(|i| ring.reduce(&i))
                    .unwrap_or_else(|| node_id(ring, addr));
            let mut cfg = Config::new(ring, id, addr);
            cfg.succ_list_len = o.succ_list_len.max(1);
            cfg.stabilize_every = o.stabilize_every;
            cfg.fix_fingers_every = o.fix_fingers_every;
            o.limits.apply(&mut cfg);
            let mut node = ChordNode::new(cfg, rng);
            if o.bootstrap.is_empty() {
                node.create(Instant::ZERO);
            }
            node
        },
    )
    .await?;
    let addr = handle.local.udp.unwrap_or(opts.listen);
    let id = opts
        .id
        .map(|i| ring.reduce(&i))
        .unwrap_or_else(|| node_id(ring, addr));
    let mut m = Member {
        handle,
        me: NodeRef { id, addr },
        next_cmd: 1,
        joined_via: None,
    };
    // Each bootstrap node in turn; the first answer that is not a silence decides (a ring
    // of another size or a taken id is not cured by asking elsewhere in the same ring).
    let mut first_err = None;
    for via in opts.bootstrap.iter().copied() {
        let cid = m.next_cmd;
        m.next_cmd += 1;
        m.handle.command(Command::Join { id: cid, via }).await?;
        match wait_for(&mut m.handle, cid, CLIENT_TIMEOUT).await {
            Ok(_) => {
                m.joined_via = Some(via);
                return Ok(m);
            }
            Err(e @ (ChordError::Timeout(_) | ChordError::Failed(FailReason::Unreachable))) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                let _ = m.handle.shutdown().await;
                return Err(e);
            }
        }
    }
    match first_err {
        Some(e) => {
            let _ = m.handle.shutdown().await;
            Err(e)
        }
        None => Ok(m),
    }
}

impl Member {
    /// Hands the keys over, tells the neighbours, and stops.
    pub async fn leave(mut self) -> Result<ChordNode, ChordError> {
        let cid = self.next_cmd;
        self.handle.command(Command::Leave { id: cid }).await?;
        let _ = wait_for(&mut self.handle, cid, Duration::from_secs(5)).await;
        Ok(self.handle.shutdown().await?)
    }

    /// Stops abruptly, as a crash would (no hand-over).
    pub async fn kill(self) -> Result<(), ChordError> {
        self.handle.shutdown().await?;
        Ok(())
    }
}

/// Waits for the completion event of command `id`, passing over other events.
async fn wait_for(
    h: &mut NodeHandle<ChordNode>,
    id: u64,
    limit: Duration,
) -> Result<Event, ChordError> {
    let fut = async {
        while let Some(e) = h.next_event().await {
            if event_id(&e) == Some(id) {
                return match e {
                    Event::Failed { reason, .. } => Err(ChordError::Failed(reason)),
                    e => Ok(e),
                };
            }
        }
        Err(ChordError::Driver(DriverError::Stopped))
    };
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ChordError::Timeout(limit))?
}

fn event_id(e: &Event) -> Option<u64> {
    Some(match e {
        Event::Joined { id, .. }
        | Event::LookupDone { id, .. }
        | Event::Stored { id, .. }
        | Event::Got { id, .. }
        | Event::Deleted { id, .. }
        | Event::FingerTable { id, .. }
        | Event::NeighborList { id, .. }
        | Event::StatsReport { id, .. }
        | Event::Left { id }
        | Event::Failed { id, .. } => *id,
    })
}

/// A lookup's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupResult {
    /// The key, reduced mod 2^m.
    pub key: Id,
    /// The nodes visited, the entry node first, the key's predecessor last.
    pub route: Vec<Id>,
    /// The key's successor.
    pub responsible: NodeRef,
}

/// A node's finger table as fetched from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FingerTable {
    /// The node.
    pub node: NodeRef,
    /// m.
    pub bits: u32,
    /// (entry number from 1, start, node).
    pub rows: Vec<(u32, Id, Option<NodeRef>)>,
}

/// A node's counters as fetched from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteStats {
    /// The node.
    pub node: NodeRef,
    /// Its ring's m.
    pub bits: u32,
    /// Its predecessor.
    pub pred: Option<NodeRef>,
    /// (name, value), in the order of [`crate::wire::STAT_NAMES`].
    pub values: Vec<(&'static str, u64)>,
}

/// A one-shot client that is not a ring member: it talks to any node it is pointed at.
#[derive(Debug)]
pub struct Client {
    handle: NodeHandle<ChordNode>,
    next_cmd: u64,
    timeout: Duration,
}

impl Client {
    /// A client on an ephemeral UDP port of the same family as `peer` (loopback when
    /// `peer` is loopback).
    pub async fn new(peer: SocketAddr) -> Result<Client, ChordError> {
        let ip = match peer.ip() {
            IpAddr::V4(v) if v.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(v) if v.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let bind = SocketAddr::new(ip, 0);
        let rng = node_rng(None)?;
        let handle = spawn(
            NodeConfig {
                udp: Some(bind),
                ..NodeConfig::default()
            },
            move |local| ChordNode::new(Config::client(local.udp.unwrap_or(bind)), rng),
        )
        .await?;
        Ok(Client {
            handle,
            next_cmd: 1,
            timeout: CLIENT_TIMEOUT,
        })
    }

    /// How long each command waits for its answer (default [`CLIENT_TIMEOUT`]).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    async fn run(&mut self, make: impl FnOnce(u64) -> Command) -> Result<Event, ChordError> {
        let id = self.next_cmd;
        self.next_cmd += 1;
        self.handle.command(make(id)).await?;
        wait_for(&mut self.handle, id, self.timeout).await
    }

    /// `find_successor(key)` starting at `node`.
    pub async fn lookup(&mut self, node: SocketAddr, key: Id) -> Result<LookupResult, ChordError> {
        match self
            .run(|id| Command::Lookup {
                id,
                key,
                start: Some(node),
            })
            .await?
        {
            Event::LookupDone {
                key,
                route,
                responsible,
                ..
            } => Ok(LookupResult {
                key,
                route,
                responsible,
            }),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// The finger table of `node`.
    pub async fn fingers(&mut self, node: SocketAddr) -> Result<FingerTable, ChordError> {
        match self.run(|id| Command::Fingers { id, node }).await? {
            Event::FingerTable {
                node,
                bits,
                entries,
                ..
            } => {
                let ring = Ring::new(u32::from(bits)).ok_or(ChordError::BadBits(bits.into()))?;
                let rows = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| (i as u32 + 1, ring.add_pow2(&node.id, i as u32), e))
                    .collect();
                Ok(FingerTable {
                    node,
                    bits: ring.bits(),
                    rows,
                })
            }
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// The counters of `node`, named (see [`crate::wire::STAT_NAMES`]).
    pub async fn stats(&mut self, node: SocketAddr) -> Result<RemoteStats, ChordError> {
        match self.run(|id| Command::Stats { id, node }).await? {
            Event::StatsReport {
                node,
                bits,
                pred,
                values,
                ..
            } => Ok(RemoteStats {
                node,
                bits: u32::from(bits),
                pred,
                values: crate::wire::STAT_NAMES
                    .iter()
                    .zip(values)
                    .map(|(k, v)| (*k, v))
                    .collect(),
            }),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// The predecessor and successor list of `node`.
    pub async fn neighbors(
        &mut self,
        node: SocketAddr,
    ) -> Result<(NodeRef, Option<NodeRef>, Vec<NodeRef>), ChordError> {
        match self.run(|id| Command::Neighbors { id, node }).await? {
            Event::NeighborList {
                node, pred, succs, ..
            } => Ok((node, pred, succs)),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// The ring, walked along successors from `node` (at most `max` nodes).
    pub async fn ring(&mut self, node: SocketAddr, max: usize) -> Result<Vec<NodeRef>, ChordError> {
        let (first, _, succs) = self.neighbors(node).await?;
        let mut out = vec![first];
        let mut next = succs.first().copied();
        while let Some(n) = next {
            if n.id == first.id || out.len() >= max {
                break;
            }
            out.push(n);
            next = match self.neighbors(n.addr).await {
                Ok((_, _, s)) => s.first().copied(),
                Err(_) => None,
            };
        }
        Ok(out)
    }

    /// Stores a pair, starting the lookup at `node`.
    pub async fn put(
        &mut self,
        node: SocketAddr,
        key: &[u8],
        value: &[u8],
    ) -> Result<NodeRef, ChordError> {
        let (key, value) = (key.to_vec(), value.to_vec());
        match self
            .run(|id| Command::Put {
                id,
                key,
                value,
                start: Some(node),
            })
            .await?
        {
            Event::Stored { node, .. } => Ok(node),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// Fetches a value, starting the lookup at `node`.
    pub async fn get(
        &mut self,
        node: SocketAddr,
        key: &[u8],
    ) -> Result<(Option<Vec<u8>>, NodeRef), ChordError> {
        let key = key.to_vec();
        match self
            .run(|id| Command::Get {
                id,
                key,
                start: Some(node),
            })
            .await?
        {
            Event::Got { value, node, .. } => Ok((value, node)),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// Deletes a key, starting the lookup at `node`; whether it existed.
    pub async fn delete(&mut self, node: SocketAddr, key: &[u8]) -> Result<bool, ChordError> {
        let key = key.to_vec();
        match self
            .run(|id| Command::Delete {
                id,
                key,
                start: Some(node),
            })
            .await?
        {
            Event::Deleted { existed, .. } => Ok(existed),
            _ => Err(ChordError::Failed(FailReason::Unreachable)),
        }
    }

    /// Stops the client's task and socket.
    pub async fn close(self) -> Result<(), ChordError> {
        self.handle.shutdown().await?;
        Ok(())
    }
}

/// An id as the lecture prints it: decimal on rings of up to 64 bits, hex otherwise.
pub fn fmt_id(bits: u32, id: &Id) -> String {
    if bits <= 64 {
        id.low_u64().to_string()
    } else {
        id.to_string()
    }
}
