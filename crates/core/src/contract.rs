//! The contract between a protocol core and the driver that runs it (DESIGN.md §1).
//!
//! A core is a plain state machine. It owns no socket, no clock and no thread. A driver — the
//! tokio driver in `servent-runtime` over real sockets, or the simulator in `servent-sim` over
//! a virtual network — feeds it [`Input`]s and drains what it wants done.
//!
//! # The run loop
//! ```text
//! loop {
//!     wait for: a datagram, connection news, bytes on a connection, a user command,
//!               or the instant returned by core.poll_timeout()
//!     core.handle_input(now, input)          // or core.handle_timeout(now) when the timer fired
//!     while let Some(t) = core.poll_transmit() { carry it out }   // 1. the network first,
//!     while let Some(e) = core.poll_event()    { hand it to the user }   // 2. then the user,
//!     re-arm the timer with core.poll_timeout()                        // 3. then the timer.
//! }
//! ```
//! `now` never goes backwards between two calls. A driver calls `handle_timeout` when the
//! instant from `poll_timeout` has been reached; calling it early is harmless (a core ignores
//! timers that are not due).
//!
//! # Connections
//! Stream transports (TCP) are named by [`ConnId`]. A core opens one with
//! [`Transmit::Connect`] and an id it picks with [`ConnId::outbound`]; the driver names
//! connections it accepted with [`ConnId::inbound`] ids, so the two never collide. Then:
//! - [`Input::Connected`] when the connection is up (both directions);
//! - [`Input::ConnectFailed`] when it could not be made (refused, unreachable, timed out);
//! - [`Input::Received`] with bytes in order; a core keeps its own reassembly buffer
//!   (see [`crate::framing`]) because a read may end anywhere in a message;
//! - [`Input::Closed`] when the peer closed or the connection broke.
//!
//! After a core sends [`Transmit::Close`], the driver reports nothing more about that id.

use std::net::SocketAddr;

use crate::time::Instant;

/// Names one stream connection of one node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ConnId(u64);

const INBOUND_BIT: u64 = 1 << 63;

impl ConnId {
    /// The id of an outbound connection, picked by the core (`n < 2^63`).
    pub const fn outbound(n: u64) -> ConnId {
        ConnId(n & !INBOUND_BIT)
    }

    /// The id of an inbound connection, picked by the driver (`n < 2^63`).
    pub const fn inbound(n: u64) -> ConnId {
        ConnId(n | INBOUND_BIT)
    }

    /// Whether the peer opened this connection.
    pub const fn is_inbound(self) -> bool {
        self.0 & INBOUND_BIT != 0
    }

    /// The raw value (for logs and maps).
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side in order (FIN).
    Closed,
    /// The connection broke: reset by the peer, the peer's host died, or an I/O error.
    Reset,
    /// The driver gave up on a peer that does not read what we send (its send queue is full).
    SlowPeer,
}

/// Something that happened, handed to a core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a, C> {
    /// A command from the user of the node.
    Command(C),
    /// A datagram arrived on the node's UDP socket.
    Datagram {
        /// Sender.
        from: SocketAddr,
        /// Payload.
        data: &'a [u8],
    },
    /// A connection is up: one we asked for with [`Transmit::Connect`], or one the driver
    /// accepted (then `conn.is_inbound()`).
    Connected {
        /// The connection.
        conn: ConnId,
        /// The remote address.
        peer: SocketAddr,
    },
    /// An outbound connection could not be made.
    ConnectFailed {
        /// The connection we asked for.
        conn: ConnId,
    },
    /// Bytes arrived on a connection, in order.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: &'a [u8],
    },
    /// The connection ended from the other side or broke.
    Closed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
}

/// Something a core wants the driver to do on the network.
///
/// Not `#[non_exhaustive]`: every driver must carry out every kind, so a new kind is a
/// compile error in each driver until it is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// Send one datagram.
    Datagram {
        /// Destination.
        to: SocketAddr,
        /// Payload.
        data: Vec<u8>,
    },
    /// Open a stream connection.
    Connect {
        /// The id the core picked ([`ConnId::outbound`]).
        conn: ConnId,
        /// Where to.
        to: SocketAddr,
    },
    /// Append bytes to a connection's outgoing stream.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close a connection after what was sent on it has been written.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

impl Transmit {
    /// Bytes of payload this transmit carries (0 for connect and close).
    pub fn payload_len(&self) -> usize {
        match self {
            Transmit::Datagram { data, .. } | Transmit::Send { data, .. } => data.len(),
            Transmit::Connect { .. } | Transmit::Close { .. } => 0,
        }
    }
}

/// A sans-IO protocol core, driven as the module documentation describes.
pub trait Core {
    /// Commands a user gives the node (search, download, lookup, …), each with its own id.
    type Command;
    /// What the node reports to its user; completion events repeat the command's id.
    type Event;

    /// Handles one input at `now`.
    fn handle_input(&mut self, now: Instant, input: Input<'_, Self::Command>);

    /// Handles the timer: called once `now >= poll_timeout()`.
    fn handle_timeout(&mut self, now: Instant);

    /// The next network action, `None` when there is none left.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event for the user, `None` when there is none left.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When the core next wants [`Core::handle_timeout`], `None` for never.
    fn poll_timeout(&self) -> Option<Instant>;
}
