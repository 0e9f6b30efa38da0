//! The tokio driver: runs any [`Core`] over real sockets with real timers.
//!
//! One task owns the core. It waits for whichever comes first — a user command, a datagram,
//! an accepted connection, news from a connection task, or the core's timer — hands it to
//! the core with the current time, then drains the core in the contract's order: transmits
//! (carried out at once), events (to the user), the next timer.
//!
//! Every queue is bounded and none drops anything silently:
//! - connection readers wait when the core is busy (TCP pushes back to the peer);
//! - a connection whose outgoing queue fills up (a peer that does not read) is closed as a
//!   whole, never cut in the middle of its byte stream: the core sees
//!   [`CloseReason::SlowPeer`] and [`DriverStats::slow_peer_closes`] counts it;
//! - events wait for the user: once [`NodeConfig::event_queue`] are waiting, the node stops
//!   taking new input until the user collects one ([`DriverStats::event_queue_full`] counts
//!   the waits). A user that gives commands must therefore keep collecting events; a user
//!   that drops its [`NodeHandle`] or shuts it down discards the waiting ones.
//! - inbound connections beyond [`NodeConfig::max_connections`] are refused at accept and
//!   counted ([`DriverStats::refused_connections`]).
//!
//! # Handing a connection over
//! A core that decides a connection is no longer its own (Gnutella: the first bytes show an
//! HTTP transfer, or a link becomes one) says so in an event; a node started with
//! [`spawn_with_handover`] recognises that event with the function it was given. At that
//! moment, before it reads anything else, the driver stops the connection's reader, lets its
//! writer finish what the core queued on it, and keeps every byte read after the core's last
//! input in order. The user, having collected the event, calls
//! [`NodeHandle::take_connection`] and gets the socket with those bytes: nothing the peer
//! sent is lost and nothing the core sent is cut. A handed-over connection still counts
//! towards [`NodeConfig::max_connections`] until it is taken.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Transmit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Unanswered keepalive probes before the kernel gives a connection up.
const KEEPALIVE_PROBES: u32 = 3;

/// What sockets to open and how big the queues are.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Bind a UDP socket here (port 0 picks a free port).
    pub udp: Option<SocketAddr>,
    /// Listen for TCP connections here (port 0 picks a free port).
    pub tcp: Option<SocketAddr>,
    /// Messages waiting to be written on one connection before it counts as a slow peer.
    pub send_queue: usize,
    /// Events waiting for the user before the node waits for the user to collect one.
    pub event_queue: usize,
    /// How long an outbound connection attempt may take.
    pub connect_timeout: Duration,
    /// Most connections (both directions); further inbound ones are refused at accept.
    pub max_connections: usize,
    /// TCP keepalive on every connection: after this long without traffic the kernel probes
    /// the peer (every [`keepalive_interval`](Self::keepalive_interval), 3 times) and a peer
    /// that vanished without a FIN or RST (power cut, cable pulled, NAT entry gone) is closed
    /// as `Reset` instead of holding a slot for ever. A live but quiet peer answers the probes
    /// and stays. `None`: no keepalive.
    pub keepalive: Option<Duration>,
    /// Time between two keepalive probes.
    pub keepalive_interval: Duration,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            udp: None,
            tcp: None,
            send_queue: 4096,
            event_queue: 65_536,
            connect_timeout: Duration::from_secs(5),
            max_connections: 4096,
            keepalive: Some(Duration::from_secs(60)),
            keepalive_interval: Duration::from_secs(10),
        }
    }
}

/// The addresses actually bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAddrs {
    /// The UDP socket's address.
    pub udp: Option<SocketAddr>,
    /// The TCP listener's address.
    pub tcp: Option<SocketAddr>,
}

/// What the driver did that a peer or the user caused: counters, read with
/// [`NodeHandle::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Connections closed because their outgoing queue was full (the peer did not read).
    pub slow_peer_closes: u64,
    /// Inbound connections refused at accept: the node was at its connection limit.
    pub refused_connections: u64,
    /// Times the node found the event queue full and waited for the user.
    pub event_queue_full: u64,
}

#[derive(Debug, Default)]
struct Counters {
    slow_peer_closes: AtomicU64,
    refused_connections: AtomicU64,
    event_queue_full: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) -> u64 {
        c.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn snapshot(&self) -> DriverStats {
        DriverStats {
            slow_peer_closes: self.slow_peer_closes.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            event_queue_full: self.event_queue_full.load(Ordering::Relaxed),
        }
    }
}

/// What can go wrong starting or talking to a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// A socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The node's task has ended (shut down or panicked).
    #[error("the node has stopped")]
    Stopped,
    /// [`NodeHandle::take_connection`] for a connection that was not handed over, or was
    /// taken already.
    #[error("connection {0:?} was not handed over (or was taken already)")]
    NotHandedOver(ConnId),
    /// The connection failed while it was being handed over (its queued bytes could not be
    /// written).
    #[error("connection {0:?} failed during its hand-over")]
    HandoverFailed(ConnId),
}

/// Which connection, if any, an event of the core hands over to the user (see
/// [`spawn_with_handover`]).
pub type HandoverOf<E> = fn(&E) -> Option<ConnId>;

/// A handed-over socket and the bytes the driver read on it after the core's last input.
pub type HandedOver = (TcpStream, Vec<u8>);

type Reply<T> = oneshot::Sender<Result<T, DriverError>>;
type Inspect<C> = Box<dyn FnOnce(&C) + Send>;

/// What the user asks of the driver itself (not of the core).
enum Request<C> {
    Take(ConnId, Reply<HandedOver>),
    Inspect(Inspect<C>),
}

/// A running node: send it commands, collect its events, shut it down.
#[derive(Debug)]
pub struct NodeHandle<C: Core> {
    commands: mpsc::Sender<C::Command>,
    requests: mpsc::Sender<Request<C>>,
    events: mpsc::Receiver<C::Event>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<C>,
    counters: Arc<Counters>,
    /// The bound addresses.
    pub local: LocalAddrs,
}

impl<C: Core> NodeHandle<C> {
    /// Gives the node a command.
    pub async fn command(&self, cmd: C::Command) -> Result<(), DriverError> {
        self.commands
            .send(cmd)
            .await
            .map_err(|_| DriverError::Stopped)
    }

    /// The next event; `None` once the node has stopped.
    pub async fn next_event(&mut self) -> Option<C::Event> {
        self.events.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_event(&mut self) -> Option<C::Event> {
        self.events.try_recv().ok()
    }

    /// What the driver has counted so far.
    pub fn stats(&self) -> DriverStats {
        self.counters.snapshot()
    }

    /// The socket of connection `conn`, which the core handed over (the node was started
    /// with [`spawn_with_handover`] and its function named `conn` in an event), with the
    /// bytes read on it after the core's last input, in order. Everything the core queued
    /// on the connection before the hand-over has been written when this returns. The
    /// future borrows nothing, so it can run on another task.
    pub fn take_connection(
        &self,
        conn: ConnId,
    ) -> impl Future<Output = Result<HandedOver, DriverError>> + Send + 'static
    where
        C: 'static,
    {
        let requests = self.requests.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            requests
                .send(Request::Take(conn, tx))
                .await
                .map_err(|_| DriverError::Stopped)?;
            rx.await.map_err(|_| DriverError::Stopped)?
        }
    }

    /// Runs `f` on the core between two inputs and returns what it returns (a read of the
    /// core's state: its peers, counters, settings). The future borrows nothing, so it can
    /// run on another task (a user that awaits it must not stop collecting events meanwhile
    /// on a node whose event queue may fill).
    pub fn inspect<R, F>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<R, DriverError>> + Send + 'static
    where
        C: 'static,
        R: Send + 'static,
        F: FnOnce(&C) -> R + Send + 'static,
    {
        let requests = self.requests.clone();
        async move {
            let (tx, rx) = oneshot::channel();
            let job: Inspect<C> = Box::new(move |c: &C| {
                let _ = tx.send(f(c));
            });
            requests
                .send(Request::Inspect(job))
                .await
                .map_err(|_| DriverError::Stopped)?;
            rx.await.map_err(|_| DriverError::Stopped)
        }
    }

    /// A sender for commands that can be moved to other tasks.
    pub fn commander(&self) -> mpsc::Sender<C::Command> {
        self.commands.clone()
    }

    /// Stops the node, closes every socket and task it owns, and returns the core. Events
    /// not yet collected are discarded (a node waiting for the user to collect one stops
    /// waiting).
    pub async fn shutdown(mut self) -> Result<C, DriverError> {
        self.events.close();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.await.map_err(|_| DriverError::Stopped)
    }
}

/// Binds the sockets in `cfg`, builds the core with `make` (which learns the bound
/// addresses) and runs it on a new task.
pub async fn spawn<C, F>(cfg: NodeConfig, make: F) -> Result<NodeHandle<C>, DriverError>
where
    C: Core + Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
    F: FnOnce(LocalAddrs) -> C,
{
    start(cfg, make, None).await
}

/// As [`spawn`], for a core that hands connections over: when `handover_of` names a
/// connection for an event, the driver detaches that connection before it reads anything
/// else, and [`NodeHandle::take_connection`] gives it to the user (see the module
/// documentation).
pub async fn spawn_with_handover<C, F>(
    cfg: NodeConfig,
    make: F,
    handover_of: HandoverOf<C::Event>,
) -> Result<NodeHandle<C>, DriverError>
where
    C: Core + Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
    F: FnOnce(LocalAddrs) -> C,
{
    start(cfg, make, Some(handover_of)).await
}

async fn start<C, F>(
    cfg: NodeConfig,
    make: F,
    handover_of: Option<HandoverOf<C::Event>>,
) -> Result<NodeHandle<C>, DriverError>
where
    C: Core + Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
    F: FnOnce(LocalAddrs) -> C,
{
    let udp = match cfg.udp {
        Some(addr) => Some(
            UdpSocket::bind(addr)
                .await
                .map_err(|source| DriverError::Bind { addr, source })?,
        ),
        None => None,
    };
    let tcp = match cfg.tcp {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| DriverError::Bind { addr, source })?,
        ),
        None => None,
    };
    let local = LocalAddrs {
        udp: udp.as_ref().and_then(|s| s.local_addr().ok()),
        tcp: tcp.as_ref().and_then(|s| s.local_addr().ok()),
    };
    let core = make(local);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (req_tx, req_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::channel(cfg.event_queue.max(1));
    let (stop_tx, stop_rx) = oneshot::channel();
    let (net_tx, net_rx) = mpsc::channel(1024);
    let counters = Arc::new(Counters::default());
    let driver = Driver {
        core,
        origin: tokio::time::Instant::now(),
        cfg,
        udp,
        tcp,
        conns: BTreeMap::new(),
        connecting: BTreeMap::new(),
        handing: BTreeMap::new(),
        handover_of,
        closing: Vec::new(),
        next_inbound: 0,
        net_tx,
        events: ev_tx,
        counters: Arc::clone(&counters),
    };
    let task = tokio::spawn(driver.run(cmd_rx, req_rx, net_rx, stop_rx));
    Ok(NodeHandle {
        commands: cmd_tx,
        requests: req_tx,
        events: ev_rx,
        shutdown: Some(stop_tx),
        task,
        counters,
        local,
    })
}

enum Net {
    Accepted(TcpStream, SocketAddr),
    Connected(ConnId, TcpStream, SocketAddr),
    ConnectFailed(ConnId),
    Data(ConnId, Vec<u8>),
    /// The connection ended; the reader gives its half back (a hand-over may still want it).
    Ended(ConnId, CloseReason, Option<OwnedReadHalf>),
    /// The reader stopped for a hand-over and gives its half back.
    Released(ConnId, OwnedReadHalf),
}

struct ConnTasks {
    writer: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
    /// Ends with the write half when it stopped for a hand-over (`release` set).
    writer_task: JoinHandle<Option<OwnedWriteHalf>>,
    stop_reader: oneshot::Sender<()>,
    release: Arc<AtomicBool>,
}

/// A connection being handed over: its halves come back from its tasks, the bytes read
/// meanwhile pile up in order, and the user's request may come before or after.
struct Handing {
    unread: Vec<u8>,
    reader: Option<OwnedReadHalf>,
    writer_task: Option<JoinHandle<Option<OwnedWriteHalf>>>,
    waiter: Option<Reply<HandedOver>>,
}

struct Driver<C: Core> {
    core: C,
    origin: tokio::time::Instant,
    cfg: NodeConfig,
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    conns: BTreeMap<ConnId, ConnTasks>,
    connecting: BTreeMap<ConnId, JoinHandle<()>>,
    /// Connections the core handed over, until the user takes them.
    handing: BTreeMap<ConnId, Handing>,
    handover_of: Option<HandoverOf<C::Event>>,
    /// Writers still flushing connections the core closed.
    closing: Vec<JoinHandle<Option<OwnedWriteHalf>>>,
    next_inbound: u64,
    net_tx: mpsc::Sender<Net>,
    events: mpsc::Sender<C::Event>,
    counters: Arc<Counters>,
}

async fn recv_udp(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn accept(l: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

impl<C: Core> Driver<C>
where
    C: Send + 'static,
    C::Command: Send + 'static,
    C::Event: Send + 'static,
{
    fn now(&self) -> Instant {
        let d = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Instant::from_micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<C::Command>,
        mut reqs: mpsc::Receiver<Request<C>>,
        mut net: mpsc::Receiver<Net>,
        mut stop: oneshot::Receiver<()>,
    ) -> C {
        let mut buf = vec![0u8; 65_536];
        let mut commands_open = true;
        let mut requests_open = true;
        loop {
            let deadline = self.core.poll_timeout();
            let sleep_to = deadline
                .map(|d| self.origin + Duration::from_micros(d.as_micros()))
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut stop => break,
                cmd = cmds.recv(), if commands_open => match cmd {
                    Some(c) => { let now = self.now(); self.core.handle_input(now, Input::Command(c)); }
                    None => commands_open = false,
                },
                req = reqs.recv(), if requests_open => match req {
                    Some(Request::Take(conn, reply)) => self.take(conn, reply),
                    Some(Request::Inspect(f)) => f(&self.core),
                    None => requests_open = false,
                },
                Some(n) = net.recv() => self.on_net(n),
                r = recv_udp(self.udp.as_ref(), &mut buf) => {
                    if let Ok((len, from)) = r {
                        let now = self.now();
                        self.core.handle_input(now, Input::Datagram { from, data: &buf[..len] });
                    }
                    // errors on an unconnected UDP socket (ICMP reports) are not the core's business
                }
                r = accept(self.tcp.as_ref()) => match r {
                    Ok((stream, peer)) => self.on_net(Net::Accepted(stream, peer)),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                _ = tokio::time::sleep_until(sleep_to), if deadline.is_some() => {
                    let now = self.now();
                    self.core.handle_timeout(now);
                }
            }
            self.drain().await;
        }
        self.close_all();
        self.core
    }

    fn on_net(&mut self, n: Net) {
        let now = self.now();
        match n {
            Net::Accepted(stream, peer) => {
                if self.conns.len() + self.connecting.len() + self.handing.len()
                    >= self.cfg.max_connections
                {
                    let n = Counters::bump(&self.counters.refused_connections);
                    tracing::debug!(%peer, refused = n, "refusing connection: at the connection limit");
                    if n.is_power_of_two() {
                        tracing::info!(
                            limit = self.cfg.max_connections,
                            refused = n,
                            "at the connection limit: inbound connections refused"
                        );
                    }
                    return;
                }
                let conn = ConnId::inbound(self.next_inbound);
                self.next_inbound += 1;
                self.start_conn(conn, stream);
                self.core.handle_input(now, Input::Connected { conn, peer });
            }
            Net::Connected(conn, stream, peer) => {
                if self.connecting.remove(&conn).is_some() {
                    self.start_conn(conn, stream);
                    self.core.handle_input(now, Input::Connected { conn, peer });
                }
            }
            Net::ConnectFailed(conn) => {
                if self.connecting.remove(&conn).is_some() {
                    self.core.handle_input(now, Input::ConnectFailed { conn });
                }
            }
            Net::Data(conn, data) => {
                if let Some(h) = self.handing.get_mut(&conn) {
                    h.unread.extend_from_slice(&data);
                } else if self.conns.contains_key(&conn) {
                    self.core
                        .handle_input(now, Input::Received { conn, data: &data });
                }
            }
            Net::Ended(conn, reason, rd) => {
                if let Some(h) = self.handing.get_mut(&conn) {
                    // The peer closed (or reset) while the connection was being handed
                    // over: the new owner gets the socket all the same and sees it too.
                    if h.reader.is_none() {
                        h.reader = rd;
                    }
                    self.try_finish(conn);
                } else if let Some(t) = self.conns.remove(&conn) {
                    t.reader.abort();
                    t.writer_task.abort();
                    self.core.handle_input(now, Input::Closed { conn, reason });
                }
            }
            Net::Released(conn, rd) => {
                if let Some(h) = self.handing.get_mut(&conn) {
                    h.reader = Some(rd);
                    self.try_finish(conn);
                }
            }
        }
    }

    /// The core handed `conn` over: stop its reader (what it already read is kept for the
    /// new owner) and let its writer finish what is queued, then give its half back.
    fn begin_handover(&mut self, conn: ConnId) {
        let Some(t) = self.conns.remove(&conn) else {
            return;
        };
        t.release.store(true, Ordering::SeqCst);
        let _ = t.stop_reader.send(());
        drop(t.writer);
        self.handing.insert(
            conn,
            Handing {
                unread: Vec::new(),
                reader: None,
                writer_task: Some(t.writer_task),
                waiter: None,
            },
        );
    }

    fn take(&mut self, conn: ConnId, reply: Reply<HandedOver>) {
        match self.handing.get_mut(&conn) {
            Some(h) if h.waiter.is_none() => {
                h.waiter = Some(reply);
                self.try_finish(conn);
            }
            _ => {
                let _ = reply.send(Err(DriverError::NotHandedOver(conn)));
            }
        }
    }

    /// Once the reader gave its half back (so every byte it read is in `unread`) and the
    /// user asked for the connection, joins the halves when the writer is done.
    fn try_finish(&mut self, conn: ConnId) {
        let ready = self
            .handing
            .get(&conn)
            .is_some_and(|h| h.reader.is_some() && h.waiter.is_some());
        if !ready {
            return;
        }
        let Some(h) = self.handing.remove(&conn) else {
            return;
        };
        let (Some(rd), Some(writer), Some(reply)) = (h.reader, h.writer_task, h.waiter) else {
            return;
        };
        let unread = h.unread;
        tokio::spawn(async move {
            let joined = match writer.await {
                Ok(Some(wr)) => rd.reunite(wr).ok(),
                _ => None,
            };
            let _ = reply.send(
                joined
                    .map(|s| (s, unread))
                    .ok_or(DriverError::HandoverFailed(conn)),
            );
        });
    }

    fn start_conn(&mut self, conn: ConnId, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        if let Some(idle) = self.cfg.keepalive {
            let ka = socket2::TcpKeepalive::new()
                .with_time(idle)
                .with_interval(self.cfg.keepalive_interval)
                .with_retries(KEEPALIVE_PROBES);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka) {
                tracing::debug!("keepalive on connection {conn:?}: {e}");
            }
        }
        let (mut rd, mut wr) = stream.into_split();
        let net = self.net_tx.clone();
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            let reason = loop {
                tokio::select! {
                    biased;
                    stop = &mut stop_rx => {
                        // A hand-over: what was read is on its way; give the half back.
                        // (Err: the driver dropped the connection and aborts this task.)
                        if stop.is_ok() {
                            let _ = net.send(Net::Released(conn, rd)).await;
                        }
                        return;
                    }
                    r = rd.read(&mut buf) => match r {
                        Ok(0) => break CloseReason::Closed,
                        Ok(n) => {
                            let data = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                            if net.send(Net::Data(conn, data)).await.is_err() {
                                return;
                            }
                        }
                        Err(_) => break CloseReason::Reset,
                    },
                }
            };
            let _ = net.send(Net::Ended(conn, reason, Some(rd))).await;
        });
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(self.cfg.send_queue.max(1));
        let net = self.net_tx.clone();
        let release = Arc::new(AtomicBool::new(false));
        let released = Arc::clone(&release);
        let writer_task = tokio::spawn(async move {
            while let Some(data) = wrx.recv().await {
                if wr.write_all(&data).await.is_err() {
                    let _ = net.send(Net::Ended(conn, CloseReason::Reset, None)).await;
                    return None;
                }
            }
            // Everything queued is written. A hand-over takes the half back; a close sends FIN.
            if released.load(Ordering::SeqCst) {
                return Some(wr);
            }
            let _ = wr.shutdown().await;
            None
        });
        self.conns.insert(
            conn,
            ConnTasks {
                writer: wtx,
                reader,
                writer_task,
                stop_reader: stop_tx,
                release,
            },
        );
    }

    async fn drain(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.transmit(t).await;
        }
        while let Some(e) = self.core.poll_event() {
            if let Some(conn) = self.handover_of.and_then(|f| f(&e)) {
                self.begin_handover(conn);
            }
            match self.events.try_send(e) {
                Ok(()) => {}
                // The user has gone (handle dropped or shut down): nobody will read it.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    let n = Counters::bump(&self.counters.event_queue_full);
                    if n.is_power_of_two() {
                        tracing::info!(
                            waits = n,
                            queue = self.cfg.event_queue,
                            "event queue full: waiting for the user to collect events"
                        );
                    }
                    // Err only when the user has gone: then the event has no reader.
                    let _ = self.events.send(e).await;
                }
            }
        }
    }

    async fn transmit(&mut self, t: Transmit) {
        match t {
            Transmit::Datagram { to, data } => {
                if let Some(s) = &self.udp {
                    if let Err(e) = s.send_to(&data, to).await {
                        tracing::debug!(%to, "datagram not sent: {e}");
                    }
                }
            }
            Transmit::Connect { conn, to } => {
                if self.conns.contains_key(&conn) || self.connecting.contains_key(&conn) {
                    tracing::warn!(?conn, "core reused a live connection id");
                    return;
                }
                let net = self.net_tx.clone();
                let timeout = self.cfg.connect_timeout;
                let h = tokio::spawn(async move {
                    let r = tokio::time::timeout(timeout, TcpStream::connect(to)).await;
                    let msg = match r {
                        Ok(Ok(s)) => Net::Connected(conn, s, to),
                        _ => Net::ConnectFailed(conn),
                    };
                    let _ = net.send(msg).await;
                });
                self.connecting.insert(conn, h);
            }
            Transmit::Send { conn, data } => {
                let Some(c) = self.conns.get(&conn) else {
                    return;
                };
                match c.writer.try_send(data) {
                    Ok(()) => return,
                    // The writer failed and has ended; its Net::Ended(Reset) is on the way.
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                }
                {
                    let n = Counters::bump(&self.counters.slow_peer_closes);
                    tracing::debug!(?conn, slow_peers = n, "send queue full: closing slow peer");
                    if let Some(t) = self.conns.remove(&conn) {
                        t.reader.abort();
                        t.writer_task.abort();
                    }
                    let now = self.now();
                    self.core.handle_input(
                        now,
                        Input::Closed {
                            conn,
                            reason: CloseReason::SlowPeer,
                        },
                    );
                }
            }
            Transmit::Close { conn } => {
                if let Some(t) = self.conns.remove(&conn) {
                    // dropping the writer's sender lets it flush and send FIN
                    t.reader.abort();
                    drop(t.writer);
                    self.closing.retain(|h| !h.is_finished());
                    self.closing.push(t.writer_task);
                } else if let Some(h) = self.connecting.remove(&conn) {
                    h.abort();
                }
            }
        }
    }

    fn close_all(&mut self) {
        for (_, t) in std::mem::take(&mut self.conns) {
            t.reader.abort();
            t.writer_task.abort();
        }
        for (_, h) in std::mem::take(&mut self.connecting) {
            h.abort();
        }
        for h in self.closing.drain(..) {
            h.abort();
        }
        for (_, h) in std::mem::take(&mut self.handing) {
            if let Some(w) = h.writer_task {
                w.abort();
            }
        }
    }
}
