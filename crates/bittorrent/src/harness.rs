//! An in-memory network of [`Client`]s on the shared [`servent_core::harness`] (real cores,
//! virtual time that jumps to the next delivery or timer, a 1 ms link), with disk jobs
//! completed by the test's own policy.
//!
//! Tests read as scenarios: [`Harness::add`] clients (each on a [`SharedMem`] the harness
//! shares with it, as the driver shares its files), give commands, [`Harness::drive`],
//! then assert on each [`Node`]'s events, counters and content. A client with
//! [`ClientConfig::disk_jobs`](crate::client::ClientConfig) hands its jobs to its [`Node`],
//! which holds them until the policy given to `drive` says how many to answer (newest
//! first, so answers come out of order). A client without it does its disk work inline, as
//! in the simulator.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use servent_core::{Core, Input, Instant, Transmit};

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

/// One client of the harness and what it did: the core the shared harness runs, which
/// keeps its disk jobs for the test to answer and its other events for the test to read.
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
    /// The time of the last input.
    now: Instant,
}

impl Core for Node {
    type Command = ClientCommand;
    type Event = ClientEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, ClientCommand>) {
        self.now = now;
        self.client.handle_input(now, input);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.client.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.client.poll_transmit()?;
        if let Transmit::Send { data, .. } = &t {
            self.requests_sent += count_requests(data);
        }
        Some(t)
    }

    /// Keeps every event here (disk jobs in `held`), none for the shared harness.
    fn poll_event(&mut self) -> Option<ClientEvent> {
        while let Some(e) = self.client.poll_event() {
            match e {
                ClientEvent::Disk { id, job } => {
                    match &job {
                        DiskJob::Write { data, .. } | DiskJob::Store { data, .. } => {
                            self.written += data.len() as u64;
                        }
                        DiskJob::Flush => self.flush_jobs.push(self.now),
                        _ => {}
                    }
                    self.held.push((id, job));
                }
                other => {
                    if matches!(other, ClientEvent::Completed) {
                        self.completed_at = Some(self.now);
                    }
                    self.events.push(other);
                }
            }
        }
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }
}

/// Clients on one virtual network, by the index they were added at.
#[derive(Debug)]
pub struct Harness {
    net: servent_core::harness::Harness<Node>,
    addrs: Vec<SocketAddr>,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

impl Harness {
    /// An empty network whose bytes take 1 ms.
    pub fn new() -> Harness {
        Harness {
            net: servent_core::harness::Harness::new().with_latency(Duration::from_millis(1)),
            addrs: Vec::new(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Adds `client` on `storage`, accepting connections at `addr`; returns its index.
    pub fn add(
        &mut self,
        client: Client<SharedMem>,
        storage: SharedMem,
        addr: SocketAddr,
    ) -> usize {
        let node = Node {
            client,
            storage,
            addr,
            events: Vec::new(),
            held: Vec::new(),
            written: 0,
            requests_sent: 0,
            flush_jobs: Vec::new(),
            completed_at: None,
            now: self.net.now(),
        };
        self.net.add_at(addr, node);
        self.addrs.push(addr);
        self.addrs.len() - 1
    }

    /// Node `i`.
    ///
    /// # Panics
    /// When no node `i` was added (a test's own mistake).
    pub fn node(&self, i: usize) -> &Node {
        self.addrs
            .get(i)
            .and_then(|a| self.net.node(*a))
            .unwrap_or_else(|| panic!("no node {i}"))
    }

    /// Node `i`, mutable (to change its configuration between drives).
    ///
    /// # Panics
    /// When no node `i` was added.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        let a = self.addrs.get(i).copied();
        a.and_then(|a| self.net.node_mut(a))
            .unwrap_or_else(|| panic!("no node {i}"))
    }

    /// Every node, by index.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.addrs.iter().filter_map(|a| self.net.node(*a))
    }

    /// Gives node `i` a command.
    pub fn command(&mut self, i: usize, cmd: ClientCommand) {
        if let Some(a) = self.addrs.get(i).copied() {
            self.net.command(a, cmd);
        }
    }

    /// Runs up to `rounds` rounds. A round first asks `complete(node, held)` how many of each
    /// node's held jobs to answer and answers them; when none was, it stops if `done(self)`
    /// holds, else takes one step of the network (the next delivery, or the timers due
    /// next). Returns the rounds used.
    pub fn drive(
        &mut self,
        rounds: usize,
        mut complete: impl FnMut(usize, usize) -> usize,
        done: impl Fn(&Harness) -> bool,
    ) -> usize {
        for round in 0..rounds {
            let mut answered = false;
            for (i, addr) in self.addrs.clone().into_iter().enumerate() {
                let now = self.net.now();
                let Some(n) = self.net.node_mut(addr) else {
                    continue;
                };
                let k = complete(i, n.held.len()).min(n.held.len());
                for _ in 0..k {
                    let Some((id, job)) = n.held.pop() else { break };
                    let result = job.run(&mut n.storage.clone());
                    n.handle_input(now, Input::Command(ClientCommand::DiskDone { id, result }));
                }
                if k > 0 {
                    answered = true;
                    self.net.poke(addr);
                }
            }
            if !answered && (done(self) || !self.net.step(Instant::MAX)) {
                return round;
            }
        }
        rounds
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
