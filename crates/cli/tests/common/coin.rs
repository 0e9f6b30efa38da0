//! A regtest `servent coin node` process for the coin CLI tests.

use std::path::Path;
use std::time::Duration;

use super::Proc;

/// A running regtest node: its process (SIGKILLed on drop), P2P and RPC addresses, and the
/// chain height it printed at start.
pub struct CoinNode {
    pub proc: Proc,
    pub p2p: String,
    pub rpc: String,
    pub height: u32,
}

/// Starts `servent coin node --network regtest` on 127.0.0.1 with its data in `data`, dialling
/// `peer` if given, and waits (30 s at most each) for its `p2p`, `rpc` and `height` lines.
pub fn regtest_node(data: &Path, peer: Option<&str>) -> CoinNode {
    let data = data.to_str().expect("utf-8 temp path");
    let mut args = vec![
        "coin",
        "node",
        "--network",
        "regtest",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data,
        "--rpc",
        "127.0.0.1:0",
    ];
    if let Some(p) = peer {
        args.extend(["--peer", p]);
    }
    let mut proc = Proc::start(&args);
    let p2p = proc.wait_prefix(Duration::from_secs(30), "p2p ");
    let rpc = proc.wait_prefix(Duration::from_secs(30), "rpc ");
    let height = proc
        .wait_prefix(Duration::from_secs(30), "height ")
        .parse()
        .expect("height line");
    CoinNode {
        proc,
        p2p,
        rpc,
        height,
    }
}
