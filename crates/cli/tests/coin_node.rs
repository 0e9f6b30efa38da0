//! `servent coin node|mine|status` as real processes on 127.0.0.1: two nodes mine,
//! propagate and agree; a syncing node killed with `kill -9` at random points resumes after
//! every restart and ends with the tip and UTXO set of an uninterrupted node.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::coin::regtest_node as node;
use common::{run, stdout, text};
use servent_coin::Params;
use servent_coin::core::block::Coin;
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use servent_coin::store::Store;
use servent_coin::wire::OutPoint;

const LIMIT: Duration = Duration::from_secs(120);

/// `servent coin status` as a map of its lines.
fn status(rpc: &str) -> BTreeMap<String, String> {
    let o = run(&["coin", "status", "--node", rpc], LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    stdout(&o)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn address() -> String {
    p2pkh_address(REGTEST_P2PKH, &[0x42; 20])
}

fn mine(rpc: &str, n: u32) -> String {
    let o = run(
        &[
            "coin",
            "mine",
            "--blocks",
            &n.to_string(),
            "--address",
            &address(),
            "--node",
            rpc,
            "--threads",
            "2",
        ],
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains(" H/s"), "hash rate shown: {out}");
    out.lines()
        .rfind(|l| l.starts_with("block "))
        .and_then(|l| l.split(' ').nth(1))
        .expect("a mined block")
        .to_string()
}

fn wait_best(rpc: &str, best: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if status(rpc).get("best").map(String::as_str) == Some(best) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn utxos(data: &Path) -> (u32, BTreeMap<OutPoint, Coin>) {
    let s = Store::open(data.join("chain.redb"), Params::regtest()).expect("open store");
    let mut m = BTreeMap::new();
    s.for_each_utxo(|op, c| {
        m.insert(op, c);
    })
    .expect("walk utxos");
    (s.height(), m)
}

#[test]
fn two_node_processes_mine_propagate_and_agree() {
    let (da, db) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = node(da.path(), None);
    let b = node(db.path(), Some(&a.p2p));
    let best = mine(&a.rpc, 5);
    assert!(wait_best(&b.rpc, &best, LIMIT), "b reached a's tip");
    // And back: b mines, a follows.
    let best = mine(&b.rpc, 3);
    assert!(wait_best(&a.rpc, &best, LIMIT), "a reached b's tip");
    let sa = status(&a.rpc);
    let sb = status(&b.rpc);
    assert_eq!(sa.get("height").map(String::as_str), Some("8"));
    assert_eq!(sa.get("best"), sb.get("best"));
    assert_eq!(sa.get("peers").map(String::as_str), Some("1"));
    assert_eq!(sb.get("mempool").map(String::as_str), Some("0"));
    let o = run(&["coin", "status", "--node", &a.rpc, "--json"], LIMIT);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json status");
    assert_eq!(v["height"], serde_json::json!(8));
    drop((a, b));
}

#[test]
fn a_syncing_node_killed_at_random_points_resumes_to_the_same_tip_and_utxo_set() {
    let seed = servent_core::rng::seed_from_env(7);
    eprintln!("SERVENT_SEED={seed}");
    let mut rng = servent_core::Rng::new(seed);
    let (da, db) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = node(da.path(), None);
    let best = mine(&a.rpc, 400);
    let mut last_height = 0;
    let mut restarts = 0;
    while restarts < 20 {
        let b = node(db.path(), Some(&a.p2p));
        assert!(
            b.height >= last_height,
            "restart {restarts}: height {} went back from {last_height}",
            b.height
        );
        last_height = b.height;
        if b.height == 400 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
        let mut b = b;
        b.proc.kill9();
        restarts += 1;
    }
    eprintln!("{restarts} kill -9 restarts, last seen height {last_height}");
    assert!(
        restarts > 0,
        "the node was killed at least once while syncing"
    );
    let b = node(db.path(), Some(&a.p2p));
    assert!(
        wait_best(&b.rpc, &best, LIMIT),
        "the restarted node reached the tip"
    );
    drop(b);
    drop(a);
    let (ha, ua) = utxos(da.path());
    let (hb, ub) = utxos(db.path());
    assert_eq!((ha, hb), (400, 400));
    assert_eq!(ua.len(), 400, "one coinbase output per mined block");
    assert_eq!(ua, ub, "UTXO sets equal");
}

#[test]
fn bad_arguments_exit_2_and_an_unreachable_node_exits_1() {
    let limit = Duration::from_secs(30);
    let bad_sum = run(
        &[
            "coin",
            "mine",
            "--blocks",
            "1",
            "--address",
            "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb",
            "--node",
            "127.0.0.1:9",
        ],
        limit,
    );
    assert_eq!(bad_sum.status.code(), Some(2), "{}", text(&bad_sum));
    let bad_key = run(
        &[
            "coin",
            "mine",
            "--blocks",
            "1",
            "--pubkey",
            "0011",
            "--node",
            "127.0.0.1:9",
        ],
        limit,
    );
    assert_eq!(bad_key.status.code(), Some(2), "{}", text(&bad_key));
    let bad_net = run(
        &[
            "coin",
            "node",
            "--network",
            "testnet9",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "/nonexistent",
        ],
        limit,
    );
    assert_eq!(bad_net.status.code(), Some(2), "{}", text(&bad_net));
    // counts outside the ranges the help states
    let pk = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    for (flag, value) in [
        ("--blocks", "0"),
        ("--blocks", "100001"),
        ("--threads", "0"),
    ] {
        let mut args = vec!["coin", "mine", "--pubkey", pk, "--node", "127.0.0.1:9"];
        if flag == "--threads" {
            args.extend(["--blocks", "1"]);
        }
        args.extend([flag, value]);
        let o = run(&args, limit);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o));
    }
    let down = run(&["coin", "status", "--node", "127.0.0.1:9"], limit);
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("servent coin node"),
        "says what to do"
    );
}
