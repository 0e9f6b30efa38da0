//! The Electrum server's driver following a real node over RPC through a reorganisation:
//! node A mines a short chain paying one script; node B, unconnected, mines a longer one; A
//! meets B and switches; the index walks back to the fork point and forward on B's chain.
#![cfg(feature = "runtime")]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::time::Duration;

use serde_json::json;
use servent_coin::Params;
use servent_coin::core::electrum::scripthash_hex;
use servent_coin::core::node::Command;
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use servent_coin::driver::electrum::{ElectrumOptions, rpc, start as start_electrum};
use servent_coin::driver::{NodeOptions, start};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn opts(dir: &std::path::Path) -> NodeOptions {
    NodeOptions {
        params: Params::regtest(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        data: dir.to_path_buf(),
        peers: vec![],
        rpc: Some("127.0.0.1:0".parse().expect("addr")),
        redial: Duration::from_secs(1),
    }
}

fn p2pkh(h: [u8; 20]) -> Vec<u8> {
    let mut s = vec![0x76, 0xa9, 0x14];
    s.extend_from_slice(&h);
    s.extend_from_slice(&[0x88, 0xac]);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_the_node_through_a_reorganisation() {
    let (da, db, de) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    let a = start(opts(da.path())).await.expect("node a");
    let b = start(opts(db.path())).await.expect("node b");
    let (ra, rb) = (a.rpc.expect("rpc a"), b.rpc.expect("rpc b"));
    let (ha, hb) = ([0xaa; 20], [0xbb; 20]);
    rpc(
        ra,
        "generatetoaddress",
        json!([3, p2pkh_address(REGTEST_P2PKH, &ha)]),
    )
    .await
    .expect("mine a");
    rpc(
        rb,
        "generatetoaddress",
        json!([6, p2pkh_address(REGTEST_P2PKH, &hb)]),
    )
    .await
    .expect("mine b");

    let mut eo = ElectrumOptions::new(ra, "127.0.0.1:0".parse().expect("addr"), de.path().into());
    eo.poll = Duration::from_millis(100);
    let mut seen = Vec::new();
    let server = start_electrum(eo, |h| seen.push(h))
        .await
        .expect("electrum");
    assert_eq!(seen, vec![0, 1, 2, 3], "indexed from genesis in order");
    let sock = TcpStream::connect(server.local).await.expect("connect");
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    let sha = scripthash_hex(&servent_coin::core::electrum::scripthash(&p2pkh(ha)));
    let shb = scripthash_hex(&servent_coin::core::electrum::scripthash(&p2pkh(hb)));
    let mut ask = async |method: &str, params: serde_json::Value| {
        let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        w.write_all(format!("{req}\n").as_bytes())
            .await
            .expect("send");
        loop {
            let l = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("answer in time")
                .expect("read")
                .expect("line");
            let v: serde_json::Value = serde_json::from_str(&l).expect("json");
            if v.get("id").is_some() {
                return v["result"].clone();
            }
        }
    };
    assert_eq!(
        ask("blockchain.scripthash.get_balance", json!([sha])).await["confirmed"],
        json!(3 * 5_000_000_000u64)
    );

    a.api
        .command(Command::Connect(b.p2p))
        .await
        .expect("connect a to b");
    let best_b = rpc(rb, "getbestblockhash", json!([]))
        .await
        .expect("best b");
    let mut followed = false;
    for _ in 0..300 {
        if ask("blockchain.headers.subscribe", json!([])).await["height"] == json!(6) {
            followed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(followed, "the index reached B's height 6");
    let h6 = ask("blockchain.block.header", json!([6])).await;
    let hash6 = servent_coin::hash_hex(&servent_coin::sha256d(
        &hex::decode(h6.as_str().expect("hex")).expect("hex"),
    ));
    assert_eq!(json!(hash6), best_b, "the index's tip is B's tip");
    assert_eq!(
        ask("blockchain.scripthash.get_history", json!([sha])).await,
        json!([])
    );
    assert_eq!(
        ask("blockchain.scripthash.get_balance", json!([sha])).await["confirmed"],
        json!(0),
        "A's reorganised-away coinbases are gone"
    );
    assert_eq!(
        ask("blockchain.scripthash.get_history", json!([shb]))
            .await
            .as_array()
            .map(Vec::len),
        Some(6)
    );
    server.stop();
}
