//! The virtual network's promises, checked with a scripted core that does what it is told
//! and reports every input it sees.

use std::net::SocketAddr;

use servent_core::{CloseReason, ConnId, Core, Input, Instant, Transmit};
use servent_sim::{Dist, NodeId, NodeOpts, Sim, SimConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Datagram(SocketAddr, Vec<u8>),
    Connected(ConnId, SocketAddr),
    ConnectFailed(ConnId),
    Received(ConnId, Vec<u8>),
    Closed(ConnId, CloseReason),
}

#[derive(Default, Debug)]
struct Scripted {
    out: Vec<Transmit>,
    seen: Vec<Seen>,
}

impl Core for Scripted {
    type Command = Transmit;
    type Event = Seen;
    fn handle_input(&mut self, _now: Instant, input: Input<'_, Transmit>) {
        let s = match input {
            Input::Command(t) => {
                self.out.push(t);
                return;
            }
            Input::Datagram { from, data } => Seen::Datagram(from, data.to_vec()),
            Input::Connected { conn, peer } => Seen::Connected(conn, peer),
            Input::ConnectFailed { conn } => Seen::ConnectFailed(conn),
            Input::Received { conn, data } => Seen::Received(conn, data.to_vec()),
            Input::Closed { conn, reason } => Seen::Closed(conn, reason),
            _ => return,
        };
        self.seen.push(s);
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.remove(0))
        }
    }
    fn poll_event(&mut self) -> Option<Seen> {
        if self.seen.is_empty() {
            None
        } else {
            Some(self.seen.remove(0))
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

fn sim(latency_ms: f64) -> Sim<Scripted> {
    Sim::new(SimConfig {
        seed: 1,
        latency_ms: Dist::Constant(latency_ms),
        ..SimConfig::default()
    })
}

fn events_of(sim: &mut Sim<Scripted>, n: NodeId) -> Vec<(Instant, Seen)> {
    sim.take_events()
        .into_iter()
        .filter(|(_, m, _)| *m == n)
        .map(|(t, _, e)| (t, e))
        .collect()
}

#[test]
fn one_mib_over_a_one_megabyte_uplink_takes_about_a_second() {
    let mut s = sim(10.0);
    let a = s.add_node(
        Scripted::default(),
        NodeOpts {
            up_bps: Some(1_000_000),
            ..NodeOpts::default()
        },
    );
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to = s.addr(b);
    s.command(
        a,
        Transmit::Datagram {
            to,
            data: vec![7; 1 << 20],
        },
    );
    s.run_until_idle(Instant::from_secs(10));
    let ev = events_of(&mut s, b);
    assert_eq!(ev.len(), 1);
    let t = ev[0].0.as_secs_f64();
    // 1 048 604 bytes at 1 MB/s = 1.0486 s, plus 10 ms of latency
    assert!((t - 1.0586).abs() < 0.001, "arrived at {t}");
}

#[test]
fn uplink_queues_messages_in_order() {
    let mut s = sim(5.0);
    let a = s.add_node(
        Scripted::default(),
        NodeOpts {
            up_bps: Some(100_000),
            ..NodeOpts::default()
        },
    );
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to = s.addr(b);
    for i in 0..3u8 {
        s.command(
            a,
            Transmit::Datagram {
                to,
                data: vec![i; 99_972],
            },
        ); // 100 000 bytes on the wire
    }
    s.run_until_idle(Instant::from_secs(10));
    let times: Vec<f64> = events_of(&mut s, b)
        .iter()
        .map(|(t, _)| t.as_secs_f64())
        .collect();
    assert_eq!(times.len(), 3);
    for (i, t) in times.iter().enumerate() {
        assert!((t - (i as f64 + 1.0 + 0.005)).abs() < 1e-3, "{times:?}");
    }
}

#[test]
fn a_busy_uplink_is_shared_fairly_between_connections() {
    // 100 kB/s uplink; ten 10 kB messages queue on the connection to b, then one small
    // message goes to c: it waits for one of b's messages, not for all ten.
    let mut s = sim(5.0);
    let a = s.add_node(
        Scripted::default(),
        NodeOpts {
            up_bps: Some(100_000),
            ..NodeOpts::default()
        },
    );
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let c = s.add_node(Scripted::default(), NodeOpts::default());
    let (to_b, to_c) = (ConnId::outbound(1), ConnId::outbound(2));
    let (bb, ca) = (s.addr(b), s.addr(c));
    s.command(a, Transmit::Connect { conn: to_b, to: bb });
    s.command(a, Transmit::Connect { conn: to_c, to: ca });
    s.run_until_idle(Instant::from_secs(1));
    s.take_events();
    let t0 = s.now().as_secs_f64();
    for i in 0..10u8 {
        let data = vec![i; 10_000 - 40]; // 10 000 bytes on the wire: 0.1 s each
        s.command(a, Transmit::Send { conn: to_b, data });
    }
    s.command(a, Transmit::Close { conn: to_b });
    s.command(
        a,
        Transmit::Send {
            conn: to_c,
            data: b"small".to_vec(),
        },
    );
    s.run_until_idle(Instant::from_secs(10));
    let all = s.take_events();
    let of = |n: NodeId| -> Vec<(Instant, Seen)> {
        all.iter()
            .filter(|(_, m, _)| *m == n)
            .map(|(t, _, e)| (*t, e.clone()))
            .collect()
    };
    let (at_b, at_c) = (of(b), of(c));
    assert_eq!(at_c.len(), 1, "{at_c:?}");
    let small = at_c[0].0.as_secs_f64() - t0;
    // one of b's messages (0.1 s) + 45 bytes + 5 ms latency; a FIFO uplink would take 1 s
    assert!(small < 0.11, "the small message waited {small} s");
    // b still gets its messages in order, each 0.1 s apart, and the close after them
    assert_eq!(at_b.len(), 11, "{at_b:?}");
    for (i, (t, e)) in at_b[..10].iter().enumerate() {
        assert!(
            matches!(e, Seen::Received(_, d) if d[0] == i as u8),
            "{e:?}"
        );
        let want = 0.1 * (i + 1) as f64 + 0.005 + if i > 0 { 0.00045 } else { 0.0 };
        assert!(
            (t.as_secs_f64() - t0 - want).abs() < 1e-3,
            "message {i} at {t:?}"
        );
    }
    assert!(matches!(at_b[10].1, Seen::Closed(_, CloseReason::Closed)));
    assert!(at_b[10].0 >= at_b[9].0);
}

#[test]
fn connections_deliver_in_order_and_close() {
    let mut s = sim(20.0);
    let a = s.add_node(Scripted::default(), NodeOpts::default());
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let (aa, ba) = (s.addr(a), s.addr(b));
    let c = ConnId::outbound(0);
    s.command(a, Transmit::Connect { conn: c, to: ba });
    s.command(
        a,
        Transmit::Send {
            conn: c,
            data: b"early".to_vec(),
        },
    );
    s.run_until_idle(Instant::from_secs(1));
    for i in 0..50u8 {
        s.command(
            a,
            Transmit::Send {
                conn: c,
                data: vec![i],
            },
        );
    }
    s.command(a, Transmit::Close { conn: c });
    s.run_until_idle(Instant::from_secs(5));
    let all = s.take_events();
    let at_a: Vec<Seen> = all
        .iter()
        .filter(|(_, n, _)| *n == a)
        .map(|(_, _, e)| e.clone())
        .collect();
    assert_eq!(at_a, vec![Seen::Connected(c, ba)]);
    let at_b: Vec<(Instant, Seen)> = all
        .iter()
        .filter(|(_, n, _)| *n == b)
        .map(|(t, _, e)| (*t, e.clone()))
        .collect();
    let inbound = ConnId::inbound(0);
    assert_eq!(
        at_b[0],
        (Instant::from_millis(20), Seen::Connected(inbound, aa))
    );
    assert_eq!(at_b[1].1, Seen::Received(inbound, b"early".to_vec()));
    let bytes: Vec<u8> = at_b[2..52]
        .iter()
        .map(|(_, e)| match e {
            Seen::Received(_, d) => d[0],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bytes, (0..50).collect::<Vec<u8>>());
    assert_eq!(at_b[52].1, Seen::Closed(inbound, CloseReason::Closed));
    assert_eq!(at_b.len(), 53);
}

#[test]
fn firewalled_dead_and_absent_nodes_time_out_and_death_resets() {
    let mut s = sim(10.0);
    let a = s.add_node(Scripted::default(), NodeOpts::default());
    let fw = s.add_node(
        Scripted::default(),
        NodeOpts {
            firewalled: true,
            ..NodeOpts::default()
        },
    );
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to_fw = s.addr(fw);
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(1),
            to: to_fw,
        },
    );
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(2),
            to: "10.9.9.9:1".parse().unwrap(),
        },
    );
    let to_b = s.addr(b);
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(3),
            to: to_b,
        },
    );
    let closed_port = std::net::SocketAddr::new(to_b.ip(), to_b.port() + 1);
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(4),
            to: closed_port,
        },
    );
    // the firewalled node can still connect out
    let to_a = s.addr(a);
    s.command(
        fw,
        Transmit::Connect {
            conn: ConnId::outbound(9),
            to: to_a,
        },
    );
    s.run_until_idle(Instant::from_secs(1));
    s.kill(b);
    s.run_until_idle(Instant::from_secs(10));
    let at_a: Vec<(Instant, Seen)> = events_of(&mut s, a);
    assert!(
        at_a.contains(&(
            Instant::from_secs(3),
            Seen::ConnectFailed(ConnId::outbound(1))
        )),
        "{at_a:?}"
    );
    assert!(at_a.contains(&(
        Instant::from_secs(3),
        Seen::ConnectFailed(ConnId::outbound(2))
    )));
    assert!(
        at_a.iter()
            .any(|(_, e)| *e == Seen::Connected(ConnId::outbound(3), to_b))
    );
    assert!(at_a.iter().any(|(t, e)| *t == Instant::from_millis(1010)
        && *e == Seen::Closed(ConnId::outbound(3), CloseReason::Reset)));
    assert!(
        at_a.iter()
            .any(|(_, e)| matches!(e, Seen::Connected(c, p) if c.is_inbound() && *p == to_fw))
    );
}

#[test]
fn partitions_drop_datagrams_and_reset_connections() {
    let mut s = sim(10.0);
    let a = s.add_node(Scripted::default(), NodeOpts::default());
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to_b = s.addr(b);
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(0),
            to: to_b,
        },
    );
    s.run_until_idle(Instant::from_secs(1));
    s.partition(|n| n.0 as u16);
    s.command(
        a,
        Transmit::Datagram {
            to: to_b,
            data: vec![1],
        },
    );
    s.run_until_idle(Instant::from_secs(2));
    let ev = s.take_events();
    assert!(ev.iter().any(|(_, n, e)| *n == a && *e == Seen::Closed(ConnId::outbound(0), CloseReason::Reset)));
    assert!(
        ev.iter()
            .any(|(_, n, e)| *n == b && matches!(e, Seen::Closed(_, CloseReason::Reset)))
    );
    assert!(!ev.iter().any(|(_, _, e)| matches!(e, Seen::Datagram(..))));
    s.heal();
    s.command(
        a,
        Transmit::Datagram {
            to: to_b,
            data: vec![2],
        },
    );
    s.run_until_idle(Instant::from_secs(3));
    assert_eq!(s.take_events().len(), 1);
}

#[test]
fn datagram_loss_rate_is_respected() {
    let mut s = Sim::new(SimConfig {
        seed: 5,
        loss: 0.2,
        latency_ms: Dist::Constant(1.0),
        ..SimConfig::default()
    });
    let a = s.add_node(Scripted::default(), NodeOpts::default());
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to = s.addr(b);
    for _ in 0..10_000 {
        s.command(a, Transmit::Datagram { to, data: vec![0] });
    }
    s.run_until_idle(Instant::from_secs(10));
    let got = s.take_events().len();
    assert!(
        (7_700..8_300).contains(&got),
        "{got} of 10000 arrived at 20% loss"
    );
}

#[test]
fn churn_takes_nodes_down_and_brings_fresh_cores_back() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut s = sim(10.0);
    let a = s.add_node(Scripted::default(), NodeOpts::default());
    let b = s.add_node(Scripted::default(), NodeOpts::default());
    let to_b = s.addr(b);
    s.command(
        a,
        Transmit::Connect {
            conn: ConnId::outbound(0),
            to: to_b,
        },
    );
    let joins = Rc::new(Cell::new(0));
    let counter = joins.clone();
    s.set_churn(servent_sim::Churn {
        session_s: Dist::Constant(1.0),
        downtime_s: Dist::Constant(0.5),
        factory: Box::new(move |_, _, _| {
            counter.set(counter.get() + 1);
            (Scripted::default(), Vec::new())
        }),
    });
    s.run_until(Instant::from_millis(1200));
    // both left at 1 s: the connection was reset, nothing is alive
    assert!(!s.is_alive(a) && !s.is_alive(b));
    s.run_until(Instant::from_millis(1600));
    assert!(s.is_alive(a) && s.is_alive(b));
    assert_eq!(joins.get(), 2);
    // sessions repeat: 1 s up, 0.5 s down, until the run ends
    s.run_until(Instant::from_millis(4600));
    assert_eq!(joins.get(), 6);
    assert!(s.is_alive(a));
}
