//! The driver's bounded queues never lose anything silently: events wait for a slow user,
//! a peer that does not read is closed as a whole and counted, and shutdown never waits
//! for a user who stopped collecting.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Transmit};
use servent_runtime::{NodeConfig, spawn};

/// A core that emits numbered events and floods every accepted connection.
#[derive(Default)]
struct Burst {
    next: u64,
    events: VecDeque<Ev>,
    transmits: VecDeque<Transmit>,
    /// Bytes queued on each connection, written as a counting sequence.
    flood: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    N(u64),
    Accepted(ConnId),
    Closed(ConnId, CloseReason),
}

/// Byte `i` of the flood stream.
fn flood_byte(i: usize) -> u8 {
    (i % 251) as u8
}

impl Core for Burst {
    type Command = u64;
    type Event = Ev;

    fn handle_input(&mut self, _now: Instant, input: Input<'_, u64>) {
        match input {
            Input::Command(n) => {
                for _ in 0..n {
                    self.events.push_back(Ev::N(self.next));
                    self.next += 1;
                }
            }
            Input::Connected { conn, .. } => {
                self.events.push_back(Ev::Accepted(conn));
                let chunk = 16 * 1024;
                for start in (0..self.flood).step_by(chunk) {
                    let data = (start..(start + chunk).min(self.flood))
                        .map(flood_byte)
                        .collect();
                    self.transmits.push_back(Transmit::Send { conn, data });
                }
            }
            Input::Closed { conn, reason } => self.events.push_back(Ev::Closed(conn, reason)),
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

fn cfg(event_queue: usize) -> NodeConfig {
    NodeConfig {
        event_queue,
        ..NodeConfig::default()
    }
}

#[tokio::test]
async fn a_user_that_collects_events_slowly_receives_every_event_in_order() {
    let mut node = spawn(cfg(8), |_| Burst::default()).await.expect("spawn");
    node.command(3_000).await.expect("command");
    let mut got = Vec::new();
    while got.len() < 3_000 {
        let e = tokio::time::timeout(Duration::from_secs(10), node.next_event())
            .await
            .expect("events keep coming")
            .expect("node alive");
        if let Ev::N(n) = e {
            got.push(n);
        }
        if got.len() % 500 == 0 {
            // a user busy elsewhere: the node must wait, not drop
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(got.iter().copied().eq(0..3_000), "events lost or reordered");
    let stats = node.stats();
    assert!(stats.event_queue_full > 0, "{stats:?}");
    // the node still works after waiting
    node.command(1).await.expect("command");
    let e = tokio::time::timeout(Duration::from_secs(10), node.next_event())
        .await
        .expect("event");
    assert_eq!(e, Some(Ev::N(3_000)));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn shutdown_returns_while_the_node_waits_for_a_user_who_stopped_collecting() {
    let node = spawn(cfg(4), |_| Burst::default()).await.expect("spawn");
    node.command(1_000).await.expect("command");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(node.stats().event_queue_full > 0);
    let core = tokio::time::timeout(Duration::from_secs(10), node.shutdown())
        .await
        .expect("shutdown does not hang")
        .expect("core back");
    assert_eq!(core.next, 1_000);
}

#[tokio::test]
async fn a_peer_that_does_not_read_is_closed_as_slow_and_what_it_got_is_a_clean_prefix() {
    let flood = 64 << 20;
    let cfg = NodeConfig {
        tcp: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        send_queue: 4,
        ..NodeConfig::default()
    };
    let mut node = spawn(cfg, |_| Burst {
        flood,
        ..Burst::default()
    })
    .await
    .expect("spawn");
    let addr = node.local.tcp.expect("listening");
    let mut peer = tokio::task::spawn_blocking(move || {
        let s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    })
    .await
    .expect("join");
    let mut reasons = Vec::new();
    while reasons.is_empty() {
        match tokio::time::timeout(Duration::from_secs(10), node.next_event())
            .await
            .expect("the slow peer is closed")
            .expect("node alive")
        {
            Ev::Closed(_, reason) => reasons.push(reason),
            Ev::Accepted(_) | Ev::N(_) => {}
        }
    }
    assert_eq!(reasons, [CloseReason::SlowPeer]);
    assert_eq!(node.stats().slow_peer_closes, 1);
    // Whatever reached the peer is the start of the stream, with no hole in it.
    let got = tokio::task::spawn_blocking(move || {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match peer.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    })
    .await
    .expect("join");
    assert!(
        got.len() < flood,
        "the flood cannot all have fit in the queues"
    );
    assert!(
        got.iter().enumerate().all(|(i, &b)| b == flood_byte(i)),
        "the peer's stream has a hole"
    );
    node.shutdown().await.expect("shutdown");
}
