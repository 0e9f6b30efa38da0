//! The contract's proof: the example protocol, driven by the simulator and by the tokio
//! driver over real UDP and TCP sockets on 127.0.0.1, reports the same sequence of events.

use std::net::SocketAddr;
use std::time::Duration;

use servent_core::Instant;
use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};
use servent_runtime::{NodeConfig, spawn};
use servent_sim::{NodeOpts, Sim, SimConfig};

/// The script: (id, target, transport). Targets: "b" is a live peer, "silent" takes
/// datagrams and connections into the void, "closed" is a port nobody listens on.
const SCRIPT: [(u64, &str, Transport); 4] = [
    (1, "b", Transport::Datagram),
    (2, "b", Transport::Stream),
    (3, "silent", Transport::Datagram),
    (4, "closed", Transport::Stream),
];

const EXPECTED: [&str; 4] = ["pong:1", "pong:2", "timeout:3", "failed:4"];

fn sim_run() -> Vec<String> {
    let mut sim = Sim::new(SimConfig {
        seed: 3,
        ..SimConfig::default()
    });
    let a = sim.add_node(
        PingPong::new(Duration::from_millis(800)),
        NodeOpts::default(),
    );
    let b = sim.add_node(
        PingPong::new(Duration::from_millis(800)),
        NodeOpts::default(),
    );
    let silent = sim.add_node(
        PingPong::new(Duration::from_millis(800)),
        NodeOpts::default(),
    );
    sim.kill(silent);
    let target = |name: &str, sim: &Sim<PingPong>| -> SocketAddr {
        match name {
            "b" => sim.addr(b),
            "silent" => sim.addr(silent),
            _ => SocketAddr::new(sim.addr(b).ip(), 9), // b's host, a port nobody listens on
        }
    };
    let mut seen = Vec::new();
    for (id, t, transport) in SCRIPT {
        let to = target(t, &sim);
        sim.command(a, Ping { id, to, transport });
        // run until node a reports the outcome of this ping
        let limit = sim.now() + Duration::from_secs(10);
        loop {
            sim.run_for(Duration::from_millis(10));
            let mut done = false;
            for (_, n, e) in sim.take_events() {
                if n == a && !matches!(e, PingEvent::Pinged { .. }) {
                    seen.push(e.kind());
                    done = true;
                }
            }
            if done || sim.now() > limit {
                break;
            }
        }
    }
    assert!(sim.now() < Instant::from_secs(30));
    seen
}

async fn real_run() -> Vec<String> {
    let cfg = NodeConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        connect_timeout: Duration::from_secs(2),
        ..NodeConfig::default()
    };
    let mut a = spawn(cfg.clone(), |_| PingPong::new(Duration::from_millis(800)))
        .await
        .unwrap();
    let b = spawn(cfg, |_| PingPong::new(Duration::from_millis(800)))
        .await
        .unwrap();
    // a bound UDP socket that never answers
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    // a port with no listener: bind, learn the port, close
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut seen = Vec::new();
    for (id, t, transport) in SCRIPT {
        let to = match (t, transport) {
            ("b", Transport::Datagram) => b.local.udp.unwrap(),
            ("b", Transport::Stream) => b.local.tcp.unwrap(),
            ("silent", _) => silent.local_addr().unwrap(),
            _ => closed,
        };
        a.command(Ping { id, to, transport }).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), a.next_event())
            .await
            .unwrap()
            .unwrap();
        seen.push(e.kind());
    }
    let core_a = a.shutdown().await.unwrap();
    let core_b = b.shutdown().await.unwrap();
    // nothing outlives the session: no ping outstanding, no connection left open
    assert_eq!((core_a.outstanding(), core_a.connections()), (0, 0));
    assert_eq!(core_b.outstanding(), 0);
    seen
}

#[tokio::test]
async fn same_events_in_the_simulator_and_over_real_sockets() {
    let sim = sim_run();
    let real = real_run().await;
    assert_eq!(sim, EXPECTED);
    assert_eq!(real, EXPECTED);
}
