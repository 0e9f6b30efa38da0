//! An in-memory network for one [`Server`] and many [`Client`]s: real cores, virtual time
//! that jumps to the next delivery or timer, and a seeded link (latency with jitter).
//!
//! Tests read as scenarios: add clients, give commands, [`Harness::drive`], assert on the
//! events collected per node. The server's jobs (password hashing and checks, durable
//! writes) are completed inline, in no virtual time, through the harness's journal
//! ([`Volatile`] unless [`Harness::with_journal`] gives another): [`settle`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng, Transmit};

use crate::client::{Client, ClientCommand, ClientConfig, ClientEvent};
use crate::server::{Journal, Server, ServerCommand, ServerEvent, Volatile};

/// Completes every job `server` has handed out, inline, writing through `journal`, until
/// it asks for no more (a new account's hash leads to its write); returns how many ran.
/// This is what the harness and the simulator do in place of the driver's blocking threads.
pub fn settle(server: &mut Server, now: Instant, journal: &mut dyn Journal) -> usize {
    let mut n = 0;
    while let Some((id, job)) = server.poll_job() {
        let result = job.run(journal);
        server.handle_input(now, Input::Command(ServerCommand::Complete { id, result }));
        n += 1;
    }
    n
}

/// The server's address in the harness.
pub const SERVER_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 8888);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    Connected,
    Data(Vec<u8>),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum To {
    Server(usize),
    Client(usize),
}

#[derive(Debug)]
struct Node {
    client: Client,
    addr: SocketAddr,
    up: bool,
    /// Events collected so far.
    events: Vec<(Instant, ClientEvent)>,
}

/// One server, many clients, one virtual clock.
#[derive(Debug)]
pub struct Harness {
    now: Instant,
    seq: u64,
    rng: Rng,
    latency: Duration,
    jitter: Duration,
    /// The server core.
    pub server: Server,
    /// Events the server reported.
    pub server_events: Vec<(Instant, ServerEvent)>,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<(Instant, u64, To, What)>>,
    /// Last delivery time per direction: a stream delivers in order whatever the jitter.
    last: BTreeMap<To, Instant>,
    journal: Box<dyn Journal>,
}

impl Harness {
    /// A harness around `server`; one-way latency `latency` plus up to `jitter`, seeded.
    pub fn new(server: Server, seed: u64, latency: Duration, jitter: Duration) -> Harness {
        Harness {
            now: Instant::ZERO,
            seq: 0,
            rng: Rng::new(seed),
            latency,
            jitter,
            server,
            server_events: Vec::new(),
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            last: BTreeMap::new(),
            journal: Box::new(Volatile),
        }
    }

    /// The server's jobs write through `journal` from now on.
    pub fn with_journal(mut self, journal: Box<dyn Journal>) -> Harness {
        self.journal = journal;
        self
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The address client `i` appears from (127.0.x.y, port 40000 + i % 20000).
    pub fn client_addr(i: usize) -> SocketAddr {
        let n = i + 2;
        SocketAddr::new(
            std::net::IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8)),
            40_000 + (i % 20_000) as u16,
        )
    }

    /// Adds a client (its `server` field is set to [`SERVER_ADDR`]); returns its index.
    pub fn add_client(&mut self, mut cfg: ClientConfig) -> usize {
        cfg.server = SERVER_ADDR;
        let i = self.nodes.len();
        self.nodes.push(Node {
            client: Client::new(cfg),
            addr: Self::client_addr(i),
            up: true,
            events: Vec::new(),
        });
        self.pump_client(i);
        i
    }

    /// Client `i`'s core.
    pub fn client(&self, i: usize) -> &Client {
        &self.nodes[i].client
    }

    /// Events client `i` reported so far.
    pub fn events(&self, i: usize) -> impl Iterator<Item = &ClientEvent> {
        self.nodes[i].events.iter().map(|(_, e)| e)
    }

    /// Forgets the events collected so far for client `i`.
    pub fn clear_events(&mut self, i: usize) {
        self.nodes[i].events.clear();
    }

    /// Gives client `i` a command.
    pub fn command(&mut self, i: usize, cmd: ClientCommand) {
        let now = self.now;
        self.nodes[i].client.handle_input(now, Input::Command(cmd));
        self.pump_client(i);
    }

    /// Gives the server a command.
    pub fn server_command(&mut self, cmd: ServerCommand) {
        let now = self.now;
        self.server.handle_input(now, Input::Command(cmd));
        self.pump_server();
    }

    /// Kills client `i`'s connection as a crash would (the server sees a reset).
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        let at = self.delay();
        self.push(at, To::Server(i), What::Closed);
    }

    /// Feeds raw bytes to the server as if client `i` had sent them.
    pub fn inject(&mut self, i: usize, bytes: Vec<u8>) {
        let at = self.delay();
        self.push(at, To::Server(i), What::Data(bytes));
    }

    fn delay(&mut self) -> Instant {
        let j = if self.jitter.is_zero() {
            0
        } else {
            self.rng.below(self.jitter.as_micros() as u64 + 1)
        };
        self.now + self.latency + Duration::from_micros(j)
    }

    fn push(&mut self, at: Instant, to: To, what: What) {
        let last = self.last.entry(to.clone()).or_insert(Instant::ZERO);
        let at = at.max(*last);
        *last = at;
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, to, what)));
    }

    fn pump_client(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].client.poll_transmit() {
            if !self.nodes[i].up {
                continue;
            }
            let at = self.delay();
            match t {
                Transmit::Connect { .. } => {
                    // The connection is up for both sides after one trip.
                    self.push(at, To::Server(i), What::Connected);
                    self.push(at, To::Client(i), What::Connected);
                }
                Transmit::Send { data, .. } => self.push(at, To::Server(i), What::Data(data)),
                Transmit::Close { .. } => self.push(at, To::Server(i), What::Closed),
                _ => {}
            }
        }
        let now = self.now;
        while let Some(e) = self.nodes[i].client.poll_event() {
            self.nodes[i].events.push((now, e));
        }
    }

    fn pump_server(&mut self) {
        settle(&mut self.server, self.now, self.journal.as_mut());
        while let Some(t) = self.server.poll_transmit() {
            let at = self.delay();
            match t {
                Transmit::Send { conn, data } => self.push(
                    at,
                    To::Client(conn.raw() as usize & 0xffff_ffff),
                    What::Data(data),
                ),
                Transmit::Close { conn } => self.push(
                    at,
                    To::Client(conn.raw() as usize & 0xffff_ffff),
                    What::Closed,
                ),
                _ => {}
            }
        }
        let now = self.now;
        while let Some(e) = self.server.poll_event() {
            self.server_events.push((now, e));
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let s = self.server.poll_timeout();
        let c = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.client.poll_timeout())
            .min();
        [s, c].into_iter().flatten().min()
    }

    /// Runs until nothing is in flight and no timer is due before `limit`; at most
    /// `max_steps` deliveries. Returns the number of steps taken.
    pub fn drive_until(&mut self, limit: Instant, max_steps: usize) -> usize {
        let mut steps = 0;
        while steps < max_steps {
            let next_msg = self.queue.peek().map(|Reverse((at, ..))| *at);
            let next_timer = self.next_timer();
            let next = match [next_msg, next_timer].into_iter().flatten().min() {
                Some(t) if t <= limit => t,
                _ => break,
            };
            self.now = self.now.max(next);
            steps += 1;
            if next_msg == Some(next) {
                let Some(Reverse((_, _, to, what))) = self.queue.pop() else {
                    break;
                };
                self.deliver(to, what);
            } else {
                let now = self.now;
                if self.server.poll_timeout().is_some_and(|t| t <= now) {
                    self.server.handle_timeout(now);
                    self.pump_server();
                }
                for i in 0..self.nodes.len() {
                    if self.nodes[i].up
                        && self.nodes[i]
                            .client
                            .poll_timeout()
                            .is_some_and(|t| t <= now)
                    {
                        self.nodes[i].client.handle_timeout(now);
                        self.pump_client(i);
                    }
                }
            }
        }
        steps
    }

    /// Runs for `d` of virtual time (bounded by a large step count).
    pub fn drive_for(&mut self, d: Duration) -> usize {
        let until = self.now + d;
        let n = self.drive_until(until, 10_000_000);
        self.now = self.now.max(until);
        n
    }

    /// Runs until the network is quiet (timers far in the future are not waited for).
    pub fn drive(&mut self) -> usize {
        let limit = self.now + Duration::from_secs(5);
        self.drive_until(limit, 10_000_000)
    }

    fn deliver(&mut self, to: To, what: What) {
        let now = self.now;
        match to {
            To::Server(i) => {
                let conn = ConnId::inbound(i as u64);
                let peer = self.nodes[i].addr;
                match what {
                    What::Connected => self
                        .server
                        .handle_input(now, Input::Connected { conn, peer }),
                    What::Data(data) => self
                        .server
                        .handle_input(now, Input::Received { conn, data: &data }),
                    What::Closed => self.server.handle_input(
                        now,
                        Input::Closed {
                            conn,
                            reason: CloseReason::Reset,
                        },
                    ),
                }
                self.pump_server();
            }
            To::Client(i) => {
                if !self.nodes.get(i).is_some_and(|n| n.up) {
                    return;
                }
                let conn = ConnId::outbound(0);
                let node = &mut self.nodes[i].client;
                match what {
                    What::Connected => node.handle_input(
                        now,
                        Input::Connected {
                            conn,
                            peer: SERVER_ADDR,
                        },
                    ),
                    What::Data(data) => {
                        node.handle_input(now, Input::Received { conn, data: &data })
                    }
                    What::Closed => {
                        self.nodes[i].up = false;
                        self.nodes[i].client.handle_input(
                            now,
                            Input::Closed {
                                conn,
                                reason: CloseReason::Closed,
                            },
                        )
                    }
                }
                self.pump_client(i);
            }
        }
    }
}
