//! An in-memory network for one [`Server`] and many [`Client`]s: real cores on the shared
//! [`servent_core::harness`] (virtual time that jumps to the next delivery or timer, a
//! seeded link with latency and jitter; streams stay in order).
//!
//! Tests read as scenarios: add clients, give commands, [`Harness::drive`], assert on the
//! events collected per node. The server's jobs (password hashing and checks, durable
//! writes) are completed inline, in no virtual time, through the harness's journal
//! ([`Volatile`] unless [`Harness::with_journal`] gives another): [`settle`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use servent_core::harness::map_input;
use servent_core::{Core, Input, Instant, Transmit};

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

/// The client index whose address is `a` (the inverse of [`Harness::client_addr`]).
fn client_index(a: SocketAddr) -> Option<usize> {
    match a {
        SocketAddr::V4(v) => {
            let [_, _, hi, lo] = v.ip().octets();
            let i = (usize::from(hi) << 8 | usize::from(lo)).checked_sub(2)?;
            (Harness::client_addr(i) == a).then_some(i)
        }
        SocketAddr::V6(_) => None,
    }
}

/// A node of the harness and of the simulator (`scenarios`): the server or a client.
/// Both are boxed, so a network of 10^5 clients holds pointers, not server-sized slots.
#[derive(Debug)]
pub enum Peer {
    /// The index server.
    Server(Box<Server>),
    /// A client.
    Client(Box<Client>),
}

/// A command for a [`Peer`].
#[derive(Debug, Clone)]
pub enum PeerCommand {
    /// For the server.
    Server(ServerCommand),
    /// For a client.
    Client(ClientCommand),
}

/// An event of a [`Peer`].
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// The server's.
    Server(ServerEvent),
    /// A client's.
    Client(ClientEvent),
}

impl Core for Peer {
    type Command = PeerCommand;
    type Event = PeerEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, PeerCommand>) {
        match self {
            Peer::Server(s) => {
                let i = map_input(input, |c| match c {
                    PeerCommand::Server(c) => Some(c),
                    PeerCommand::Client(_) => None,
                });
                if let Some(i) = i {
                    s.handle_input(now, i);
                }
            }
            Peer::Client(c) => {
                let i = map_input(input, |c| match c {
                    PeerCommand::Client(c) => Some(c),
                    PeerCommand::Server(_) => None,
                });
                if let Some(i) = i {
                    c.handle_input(now, i);
                }
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Peer::Server(s) => s.handle_timeout(now),
            Peer::Client(c) => c.handle_timeout(now),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        match self {
            Peer::Server(s) => s.poll_transmit(),
            Peer::Client(c) => c.poll_transmit(),
        }
    }

    fn poll_event(&mut self) -> Option<PeerEvent> {
        match self {
            Peer::Server(s) => s.poll_event().map(PeerEvent::Server),
            Peer::Client(c) => c.poll_event().map(PeerEvent::Client),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Peer::Server(s) => s.poll_timeout(),
            Peer::Client(c) => c.poll_timeout(),
        }
    }
}

/// One server, many clients, one virtual clock.
#[derive(Debug)]
pub struct Harness {
    net: servent_core::harness::Harness<Peer>,
    /// Events the server reported.
    pub server_events: Vec<(Instant, ServerEvent)>,
    /// Events each client reported, by client index.
    client_events: Vec<Vec<(Instant, ClientEvent)>>,
    /// Clients taken off the network by [`Harness::crash`], kept for inspection.
    crashed: Vec<Option<Client>>,
}

impl Harness {
    /// A harness around `server`; one-way latency `latency` plus up to `jitter`, seeded.
    pub fn new(server: Server, seed: u64, latency: Duration, jitter: Duration) -> Harness {
        let net = servent_core::harness::Harness::new()
            .with_latency(latency)
            .with_jitter(jitter)
            .with_seed(seed);
        let mut h = Harness {
            net,
            server_events: Vec::new(),
            client_events: Vec::new(),
            crashed: Vec::new(),
        };
        h.set_journal(Box::new(Volatile));
        h.net.add_at(SERVER_ADDR, Peer::Server(Box::new(server)));
        h.collect();
        h
    }

    /// The server's jobs write through `journal` from now on.
    pub fn with_journal(mut self, journal: Box<dyn Journal>) -> Harness {
        self.set_journal(journal);
        self
    }

    fn set_journal(&mut self, mut journal: Box<dyn Journal>) {
        self.net.settle_with(move |p: &mut Peer, now| {
            if let Peer::Server(s) = p {
                settle(s, now, journal.as_mut());
            }
        });
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// The address client `i` appears from (127.0.x.y, port 40000 + i % 20000).
    pub fn client_addr(i: usize) -> SocketAddr {
        let n = i + 2;
        SocketAddr::new(
            std::net::IpAddr::V4(Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8)),
            40_000 + (i % 20_000) as u16,
        )
    }

    /// The server core.
    pub fn server(&self) -> &Server {
        match self.net.node(SERVER_ADDR) {
            Some(Peer::Server(s)) => s,
            _ => unreachable!("the harness's server lives at SERVER_ADDR"),
        }
    }

    /// The server core, mutable (what it then sends is for the caller to drain).
    pub fn server_mut(&mut self) -> &mut Server {
        match self.net.node_mut(SERVER_ADDR) {
            Some(Peer::Server(s)) => s,
            _ => unreachable!("the harness's server lives at SERVER_ADDR"),
        }
    }

    /// Adds a client (its `server` field is set to [`SERVER_ADDR`]); returns its index.
    pub fn add_client(&mut self, mut cfg: ClientConfig) -> usize {
        cfg.server = SERVER_ADDR;
        let i = self.client_events.len();
        self.client_events.push(Vec::new());
        self.crashed.push(None);
        self.net.add_at(
            Self::client_addr(i),
            Peer::Client(Box::new(Client::new(cfg))),
        );
        self.collect();
        i
    }

    /// Client `i`'s core.
    pub fn client(&self, i: usize) -> &Client {
        match self.net.node(Self::client_addr(i)) {
            Some(Peer::Client(c)) => c,
            _ => match self.crashed.get(i) {
                Some(Some(c)) => c,
                _ => panic!("no client {i}"),
            },
        }
    }

    /// Events client `i` reported so far.
    pub fn events(&self, i: usize) -> impl Iterator<Item = &ClientEvent> {
        self.client_events[i].iter().map(|(_, e)| e)
    }

    /// Forgets the events collected so far for client `i`.
    pub fn clear_events(&mut self, i: usize) {
        self.client_events[i].clear();
    }

    /// Gives client `i` a command.
    pub fn command(&mut self, i: usize, cmd: ClientCommand) {
        self.net
            .command(Self::client_addr(i), PeerCommand::Client(cmd));
        self.collect();
    }

    /// Gives the server a command.
    pub fn server_command(&mut self, cmd: ServerCommand) {
        self.net.command(SERVER_ADDR, PeerCommand::Server(cmd));
        self.collect();
    }

    /// Takes client `i` off the network as a crash would (the server sees a reset).
    pub fn crash(&mut self, i: usize) {
        if let Some(Peer::Client(c)) = self.net.remove(Self::client_addr(i)) {
            self.crashed[i] = Some(*c);
        }
    }

    /// Feeds raw bytes to the server as if client `i` had sent them on its connection.
    pub fn inject(&mut self, i: usize, bytes: Vec<u8>) {
        let ends = self.net.ends_of(Self::client_addr(i));
        if let Some((end, _)) = ends.into_iter().find(|(_, p)| p.0 == SERVER_ADDR) {
            self.net.send_raw(end, &bytes);
        }
    }

    /// Moves the events the network collected to the server's and each client's lists.
    fn collect(&mut self) {
        for (t, a, e) in self.net.take_timed_events() {
            match e {
                PeerEvent::Server(e) => self.server_events.push((t, e)),
                PeerEvent::Client(e) => {
                    if let Some(events) =
                        client_index(a).and_then(|i| self.client_events.get_mut(i))
                    {
                        events.push((t, e));
                    }
                }
            }
        }
    }

    /// Runs until nothing is in flight and no timer is due before `limit`; at most
    /// `max_steps` steps. Returns the number of steps taken.
    pub fn drive_until(&mut self, limit: Instant, max_steps: usize) -> usize {
        let n = self.net.drive_while(limit, max_steps, |_| false);
        self.collect();
        n
    }

    /// Runs for `d` of virtual time (bounded by a large step count).
    pub fn drive_for(&mut self, d: Duration) -> usize {
        let until = self.now() + d;
        let n = self.drive_until(until, 10_000_000);
        self.net.drive_until(until);
        self.collect();
        n
    }

    /// Runs until the network is quiet (timers far in the future are not waited for).
    pub fn drive(&mut self) -> usize {
        let limit = self.now() + Duration::from_secs(5);
        self.drive_until(limit, 10_000_000)
    }
}
