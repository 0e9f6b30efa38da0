//! Two real nodes on 127.0.0.1 (TCP, SQLite stores, JSON-RPC): mine over RPC, propagate, agree.
#![cfg(feature = "runtime")]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use servent_coin::Params;
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use servent_coin::driver::{NodeOptions, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn rpc(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}).to_string();
    let mut s = TcpStream::connect(addr).await.expect("connect rpc");
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("rpc in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let (_, json) = text.split_once("\r\n\r\n").expect("http response");
    serde_json::from_str(json).expect("json body")
}

fn opts(dir: &std::path::Path, peers: Vec<SocketAddr>) -> NodeOptions {
    NodeOptions {
        params: Params::regtest(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data: dir.to_path_buf(),
        peers,
        rpc: Some("127.0.0.1:0".parse().expect("addr")),
        redial: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_mine_over_rpc_propagate_and_agree() {
    let da = tempfile::tempdir().expect("tmp");
    let db = tempfile::tempdir().expect("tmp");
    let a = start(opts(da.path(), vec![])).await.expect("node a");
    let b = start(opts(db.path(), vec![a.p2p])).await.expect("node b");
    let (ra, rb) = (a.rpc.expect("rpc a"), b.rpc.expect("rpc b"));
    let addr = p2pkh_address(REGTEST_P2PKH, &[7; 20]);
    let mined = rpc(ra, "generatetoaddress", json!([5, addr])).await;
    let hashes = mined["result"].as_array().expect("hashes").clone();
    assert_eq!(hashes.len(), 5, "{mined}");
    let mut agreed = false;
    for _ in 0..100 {
        let best = rpc(rb, "getbestblockhash", json!([])).await;
        if best["result"] == hashes[4] {
            agreed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agreed, "node b reached a's tip");
    assert_eq!(
        rpc(rb, "getblockcount", json!([])).await["result"],
        json!(5)
    );
    let h3 = rpc(rb, "getblockhash", json!([3])).await;
    assert_eq!(h3["result"], hashes[2]);
    let blk = rpc(rb, "getblock", json!([hashes[4], 1])).await;
    assert_eq!(blk["result"]["height"], json!(5));
    assert_eq!(blk["result"]["previousblockhash"], hashes[3]);
    let raw = rpc(rb, "getblock", json!([hashes[4], 0])).await;
    assert!(raw["result"].as_str().is_some_and(|s| s.len() > 160));
    // Core's error shapes.
    let nf = rpc(ra, "getblockhash", json!([99])).await;
    assert_eq!(nf["error"]["code"], json!(-8));
    let bad = rpc(ra, "sendrawtransaction", json!(["00"])).await;
    assert_eq!(bad["error"]["code"], json!(-22));
    let nm = rpc(ra, "nosuchmethod", json!([])).await;
    assert_eq!(nm["error"]["code"], json!(-32601));
    let peers = rpc(ra, "getpeerinfo", json!([])).await;
    assert_eq!(peers["result"].as_array().map(Vec::len), Some(1));
    let gbt = rpc(ra, "getblocktemplate", json!([])).await;
    assert_eq!(gbt["result"]["height"], json!(6));
    assert_eq!(gbt["result"]["coinbasevalue"], json!(5_000_000_000i64));
    let mp = rpc(ra, "getmempoolinfo", json!([])).await;
    assert_eq!(mp["result"]["size"], json!(0));
}
