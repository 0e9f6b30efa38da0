//! The example protocol that proves the contract: ping/pong with a timeout, over datagrams
//! and over stream connections. The same core runs over real sockets (`servent-runtime`) and
//! in the simulator (`servent-sim`), and reports the same events in both.
//!
//! Wire format (both transports): one message is 9 bytes, a type byte (`0x01` ping,
//! `0x02` pong) and the ping id as 8 bytes little-endian. On a stream each message is
//! prefixed with its length as one byte (always 9), so the framing helpers are exercised.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::contract::{ConnId, Core, Input, Transmit};
use crate::framing::{Endian, FrameSpec, RecvBuf};
use crate::time::Instant;

const PING: u8 = 0x01;
const PONG: u8 = 0x02;
const MSG_LEN: usize = 9;
const STREAM: FrameSpec = FrameSpec::length_prefixed(1, Endian::Little, MSG_LEN);
/// At most this many pings outstanding; more are refused with [`PingEvent::Refused`].
pub const MAX_PENDING: usize = 4096;
/// At most this many open connections (inbound and outbound together).
pub const MAX_CONNS: usize = 1024;
const MAX_QUEUE: usize = 8192;

/// How a ping travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One UDP datagram each way.
    Datagram,
    /// A fresh TCP connection: connect, ping, pong, close.
    Stream,
}

/// A user command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// Chosen by the user; the completion event repeats it.
    pub id: u64,
    /// Whom to ping.
    pub to: SocketAddr,
    /// Over which transport.
    pub transport: Transport,
}

/// What the node reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingEvent {
    /// Our ping `id` was answered after `rtt`.
    Pong {
        /// The command's id.
        id: u64,
        /// Round-trip time measured with the `now` values handed in.
        rtt: Duration,
    },
    /// Our ping `id` got no answer within the timeout.
    Timeout {
        /// The command's id.
        id: u64,
    },
    /// The stream connection for ping `id` could not be made or broke first.
    Failed {
        /// The command's id.
        id: u64,
    },
    /// Ping `id` was refused: too many outstanding.
    Refused {
        /// The command's id.
        id: u64,
    },
    /// A peer pinged us (we answered).
    Pinged {
        /// Who.
        from: SocketAddr,
    },
}

impl PingEvent {
    /// The event without its measured times, for comparing runs across drivers.
    pub fn kind(&self) -> String {
        match self {
            PingEvent::Pong { id, .. } => format!("pong:{id}"),
            PingEvent::Timeout { id } => format!("timeout:{id}"),
            PingEvent::Failed { id } => format!("failed:{id}"),
            PingEvent::Refused { id } => format!("refused:{id}"),
            PingEvent::Pinged { .. } => "pinged".to_string(),
        }
    }
}

#[derive(Debug)]
struct Pending {
    sent: Instant,
    deadline: Instant,
    conn: Option<ConnId>,
}

#[derive(Debug)]
struct Conn {
    buf: RecvBuf,
    /// The ping this outbound connection carries.
    ping: Option<u64>,
}

/// The ping/pong core.
#[derive(Debug)]
pub struct PingPong {
    timeout: Duration,
    pending: BTreeMap<u64, Pending>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<PingEvent>,
}

fn encode(kind: u8, id: u64) -> [u8; MSG_LEN] {
    let mut m = [0u8; MSG_LEN];
    m[0] = kind;
    m[1..].copy_from_slice(&id.to_le_bytes());
    m
}

fn decode(data: &[u8]) -> Option<(u8, u64)> {
    if data.len() != MSG_LEN || !(data[0] == PING || data[0] == PONG) {
        return None;
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&data[1..]);
    Some((data[0], u64::from_le_bytes(id)))
}

impl PingPong {
    /// A node whose pings time out after `timeout`.
    pub fn new(timeout: Duration) -> PingPong {
        PingPong {
            timeout,
            pending: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Pings still waiting for an answer.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn emit(&mut self, e: PingEvent) {
        if self.events.len() < MAX_QUEUE {
            self.events.push_back(e);
        }
    }

    fn send(&mut self, t: Transmit) {
        if self.transmits.len() < MAX_QUEUE {
            self.transmits.push_back(t);
        }
    }

    fn command(&mut self, now: Instant, cmd: Ping) {
        if self.pending.len() >= MAX_PENDING
            || self.pending.contains_key(&cmd.id)
            || (cmd.transport == Transport::Stream && self.conns.len() >= MAX_CONNS)
        {
            self.emit(PingEvent::Refused { id: cmd.id });
            return;
        }
        let mut p = Pending {
            sent: now,
            deadline: now + self.timeout,
            conn: None,
        };
        match cmd.transport {
            Transport::Datagram => self.send(Transmit::Datagram {
                to: cmd.to,
                data: encode(PING, cmd.id).to_vec(),
            }),
            Transport::Stream => {
                let conn = ConnId::outbound(self.next_conn);
                self.next_conn += 1;
                self.conns.insert(
                    conn,
                    Conn {
                        buf: RecvBuf::new(STREAM.max_frame_len() * 4),
                        ping: Some(cmd.id),
                    },
                );
                p.conn = Some(conn);
                self.send(Transmit::Connect { conn, to: cmd.to });
            }
        }
        self.pending.insert(cmd.id, p);
    }

    fn answered(&mut self, now: Instant, id: u64) {
        if let Some(p) = self.pending.remove(&id) {
            if let Some(conn) = p.conn {
                self.conns.remove(&conn);
                self.send(Transmit::Close { conn });
            }
            self.emit(PingEvent::Pong {
                id,
                rtt: now - p.sent,
            });
        }
    }

    fn fail_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            if let Some(id) = c.ping {
                if self.pending.remove(&id).is_some() {
                    self.emit(PingEvent::Failed { id });
                }
            }
        }
    }

    fn stream_bytes(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut msgs = Vec::new();
        let mut bad = c.buf.extend(data).is_err();
        while !bad {
            match c.buf.next_frame(&STREAM) {
                Ok(Some(f)) => match decode(f.payload) {
                    Some(m) => msgs.push(m),
                    None => bad = true,
                },
                Ok(None) => break,
                Err(_) => bad = true,
            }
        }
        if bad {
            // A peer that sends garbage is disconnected.
            self.send(Transmit::Close { conn });
            self.fail_conn(conn);
            return;
        }
        for (kind, id) in msgs {
            match kind {
                PING => {
                    let mut out = vec![MSG_LEN as u8];
                    out.extend_from_slice(&encode(PONG, id));
                    self.send(Transmit::Send { conn, data: out });
                }
                _ => self.answered(now, id),
            }
        }
    }
}

impl Core for PingPong {
    type Command = Ping;
    type Event = PingEvent;

    fn handle_input(&mut self, now: Instant, input: Input<'_, Ping>) {
        match input {
            Input::Command(cmd) => self.command(now, cmd),
            Input::Datagram { from, data } => match decode(data) {
                Some((PING, id)) => {
                    self.send(Transmit::Datagram {
                        to: from,
                        data: encode(PONG, id).to_vec(),
                    });
                    self.emit(PingEvent::Pinged { from });
                }
                // Only a pong for a datagram ping counts.
                Some((_, id)) if self.pending.get(&id).is_some_and(|p| p.conn.is_none()) => {
                    self.answered(now, id);
                }
                Some(_) | None => {}
            },
            Input::Connected { conn, peer } => {
                if conn.is_inbound() {
                    if self.conns.len() >= MAX_CONNS {
                        self.send(Transmit::Close { conn });
                        return;
                    }
                    self.conns.insert(
                        conn,
                        Conn {
                            buf: RecvBuf::new(STREAM.max_frame_len() * 4),
                            ping: None,
                        },
                    );
                    self.emit(PingEvent::Pinged { from: peer });
                } else if let Some(id) = self.conns.get(&conn).and_then(|c| c.ping) {
                    let mut out = vec![MSG_LEN as u8];
                    out.extend_from_slice(&encode(PING, id));
                    self.send(Transmit::Send { conn, data: out });
                }
            }
            Input::ConnectFailed { conn } => self.fail_conn(conn),
            Input::Received { conn, data } => self.stream_bytes(now, conn, data),
            Input::Closed { conn, .. } => self.fail_conn(conn),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(p) = self.pending.remove(&id) {
                if let Some(conn) = p.conn {
                    self.conns.remove(&conn);
                    self.send(Transmit::Close { conn });
                }
                self.emit(PingEvent::Timeout { id });
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<PingEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.deadline).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn datagram_ping_is_answered_and_measured() {
        let mut a = PingPong::new(Duration::from_secs(1));
        let mut b = PingPong::new(Duration::from_secs(1));
        let (aa, ba) = (addr("127.0.0.1:1"), addr("127.0.0.2:1"));
        a.handle_input(
            Instant::ZERO,
            Input::Command(Ping {
                id: 5,
                to: ba,
                transport: Transport::Datagram,
            }),
        );
        let Some(Transmit::Datagram { to, data }) = a.poll_transmit() else {
            panic!("no ping")
        };
        assert_eq!(to, ba);
        b.handle_input(
            Instant::from_millis(10),
            Input::Datagram {
                from: aa,
                data: &data,
            },
        );
        let Some(Transmit::Datagram { to, data }) = b.poll_transmit() else {
            panic!("no pong")
        };
        assert_eq!(to, aa);
        a.handle_input(
            Instant::from_millis(20),
            Input::Datagram {
                from: ba,
                data: &data,
            },
        );
        assert_eq!(
            a.poll_event(),
            Some(PingEvent::Pong {
                id: 5,
                rtt: Duration::from_millis(20)
            })
        );
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn unanswered_ping_times_out_once() {
        let mut a = PingPong::new(Duration::from_secs(1));
        a.handle_input(
            Instant::ZERO,
            Input::Command(Ping {
                id: 1,
                to: addr("127.0.0.9:9"),
                transport: Transport::Datagram,
            }),
        );
        assert_eq!(a.poll_timeout(), Some(Instant::from_secs(1)));
        a.handle_timeout(Instant::from_millis(999));
        assert_eq!(a.poll_event(), None);
        a.handle_timeout(Instant::from_secs(1));
        assert_eq!(a.poll_event(), Some(PingEvent::Timeout { id: 1 }));
        a.handle_timeout(Instant::from_secs(2));
        assert_eq!(a.poll_event(), None);
    }

    #[test]
    fn garbage_on_a_stream_disconnects() {
        let mut b = PingPong::new(Duration::from_secs(1));
        let conn = ConnId::inbound(0);
        b.handle_input(
            Instant::ZERO,
            Input::Connected {
                conn,
                peer: addr("127.0.0.1:5"),
            },
        );
        b.handle_input(
            Instant::ZERO,
            Input::Received {
                conn,
                data: &[200, 1, 2],
            },
        );
        assert_eq!(b.poll_transmit(), Some(Transmit::Close { conn }));
        assert_eq!(b.connections(), 0);
    }
}
