//! `servent coin wallet` as real processes against a real node on 127.0.0.1: two wallets pay
//! each other (pending, then confirmed), a wallet that was not running while it was paid finds
//! the payment by rescanning, each payment's change goes to a new address; a wrong password, a
//! truncated or a tampered file is a clear error; `kill -9` during saves, 50 times, always
//! leaves the old or the new wallet; a wallet follows its node to another branch.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::coin::regtest_node;
use common::{run_cmd, servent, stdout, text};
use servent_coin::wallet::{Password, decrypt};

const LIMIT: Duration = Duration::from_secs(120);
const PASSWORD: &str = "correct horse battery staple 7";

fn wallet_cmd(args: &[&str], password: &str) -> Command {
    let mut full = vec!["coin", "wallet"];
    full.extend_from_slice(args);
    let mut c = servent(&full);
    c.env("SERVENT_WALLET_PASSWORD", password);
    c
}

/// Runs a wallet command; every output is checked never to show the password.
fn w(args: &[&str]) -> Output {
    let o = run_cmd(wallet_cmd(args, PASSWORD), LIMIT);
    assert!(
        !text(&o).contains(PASSWORD),
        "the password was printed: {}",
        text(&o)
    );
    o
}

fn ok(args: &[&str]) -> String {
    let o = w(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    stdout(&o)
}

fn balance(file: &str, rpc: &str) -> (String, String) {
    let out = ok(&["balance", "--wallet", file, "--node", rpc]);
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} line in {out}"))
            .to_string()
    };
    (get("confirmed "), get("pending "))
}

fn mine(rpc: &str, n: u32, to: &str) {
    let o = run_cmd(
        servent(&[
            "coin",
            "mine",
            "--blocks",
            &n.to_string(),
            "--address",
            to,
            "--node",
            rpc,
            "--threads",
            "1",
        ]),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

fn address(file: &str) -> String {
    ok(&["address", "--wallet", file])
        .lines()
        .next()
        .expect("an address line")
        .to_string()
}

/// `send`: the txid, and the change address from the summary on stderr.
fn send(file: &str, rpc: &str, to: &str, amount: &str) -> (String, String) {
    let o = w(&["send", to, amount, "--wallet", file, "--node", rpc]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let txid = stdout(&o).lines().next().expect("txid").to_string();
    assert_eq!(txid.len(), 64, "{txid}");
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let change = err
        .split(" to ")
        .nth(2)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no change address in {err}"))
        .to_string();
    (txid, change)
}

#[test]
fn wallets_pay_each_other_pending_then_confirmed_and_an_offline_wallet_rescans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = regtest_node(&dir.path().join("node"), None);
    let rpc = node.rpc.clone();
    let a = dir.path().join("a.wallet");
    let b = dir.path().join("b.wallet");
    let (a, b) = (a.to_str().expect("utf-8"), b.to_str().expect("utf-8"));
    ok(&["create", "--wallet", a, "--node", &rpc]);
    ok(&[
        "create",
        "--wallet",
        b,
        "--node",
        &rpc,
        "--network",
        "regtest",
    ]);
    let a1 = address(a);
    let a2 = address(a);
    assert_ne!(a1, a2, "a new address each call");
    assert!(
        a1.starts_with('m') || a1.starts_with('n'),
        "regtest P2PKH: {a1}"
    );
    mine(&rpc, 101, &a1);
    // Two coinbases have 100 confirmations.
    assert_eq!(
        balance(a, &rpc),
        ("100.00000000".into(), "0.00000000".into())
    );

    let b1 = address(b);
    let (txid1, change1) = send(a, &rpc, &b1, "1.5");
    assert_eq!(
        balance(b, &rpc),
        ("0.00000000".into(), "1.50000000".into()),
        "pending at B"
    );
    let (ac, ap) = balance(a, &rpc);
    assert_eq!(ap, "0.00000000");
    assert!(
        ac.starts_with("98.4999"),
        "A keeps its change as confirmed: {ac}"
    );
    mine(&rpc, 1, &a2);
    assert_eq!(
        balance(b, &rpc),
        ("1.50000000".into(), "0.00000000".into()),
        "confirmed at B"
    );

    // B is not run while it is paid and the payment is mined; B's next balance finds it.
    let b2 = address(b);
    let (txid2, change2) = send(a, &rpc, &b2, "25000000sat");
    assert_ne!(
        change1, change2,
        "each payment's change goes to a new address"
    );
    assert_ne!(change1, a1);
    mine(&rpc, 2, &a2);
    assert_eq!(balance(b, &rpc), ("1.75000000".into(), "0.00000000".into()));

    let out = ok(&["history", "--wallet", b, "--node", &rpc, "--json"]);
    let h: serde_json::Value = serde_json::from_str(&out).expect("json");
    let h = h.as_array().expect("a list");
    assert_eq!(h.len(), 2, "{out}");
    assert_eq!(h[0]["txid"], serde_json::json!(txid1));
    assert_eq!(h[0]["amount"], serde_json::json!("1.50000000"));
    assert_eq!(h[0]["confirmations"], serde_json::json!(3));
    assert_eq!(h[1]["txid"], serde_json::json!(txid2));
    assert_eq!(h[1]["confirmations"], serde_json::json!(2));
    let ah = ok(&["history", "--wallet", a, "--node", &rpc]);
    let line = ah
        .lines()
        .find(|l| l.starts_with(&txid1))
        .expect("A's payment listed");
    assert!(line.contains("-1.5000"), "{line}");
    assert!(
        line.contains("fee 0.00000452"),
        "226 bytes at 2 sat/vB: {line}"
    );

    // B pays back from its confirmed coins.
    let (_, _) = send(b, &rpc, &a1, "1");
    let (bc, bp) = balance(b, &rpc);
    assert_eq!(bp, "0.00000000");
    assert!(bc.starts_with("0.7499"), "{bc}");
    let bj = ok(&["balance", "--wallet", b, "--node", &rpc, "--json"]);
    let bj: serde_json::Value = serde_json::from_str(&bj).expect("json");
    assert_eq!(bj["confirmed"], serde_json::json!(bc));

    // Refusals: more than the wallet has, too many decimals, another network's address.
    let o = w(&["send", &a1, "100", "--wallet", b, "--node", &rpc]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("insufficient funds"), "{}", text(&o));
    let o = w(&["send", &a1, "0.000000001", "--wallet", b, "--node", &rpc]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("8 decimals"), "{}", text(&o));
    let o = w(&[
        "send",
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "1",
        "--wallet",
        b,
        "--node",
        &rpc,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // Export prints the secrets only when asked; a restore from the words finds the coins.
    let e = ok(&["export", "--wallet", b]);
    let words = e
        .lines()
        .find_map(|l| l.strip_prefix("mnemonic "))
        .expect("mnemonic line")
        .to_string();
    assert_eq!(words.split(' ').count(), 12);
    assert!(e.lines().any(|l| l.starts_with("xprv tprv")), "{e}");
    let r = dir.path().join("r.wallet");
    let r = r.to_str().expect("utf-8");
    let mut c = wallet_cmd(&["restore", "--wallet", r, "--node", &rpc], PASSWORD);
    c.stdin(Stdio::piped());
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut si = child.stdin.take().expect("stdin");
        writeln!(si, "{words}").expect("write words");
    }
    let o = child.wait_with_output().expect("restore");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(balance(r, &rpc), (bc.clone(), "0.00000000".into()));
}

#[test]
fn wrong_password_truncated_and_tampered_files_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("w.wallet");
    let fs = f.to_str().expect("utf-8");
    let pwf = dir.path().join("pw");
    std::fs::write(&pwf, format!("{PASSWORD}\n")).expect("write");
    let pws = pwf.to_str().expect("utf-8");
    let mut c = servent(&[
        "coin",
        "wallet",
        "create",
        "--wallet",
        fs,
        "--password-file",
        pws,
    ]);
    c.env_remove("SERVENT_WALLET_PASSWORD");
    let o = run_cmd(c, LIMIT);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The password file and the environment give the same password.
    let a = address(fs);
    assert!(!a.is_empty());
    let o = run_cmd(
        wallet_cmd(&["address", "--wallet", fs], "not the password"),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("wrong password"), "{}", text(&o));
    assert!(!text(&o).contains("not the password"));
    // A second create over it is refused.
    let o = w(&["create", "--wallet", fs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("refusing to overwrite"), "{}", text(&o));

    let good = std::fs::read(&f).expect("read");
    std::fs::write(&f, &good[..good.len() / 2]).expect("truncate");
    let o = w(&["address", "--wallet", fs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("truncated"), "{}", text(&o));
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&f, &bad).expect("tamper");
    let o = w(&["address", "--wallet", fs]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("corrupted"), "{}", text(&o));
    // The good file still opens.
    std::fs::write(&f, &good).expect("restore");
    ok(&["address", "--wallet", fs]);
}

fn next_receive(file: &Path) -> u32 {
    let bytes = std::fs::read(file).expect("the wallet file is there");
    let pw = Password::new(PASSWORD.to_string()).expect("password");
    decrypt(&bytes, &pw)
        .expect("the wallet file decrypts: old or new, never neither")
        .next_receive
}

#[test]
fn kill_9_during_saves_leaves_the_old_or_the_new_wallet_50_times() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("k.wallet");
    let fs = f.to_str().expect("utf-8");
    ok(&["create", "--wallet", fs]);
    // How long one `address` (decrypt, derive, encrypt, save) takes here.
    let t = Instant::now();
    address(fs);
    let took = t.elapsed();
    let mut n = next_receive(&f);
    let mut seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
    let (mut old, mut new) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(240);
    for round in 0..50 {
        assert!(Instant::now() < deadline, "50 rounds within 240 s");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Anywhere from the start to a little past the usual end of the save.
        let delay = took.mul_f64((seed % 1000) as f64 / 1000.0 * 1.2);
        let mut child = wallet_cmd(&["address", "--wallet", fs], PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let now = next_receive(&f);
        assert!(now == n || now == n + 1, "round {round}: {n} then {now}");
        if now == n {
            old += 1
        } else {
            new += 1
        }
        n = now;
    }
    eprintln!(
        "kill -9 x50: {old} left the old wallet, {new} the new one (one save takes {took:?})"
    );
    assert!(
        old > 0 && new > 0,
        "kills landed both before and after the rename: {old}/{new}"
    );
    // Afterwards the wallet works and hands out the next address.
    address(fs);
    assert_eq!(next_receive(&f), n + 1);
    // The temp files of killed saves are cleaned up by the next save.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

#[test]
fn the_wallet_follows_a_reorganisation_to_another_branch() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two nodes that never meet: each mines its own branch from the regtest genesis block.
    let x = regtest_node(&dir.path().join("x"), None);
    let rpc_x = x.rpc.clone();
    let y = regtest_node(&dir.path().join("y"), None);
    let rpc_y = y.rpc.clone();
    let a = dir.path().join("a.wallet");
    let a = a.to_str().expect("utf-8");
    ok(&["create", "--wallet", a]);
    let addr = address(a);
    mine(&rpc_x, 101, &addr);
    assert_eq!(
        balance(a, &rpc_x),
        ("100.00000000".into(), "0.00000000".into())
    );
    // The longer branch at y does not pay the wallet: its coins there are gone.
    let other = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn";
    mine(&rpc_y, 103, other);
    let o = w(&["balance", "--wallet", a, "--node", &rpc_y]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("reorganisation"), "{}", text(&o));
    assert!(
        stdout(&o).contains("confirmed 0.00000000"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("immature 0.00000000"), "{}", stdout(&o));
    let h = ok(&["history", "--wallet", a, "--node", &rpc_y, "--json"]);
    assert_eq!(
        h.trim(),
        "[]",
        "the coinbases of the abandoned branch are dropped"
    );
    // Back on x's branch (x is now the shorter one, but the wallet follows its node).
    assert_eq!(
        balance(a, &rpc_x),
        ("100.00000000".into(), "0.00000000".into())
    );
}
