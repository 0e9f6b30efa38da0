//! An in-memory network of [`Client`]s: real cores, virtual time that jumps to the next
//! timer when nothing moves, and disk jobs completed by the test's own policy.
//!
//! Tests read as scenarios: [`Harness::add`] clients (each on a [`SharedMem`] the harness
//! shares with it, as the driver shares its files), give commands, [`Harness::drive`],
//! then assert on each [`Node`]'s events, counters and content. Bytes are delivered at once
//! and in order; a client with [`ClientConfig::disk_jobs`](crate::client::ClientConfig)
//! hands its jobs to the harness, which holds them until the policy given to `drive` says
//! how many to answer (newest first, so answers come out of order). A client without it
//! does its disk work inline, as in the simulator.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Transmit};

use crate::client::{Client, ClientCommand, ClientEvent, DiskJob};
use crate::storage::{MemStorage, Storage, StorageError};

/// In-memory content shared by a client and the harness that runs its disk jobs.
#[derive(Clone, Debug)]
pub struct SharedMem(Rc<RefCell<MemStorage>>, Rc<Cell<u64>>);

impl SharedMem {
    /// Shares `storage`.
    pub fn new(storage: MemStorage) -> SharedMem {
        SharedMem(Rc::new(RefCell::new(storage)), Rc::default())
    }

    /// How many times the content was flushed (by a job, or by the core inline).
    pub fn flushes(&self) -> u64 {
        self.1.get()
    }

    /// A copy of the bytes.
    pub fn data(&self) -> Vec<u8> {
        self.0.borrow().data().to_vec()
    }
}

impl Storage for SharedMem {
    fn len(&self) -> u64 {
        self.0.borrow().len()
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().read(offset, out)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().write(offset, data)
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.1.set(self.1.get() + 1);
        Ok(())
    }
}

/// One client of the harness and what it did.
#[derive(Debug)]
pub struct Node {
    /// The core.
    pub client: Client<SharedMem>,
    /// Its content.
    pub storage: SharedMem,
    /// Where it accepts connections.
    pub addr: SocketAddr,
    /// Every event but disk jobs, in order.
    pub events: Vec<ClientEvent>,
    /// Disk jobs handed out and not answered yet.
    pub held: Vec<(u64, DiskJob)>,
    /// Bytes handed out to be written so far (block writes and piece stores).
    pub written: u64,
    /// Request messages sent so far.
    pub requests_sent: usize,
    /// When each [`DiskJob::Flush`] was handed out.
    pub flush_jobs: Vec<Instant>,
    /// When [`ClientEvent::Completed`] came out.
    pub completed_at: Option<Instant>,
}

/// Clients on one virtual clock.
#[derive(Debug)]
pub struct Harness {
    /// The clients, by index.
    pub nodes: Vec<Node>,
    /// The virtual clock.
    pub now: Instant,
    /// (node, its conn) <-> (node, its conn).
    links: Vec<((usize, ConnId), (usize, ConnId))>,
    next_inbound: u64,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    /// An empty network at 1 s.
    pub fn new() -> Harness {
        Harness {
            nodes: Vec::new(),
            now: Instant::from_secs(1),
            links: Vec::new(),
            next_inbound: 0,
        }
    }

    /// Adds `client` on `storage`, accepting connections at `addr`; returns its index.
    pub fn add(
        &mut self,
        client: Client<SharedMem>,
        storage: SharedMem,
        addr: SocketAddr,
    ) -> usize {
        self.nodes.push(Node {
            client,
            storage,
            addr,
            events: Vec::new(),
            held: Vec::new(),
            written: 0,
            requests_sent: 0,
            flush_jobs: Vec::new(),
            completed_at: None,
        });
        self.nodes.len() - 1
    }

    /// Gives node `i` a command.
    pub fn command(&mut self, i: usize, cmd: ClientCommand) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.client.handle_input(self.now, Input::Command(cmd));
        }
    }

    fn peer_of(&self, at: (usize, ConnId)) -> Option<(usize, ConnId)> {
        self.links.iter().find_map(|&(a, b)| {
            if a == at {
                Some(b)
            } else if b == at {
                Some(a)
            } else {
                None
            }
        })
    }

    /// Moves bytes and disk jobs until nothing moves and every node's timers are past, or
    /// `rounds` rounds; `complete(node, held)` says how many of a node's held jobs to answer
    /// in a round. Stops early once `done(self)` holds in a quiet round. Returns the rounds
    /// used.
    pub fn drive(
        &mut self,
        rounds: usize,
        mut complete: impl FnMut(usize, usize) -> usize,
        done: impl Fn(&Harness) -> bool,
    ) -> usize {
        for round in 0..rounds {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.pump(i, &mut complete);
            }
            if !moved {
                if done(self) {
                    return round;
                }
                let next = self
                    .nodes
                    .iter()
                    .filter_map(|n| n.client.poll_timeout())
                    .min()
                    .map_or(self.now + Duration::from_secs(1), |t| t.max(self.now));
                self.now = next.max(self.now + Duration::from_millis(1));
                let now = self.now;
                for n in &mut self.nodes {
                    if n.client.poll_timeout().is_some_and(|t| t <= now) {
                        n.client.handle_timeout(now);
                    }
                }
            }
        }
        rounds
    }

    /// One node's output: transmits to their peers, events, jobs. Whether anything moved.
    fn pump(&mut self, i: usize, complete: &mut impl FnMut(usize, usize) -> usize) -> bool {
        let now = self.now;
        let mut moved = false;
        while let Some(t) = self.nodes.get_mut(i).and_then(|n| n.client.poll_transmit()) {
            moved = true;
            match t {
                Transmit::Connect { conn, to: addr } => {
                    let Some(j) = self.nodes.iter().position(|n| n.addr == addr) else {
                        let reason = CloseReason::Reset;
                        self.nodes[i]
                            .client
                            .handle_input(now, Input::Closed { conn, reason });
                        continue;
                    };
                    let theirs = ConnId::inbound(self.next_inbound);
                    self.next_inbound += 1;
                    self.links.push(((i, conn), (j, theirs)));
                    let peer = self.nodes[i].addr;
                    self.nodes[j]
                        .client
                        .handle_input(now, Input::Connected { conn: theirs, peer });
                    self.nodes[i]
                        .client
                        .handle_input(now, Input::Connected { conn, peer: addr });
                }
                Transmit::Send { conn, data } => {
                    self.nodes[i].requests_sent += count_requests(&data);
                    if let Some((j, c)) = self.peer_of((i, conn)) {
                        self.nodes[j].client.handle_input(
                            now,
                            Input::Received {
                                conn: c,
                                data: &data,
                            },
                        );
                    }
                }
                Transmit::Close { conn } => {
                    if let Some((j, c)) = self.peer_of((i, conn)) {
                        self.links
                            .retain(|&(a, b)| a != (i, conn) && b != (i, conn));
                        let reason = CloseReason::Closed;
                        self.nodes[j]
                            .client
                            .handle_input(now, Input::Closed { conn: c, reason });
                    }
                }
                _ => {}
            }
        }
        let n = &mut self.nodes[i];
        while let Some(e) = n.client.poll_event() {
            match e {
                ClientEvent::Disk { id, job } => {
                    match &job {
                        DiskJob::Write { data, .. } | DiskJob::Store { data, .. } => {
                            n.written += data.len() as u64;
                        }
                        DiskJob::Flush => n.flush_jobs.push(now),
                        _ => {}
                    }
                    n.held.push((id, job));
                }
                other => {
                    if matches!(other, ClientEvent::Completed) {
                        n.completed_at = Some(now);
                    }
                    n.events.push(other);
                }
            }
        }
        let k = complete(i, n.held.len()).min(n.held.len());
        for _ in 0..k {
            let Some((id, job)) = n.held.pop() else { break };
            let result = job.run(&mut n.storage.clone());
            n.client
                .handle_input(now, Input::Command(ClientCommand::DiskDone { id, result }));
            moved = true;
        }
        moved
    }
}

/// Request messages (id 6, 13 bytes) in a run of peer-wire frames.
fn count_requests(data: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = data;
    while let (Some(len), Some(&id)) = (rest.get(..4), rest.get(4)) {
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > 0 && id == 6 && len == 13 {
            n += 1;
        }
        rest = rest.get(4 + len..).unwrap_or_default();
    }
    n
}
