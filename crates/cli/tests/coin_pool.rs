//! `servent coin pool` with three `servent coin mine --pool` miners on a regtest node, all
//! real processes on 127.0.0.1: the pool finds blocks, the node accepts them, and every
//! block's coinbase (read back with the node's `getblock`) pays the three miners in
//! proportion to their accepted shares in the PPLNS window, to the satoshi.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::coin::regtest_node;
use common::{Proc, run, stdout, text};
use serde_json::{Value, json};
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address, script_for_address};

const LIMIT: Duration = Duration::from_secs(120);

fn http(addr: &str, req: &str) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer")
        + 4;
    serde_json::from_slice(&out[at..]).expect("JSON")
}

fn rpc(addr: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let v = http(
        addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(v["error"].is_null(), "{method}: {v}");
    v["result"].clone()
}

fn stats(addr: &str) -> Value {
    http(
        addr,
        "GET /stats.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

#[test]
fn three_miners_on_a_pool_are_paid_in_proportion_to_their_accepted_shares() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("node");
    let node = regtest_node(&data, None);
    let node_rpc = node.rpc.clone();
    let mut pool = Proc::start(&[
        "coin",
        "pool",
        "--node",
        &node_rpc,
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--window",
        "100000",
    ]);
    let stratum = pool.wait_prefix(Duration::from_secs(30), "stratum ");
    let page = pool.wait_prefix(Duration::from_secs(30), "http ");

    let users: Vec<String> = (1..=3u8)
        .map(|i| p2pkh_address(REGTEST_P2PKH, &[0x20 + i; 20]))
        .collect();
    let bounds = [6u64, 12, 18];
    let miners: Vec<_> = users
        .iter()
        .zip(bounds)
        .enumerate()
        .map(|(i, (u, n))| {
            let (stratum, user) = (stratum.clone(), format!("{u}.rig{i}"));
            std::thread::spawn(move || {
                run(
                    &[
                        "coin",
                        "mine",
                        "--pool",
                        &stratum,
                        "--user",
                        &user,
                        "--threads",
                        "1",
                        "--shares",
                        &n.to_string(),
                    ],
                    LIMIT,
                )
            })
        })
        .collect();
    let mut accepted = Vec::new();
    for (m, n) in miners.into_iter().zip(bounds) {
        let o = m.join().expect("miner thread");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = stdout(&o);
        assert!(out.contains(" H/s"), "hash rate shown: {out}");
        let a: u64 = out
            .lines()
            .find_map(|l| l.strip_prefix("shares accepted "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a summary line: {out}"));
        assert!(
            a >= n,
            "--shares {n} stops after {n} accepted shares: {out}"
        );
        accepted.push(a);
    }
    std::thread::sleep(Duration::from_millis(500));
    let s = stats(&page);
    // The pool credits at least what the miners saw accepted (a last answer may arrive after
    // a miner stopped reading).
    for (u, a) in users.iter().zip(&accepted) {
        let m = s["miners"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["user"] == json!(u)))
            .unwrap_or_else(|| panic!("{u} listed: {s}"));
        let credited = m["accepted"].as_u64().expect("accepted");
        assert!(
            credited >= *a && credited <= a + 16,
            "{u}: {credited} vs {a}"
        );
    }
    let blocks: Vec<&Value> = s["blocks_found"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["accepted_by_node"] == json!(true))
        .collect();
    assert!(blocks.len() >= 3, "a few blocks found: {s}");
    let height = rpc(&node_rpc, "getblockcount", json!([]))
        .as_u64()
        .expect("height");
    assert!(height >= blocks.len() as u64);

    for b in &blocks {
        let hash = b["hash"].as_str().expect("hash");
        let block = rpc(&node_rpc, "getblock", json!([hash, 2]));
        assert_eq!(block["confirmations"].as_i64().map(|c| c >= 1), Some(true));
        let outs = block["tx"][0]["vout"]
            .as_array()
            .expect("coinbase outputs")
            .clone();
        let value = b["value"].as_i64().expect("value");
        assert_eq!(value, 50 * 100_000_000, "regtest subsidy, no fees");
        let weights: Vec<(String, u64)> = b["weights"]
            .as_object()
            .expect("weights")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().expect("weight")))
            .collect();
        let total: u64 = weights.iter().map(|w| w.1).sum();
        // Heaviest first (ties by address), each floor(value * w / W), the remainder to the first.
        let mut order = weights.clone();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut expect: Vec<(String, i64)> = order
            .iter()
            .map(|(a, w)| {
                (
                    a.clone(),
                    (i128::from(value) * i128::from(*w) / i128::from(total)) as i64,
                )
            })
            .collect();
        let rest = value - expect.iter().map(|e| e.1).sum::<i64>();
        expect[0].1 += rest;
        expect.retain(|e| e.1 > 0);
        let got: Vec<(Vec<u8>, i64)> = outs
            .iter()
            .map(|o| {
                let script = o["scriptPubKey"]["hex"].as_str().expect("script");
                let script = (0..script.len() / 2)
                    .map(|i| u8::from_str_radix(&script[2 * i..2 * i + 2], 16).expect("hex"))
                    .collect();
                (
                    script,
                    (o["value"].as_f64().expect("value") * 1e8).round() as i64,
                )
            })
            .collect();
        let want: Vec<(Vec<u8>, i64)> = expect
            .iter()
            .map(|(a, v)| (script_for_address(a, REGTEST_P2PKH).expect("address"), *v))
            .collect();
        assert_eq!(
            got, want,
            "block {hash}: the coinbase pays the window in proportion"
        );
        assert_eq!(got.iter().map(|g| g.1).sum::<i64>(), value);
    }
    // The newest block's window holds (nearly) every accepted share, so its split follows
    // the miners' accepted shares.
    let last = blocks[0];
    let mut missing = 0;
    for (u, a) in users.iter().zip(&accepted) {
        let w = last["weights"][u.as_str()].as_u64().unwrap_or(0);
        assert!(w <= a + 16, "{u}: weight {w}, accepted {a}");
        missing += a.saturating_sub(w);
    }
    let all: u64 = accepted.iter().sum();
    assert!(
        missing * 4 <= all,
        "the last block's window misses {missing} of {all} shares"
    );
    let (code, _) = pool.interrupt(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    drop(node);
}
