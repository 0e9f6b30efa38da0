//! Two real nodes on 127.0.0.1 (TCP, SQLite stores, JSON-RPC): mine over RPC, propagate, agree.
#![cfg(feature = "runtime")]
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use servent_coin::Params;
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use servent_coin::core::script::push_data;
use servent_coin::driver::{NodeOptions, start};
use servent_coin::hash_hex;
use servent_coin::wire::{Block, Encode, OutPoint, Transaction, TxIn, TxOut};
use sha2::Digest;
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

    // A signed P2PKH spend: sendrawtransaction, relayed to b, in the template, mined.
    let secp = secp256k1::Secp256k1::new();
    let sk = secp256k1::SecretKey::from_slice(&[0x11; 32]).expect("key");
    let pk = secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize();
    let h160: [u8; 20] = ripemd::Ripemd160::digest(sha2::Sha256::digest(pk)).into();
    let mine_to = p2pkh_address(REGTEST_P2PKH, &h160);
    let first = rpc(ra, "generatetoaddress", json!([101, mine_to])).await;
    let last = first["result"][100].clone();
    let first = first["result"][0].as_str().expect("hash").to_string();
    // b has the coin's chain before the spend is announced to it.
    let mut synced = false;
    for _ in 0..300 {
        if rpc(rb, "getbestblockhash", json!([])).await["result"] == last {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced, "b synced the 101 blocks");
    let blk = rpc(ra, "getblock", json!([first, 0])).await;
    let blk = Block::decode(&hex::decode(blk["result"].as_str().expect("hex")).expect("hex"))
        .expect("block");
    let coinbase = &blk.txs[0];
    let script = coinbase.outputs[0].script_pubkey.clone();
    let mut tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: coinbase.txid(),
                vout: 0,
            },
            script_sig: Vec::new(),
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value: coinbase.outputs[0].value - 10_000,
            script_pubkey: script.clone(),
        }],
        lock_time: 0,
    };
    let digest = servent_coin::core::legacy_sighash(&tx, 0, &script, 1);
    let msg = secp256k1::Message::from_digest(digest);
    let mut sig = secp.sign_ecdsa(&msg, &sk).serialize_der().to_vec();
    sig.push(1);
    let mut ss = Vec::new();
    push_data(&mut ss, &sig);
    push_data(&mut ss, &pk);
    tx.inputs[0].script_sig = ss;
    let txid = hash_hex(&tx.txid());
    let sent = rpc(ra, "sendrawtransaction", json!([hex::encode(tx.encode())])).await;
    assert_eq!(sent["result"], json!(txid), "{sent}");
    let again = rpc(ra, "sendrawtransaction", json!([hex::encode(tx.encode())])).await;
    assert!(again["error"]["code"].as_i64().is_some(), "{again}");
    let mut relayed = false;
    for _ in 0..100 {
        if rpc(rb, "getmempoolinfo", json!([])).await["result"]["size"] == json!(1) {
            relayed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relayed, "b got the transaction");
    // getrawmempool lists it by txid, in Core's shape (a JSON list of hex txids).
    assert_eq!(
        rpc(rb, "getrawmempool", json!([])).await["result"],
        json!([txid])
    );
    assert_eq!(
        rpc(rb, "getrawmempool", json!([false])).await["result"],
        json!([txid])
    );
    let gbt = rpc(rb, "getblocktemplate", json!([])).await;
    assert_eq!(gbt["result"]["transactions"][0]["txid"], json!(txid));
    assert_eq!(gbt["result"]["transactions"][0]["fee"], json!(10_000));
    assert_eq!(
        gbt["result"]["coinbasevalue"],
        json!(5_000_000_000i64 + 10_000)
    );
    let mined = rpc(rb, "generatetoaddress", json!([1, mine_to])).await;
    let bh = mined["result"][0].clone();
    let got = rpc(rb, "getrawtransaction", json!([txid, false, bh])).await;
    assert_eq!(got["result"], json!(hex::encode(tx.encode())));
    let v = rpc(rb, "getblock", json!([bh])).await;
    assert!(
        v["result"]["tx"]
            .as_array()
            .is_some_and(|l| l.contains(&json!(txid)))
    );
    assert_eq!(
        rpc(rb, "getmempoolinfo", json!([])).await["result"]["size"],
        json!(0)
    );
    assert_eq!(
        rpc(rb, "getrawmempool", json!([])).await["result"],
        json!([])
    );

    // Malformed JSON is Core's parse error; a batch gets one answer per call.
    let raw = |body: &'static str| async move {
        let mut s = TcpStream::connect(ra).await.expect("connect");
        let req = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out).into_owned();
        let (_, json) = text.split_once("\r\n\r\n").expect("http");
        serde_json::from_str::<Value>(json).expect("json")
    };
    let bad = raw("{not json").await;
    assert_eq!(bad["error"]["code"], json!(-32700));
    let batch =
        raw(r#"[{"id":1,"method":"getblockhash","params":[0]},{"id":2,"method":"nope"}]"#).await;
    assert_eq!(
        batch[0]["result"],
        json!(Params::regtest().genesis.header.hash_hex())
    );
    assert_eq!(batch[1]["error"]["code"], json!(-32601));

    // A body above the bound is refused before it is read.
    let mut s = TcpStream::connect(ra).await.expect("connect");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(
        out.starts_with(b"HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}
