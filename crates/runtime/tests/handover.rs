//! A core hands a connection over to the user (as Gnutella does when the first bytes show an
//! HTTP transfer): the user gets the socket with every byte the peer sent, in order, split
//! between what the core had seen and what the driver read after it, and the peer gets
//! everything the core queued before the hand-over, before anything the new owner writes.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use servent_core::{ConnId, Core, Input, Instant, Transmit};
use servent_runtime::{DriverError, NodeConfig, spawn_with_handover};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A core that reads each connection up to its first `\n`, then answers `WELCOME\n` and
/// hands the connection over with everything it has read (which may go past the line).
#[derive(Default)]
struct Sniffer {
    bufs: BTreeMap<ConnId, Vec<u8>>,
    handed: u64,
    events: VecDeque<Ev>,
    transmits: VecDeque<Transmit>,
}

#[derive(Debug)]
enum Ev {
    Handover { conn: ConnId, seen: Vec<u8> },
}

fn handover_of(e: &Ev) -> Option<ConnId> {
    match e {
        Ev::Handover { conn, .. } => Some(*conn),
    }
}

impl Core for Sniffer {
    type Command = ();
    type Event = Ev;

    fn handle_input(&mut self, _now: Instant, input: Input<'_, ()>) {
        match input {
            Input::Connected { conn, .. } => {
                self.bufs.insert(conn, Vec::new());
            }
            Input::Received { conn, data } => {
                let Some(buf) = self.bufs.get_mut(&conn) else {
                    panic!("the core got bytes of a connection it handed over");
                };
                buf.extend_from_slice(data);
                if buf.contains(&b'\n') {
                    let seen = self.bufs.remove(&conn).unwrap_or_default();
                    self.handed += 1;
                    self.transmits.push_back(Transmit::Send {
                        conn,
                        data: b"WELCOME\n".to_vec(),
                    });
                    self.events.push_back(Ev::Handover { conn, seen });
                }
            }
            Input::Closed { conn, .. } => {
                self.bufs.remove(&conn);
            }
            _ => {}
        }
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Ev> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

fn cfg() -> NodeConfig {
    NodeConfig {
        tcp: Some("127.0.0.1:0".parse().expect("addr")),
        ..NodeConfig::default()
    }
}

/// Byte `i` of the stream the peer sends after its first line.
fn body_byte(i: usize) -> u8 {
    (i % 253) as u8
}

async fn next_handover(node: &mut servent_runtime::NodeHandle<Sniffer>) -> (ConnId, Vec<u8>) {
    let e = tokio::time::timeout(Duration::from_secs(10), node.next_event())
        .await
        .expect("an event in time")
        .expect("the node runs");
    match e {
        Ev::Handover { conn, seen } => (conn, seen),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_bytes_arrive_intact_and_in_order() {
    let mut node = spawn_with_handover(cfg(), |_| Sniffer::default(), handover_of)
        .await
        .expect("spawn");
    let addr = node.local.tcp.expect("tcp");
    // The peer sends its line and a first burst in one write (so the core sees part of the
    // burst and the driver may read more before it stops), then a second burst later.
    let first = 300 * 1024;
    let second = 200 * 1024;
    let mut sent = b"GET /file\n".to_vec();
    sent.extend((0..first + second).map(body_byte));
    let line_and_first = sent.len() - second;
    let to_send = sent.clone();
    let peer = tokio::spawn(async move {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&to_send[..line_and_first])
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.write_all(&to_send[line_and_first..])
            .await
            .expect("write");
        // What the core queued comes first, then what the new owner writes.
        let mut got = vec![0u8; b"WELCOME\nBYE\n".len()];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .expect("answer in time")
            .expect("read");
        got
    });
    let (conn, seen) = next_handover(&mut node).await;
    let (mut stream, unread) = node.take_connection(conn).await.expect("taken");
    let mut all = seen;
    all.extend_from_slice(&unread);
    let mut buf = vec![0u8; 64 * 1024];
    while all.len() < sent.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("bytes in time")
            .expect("read");
        assert!(
            n > 0,
            "the peer closed after {} of {} bytes",
            all.len(),
            sent.len()
        );
        all.extend_from_slice(&buf[..n]);
    }
    assert_eq!(all.len(), sent.len());
    assert!(all == sent, "the bytes differ from what the peer sent");
    stream.write_all(b"BYE\n").await.expect("write");
    assert_eq!(peer.await.expect("peer"), b"WELCOME\nBYE\n");
    // The core was not fed the connection again, and it is gone from the driver.
    assert_eq!(
        node.inspect(|c| (c.handed, c.bufs.len()))
            .await
            .expect("inspect"),
        (1, 0)
    );
    assert!(matches!(
        node.take_connection(conn).await,
        Err(DriverError::NotHandedOver(c)) if c == conn
    ));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn only_a_handed_over_connection_can_be_taken() {
    let mut node = spawn_with_handover(cfg(), |_| Sniffer::default(), handover_of)
        .await
        .expect("spawn");
    let addr = node.local.tcp.expect("tcp");
    // A connection that never finishes its line stays the core's.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"no newline yet").await.expect("write");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"x\n").await.expect("write");
    let (conn, seen) = next_handover(&mut node).await;
    assert_eq!(seen, b"x\n");
    let idle_conn = ConnId::inbound(0);
    assert_ne!(conn, idle_conn, "the idle connection was accepted first");
    assert!(matches!(
        node.take_connection(idle_conn).await,
        Err(DriverError::NotHandedOver(_))
    ));
    // The peer reads the answer and hangs up before the user takes the connection: it is
    // still handed over, with its bytes, and the new owner sees the end of the stream.
    let mut welcome = [0u8; 8];
    s.read_exact(&mut welcome).await.expect("read");
    assert_eq!(&welcome, b"WELCOME\n");
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut stream, unread) = node.take_connection(conn).await.expect("taken");
    assert!(unread.is_empty());
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("end in time")
        .expect("read");
    assert_eq!(n, 0);
    node.shutdown().await.expect("shutdown");
}
