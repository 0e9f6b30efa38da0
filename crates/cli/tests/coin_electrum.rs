//! `servent coin electrum` as a real process beside a real node on 127.0.0.1, spoken to by a
//! raw TCP client in the Electrum protocol: balances, history and unspent outputs of mined
//! coins; subscription notifications after a new block and after a broadcast; a merkle proof
//! that checks against the block header; Ctrl-C ends it cleanly.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::coin::regtest_node;
use common::{Proc, run, text};
use serde_json::{Value, json};
use servent_coin::core::electrum::{
    HistoryItem, merkle_root_from_branch, parse_hash_hex, scripthash, scripthash_hex, status_hash,
};
use servent_coin::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use servent_coin::core::script::push_data;
use servent_coin::wallet::keys::hash160;
use servent_coin::wire::{BlockHeader, Encode, OutPoint, Reader, Transaction, TxIn, TxOut};

const LIMIT: Duration = Duration::from_secs(120);

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// A line-protocol client that keeps notifications aside while waiting for answers.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
    next: u64,
    notes: Vec<Value>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let w = TcpStream::connect(addr).expect("connect electrum");
        w.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let r = BufReader::new(w.try_clone().expect("clone"));
        Client {
            w,
            r,
            next: 1,
            notes: Vec::new(),
        }
    }
    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("a line from the server");
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
    }
    /// The whole response object.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.w
            .write_all(format!("{req}\n").as_bytes())
            .expect("send");
        loop {
            let v = self.line();
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
            assert!(v.get("method").is_some(), "stray line {v}");
            self.notes.push(v);
        }
    }
    fn result(&mut self, method: &str, params: Value) -> Value {
        let v = self.call(method, params);
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }
    /// Wait for a notification of `method` whose first parameter satisfies `want`.
    fn notification(&mut self, method: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = self
                .notes
                .iter()
                .position(|n| n["method"] == method && want(&n["params"]))
            {
                return self.notes.remove(p);
            }
            assert!(
                Instant::now() < deadline,
                "no {method} notification in 30 s"
            );
            let v = self.line();
            self.notes.push(v);
        }
    }
}

fn mine(rpc: &str, blocks: u32, address: &str) {
    let o = run(
        &[
            "coin",
            "mine",
            "--blocks",
            &blocks.to_string(),
            "--address",
            address,
            "--node",
            rpc,
            "--threads",
            "1",
        ],
        LIMIT,
    );
    assert!(o.status.success(), "mine: {}", text(&o));
}

/// The status hash of a history answer (the core computes it as the protocol defines; its unit
/// test checks that against a hand-computed value).
fn status_of(history: &Value) -> Value {
    let items: Vec<HistoryItem> = history
        .as_array()
        .expect("history")
        .iter()
        .map(|i| HistoryItem {
            height: i["height"].as_i64().expect("height"),
            txid: parse_hash_hex(i["tx_hash"].as_str().expect("hash")).expect("hash"),
            fee: None,
        })
        .collect();
    json!(status_hash(&items))
}

#[test]
fn an_electrum_client_sees_mined_coins_is_notified_and_broadcasts_a_payment() {
    let dir = tempfile::tempdir().expect("tmp");
    let ndata = dir.path().join("node");
    let edata = dir.path().join("electrum");
    let mut node = regtest_node(&ndata, None);
    let rpc = node.rpc.clone();

    let secp = secp256k1::Secp256k1::new();
    let sk = secp256k1::SecretKey::from_slice(&[0x22; 32]).expect("key");
    let pk = secp256k1::PublicKey::from_secret_key(&secp, &sk).serialize();
    let h160 = hash160(&pk);
    let addr = p2pkh_address(REGTEST_P2PKH, &h160);
    let mut spk = vec![0x76, 0xa9, 0x14];
    spk.extend_from_slice(&h160);
    spk.extend_from_slice(&[0x88, 0xac]);
    let sh = scripthash_hex(&scripthash(&spk));
    let other_spk = {
        let mut s = vec![0x76, 0xa9, 0x14];
        s.extend_from_slice(&[9; 20]);
        s.extend_from_slice(&[0x88, 0xac]);
        s
    };
    let other_sh = scripthash_hex(&scripthash(&other_spk));
    mine(&rpc, 101, &addr);

    let mut el = Proc::start(&[
        "coin",
        "electrum",
        "--node",
        &rpc,
        "--listen",
        "127.0.0.1:0",
        "--data",
        edata.to_str().expect("utf-8"),
    ]);
    let indexed = el.wait_prefix(Duration::from_secs(60), "indexed height ");
    assert!(indexed.starts_with("101 "), "{indexed}");
    let listen = el.wait_prefix(Duration::from_secs(30), "electrum ");
    let mut c = Client::connect(&listen);

    assert_eq!(c.result("server.version", json!(["test", "1.4"]))[1], "1.4");
    assert_eq!(
        c.result("blockchain.scripthash.get_balance", json!([sh])),
        json!({"confirmed": 101u64 * 5_000_000_000, "unconfirmed": 0})
    );
    let history = c.result("blockchain.scripthash.get_history", json!([sh]));
    assert_eq!(history.as_array().map(Vec::len), Some(101));
    assert_eq!(history[0]["height"], 1);
    let utxos = c.result("blockchain.scripthash.listunspent", json!([sh]));
    assert_eq!(utxos.as_array().map(Vec::len), Some(101));
    assert_eq!(utxos[0]["value"], 5_000_000_000u64);
    let status = c.result("blockchain.scripthash.subscribe", json!([sh]));
    assert_eq!(status, status_of(&history), "status hash of the history");
    assert_eq!(
        c.result("blockchain.scripthash.subscribe", json!([other_sh])),
        Value::Null
    );
    assert_eq!(
        c.result("blockchain.headers.subscribe", json!([]))["height"],
        101
    );

    // The first coinbase's merkle proof checks against its header.
    let first = history[0]["tx_hash"].as_str().expect("hash").to_string();
    let proof = c.result("blockchain.transaction.get_merkle", json!([first, 1]));
    let header = c.result("blockchain.block.header", json!([1]));
    let header = BlockHeader::decode_from(&mut Reader::new(&unhex(header.as_str().expect("hex"))))
        .expect("header");
    let branch: Vec<[u8; 32]> = proof["merkle"]
        .as_array()
        .expect("branch")
        .iter()
        .map(|h| parse_hash_hex(h.as_str().expect("hex")).expect("hash"))
        .collect();
    let leaf = parse_hash_hex(&first).expect("txid");
    assert_eq!(
        merkle_root_from_branch(leaf, &branch, proof["pos"].as_u64().expect("pos") as usize),
        header.merkle_root
    );

    // A new block to someone else: a header notification, no status change for us.
    mine(&rpc, 1, &p2pkh_address(REGTEST_P2PKH, &[9; 20]));
    let n = c.notification("blockchain.headers.subscribe", |p| p[0]["height"] == 102);
    assert_eq!(n["params"][0]["hex"].as_str().map(str::len), Some(160));
    let n = c.notification("blockchain.scripthash.subscribe", |p| {
        p[0] == other_sh.as_str()
    });
    assert_eq!(
        n["params"][1],
        status_of(&c.result("blockchain.scripthash.get_history", json!([other_sh])))
    );

    // Spend the first coinbase to the other script, signed here, broadcast through Electrum.
    let raw = c.result("blockchain.transaction.get", json!([first]));
    let coinbase = Transaction::decode(&unhex(raw.as_str().expect("hex"))).expect("tx");
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
            value: 5_000_000_000 - 10_000,
            script_pubkey: other_spk.clone(),
        }],
        lock_time: 0,
    };
    let digest = servent_coin::core::legacy_sighash(&tx, 0, &spk, 1);
    let mut sig = secp
        .sign_ecdsa(&secp256k1::Message::from_digest(digest), &sk)
        .serialize_der()
        .to_vec();
    sig.push(1);
    let mut ss = Vec::new();
    push_data(&mut ss, &sig);
    push_data(&mut ss, &pk);
    tx.inputs[0].script_sig = ss;
    let txid = servent_coin::hash_hex(&tx.txid());
    let sent = c.result(
        "blockchain.transaction.broadcast",
        json!([hex(&tx.encode())]),
    );
    assert_eq!(sent, json!(txid));
    let again = c.call(
        "blockchain.transaction.broadcast",
        json!([hex(&tx.encode())]),
    );
    assert!(
        again["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "the node's refusal reaches the client: {again}"
    );
    let n = c.notification("blockchain.scripthash.subscribe", |p| p[0] == sh.as_str());
    let history = c.result("blockchain.scripthash.get_history", json!([sh]));
    assert_eq!(n["params"][1], status_of(&history));
    let last = history
        .as_array()
        .and_then(|h| h.last())
        .cloned()
        .expect("entry");
    assert_eq!(last, json!({"tx_hash": txid, "height": 0, "fee": 10_000}));
    assert_eq!(
        c.result("blockchain.scripthash.get_balance", json!([sh])),
        json!({"confirmed": 101u64 * 5_000_000_000, "unconfirmed": -5_000_000_000i64})
    );
    assert_eq!(
        c.result("blockchain.scripthash.get_mempool", json!([other_sh])),
        json!([{"tx_hash": txid, "height": 0, "fee": 10_000}])
    );

    // Mined: confirmed at 103, the coin gone from our unspent outputs.
    mine(&rpc, 1, &p2pkh_address(REGTEST_P2PKH, &[9; 20]));
    c.notification("blockchain.headers.subscribe", |p| p[0]["height"] == 103);
    let n = c.notification("blockchain.scripthash.subscribe", |p| p[0] == sh.as_str());
    let history = c.result("blockchain.scripthash.get_history", json!([sh]));
    assert_eq!(n["params"][1], status_of(&history));
    assert_eq!(
        history
            .as_array()
            .and_then(|h| h.last())
            .map(|l| l["height"].clone()),
        Some(json!(103))
    );
    assert_eq!(
        c.result("blockchain.scripthash.get_balance", json!([sh])),
        json!({"confirmed": 100u64 * 5_000_000_000, "unconfirmed": 0})
    );
    assert_eq!(
        c.result("blockchain.scripthash.listunspent", json!([sh]))
            .as_array()
            .map(Vec::len),
        Some(100)
    );

    let (code, rest) = el.interrupt(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("stopped"), "{rest}");
    node.proc.kill9();
}
