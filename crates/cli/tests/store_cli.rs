//! `servent store` with real processes on 127.0.0.1: a folder put and read back
//! byte-identical, no shard on any node holding plaintext, reads surviving `kill -9` of
//! n−k nodes and a tampered shard, read-only capabilities that cannot delete, and a put
//! that survives (or cleanly fails) a node killed in the middle.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Proc, content, free_port, run_cmd, servent, stderr, stdout};

const T: Duration = Duration::from_secs(180);

fn nodes(root: &Path, count: usize) -> (Vec<Proc>, String) {
    let mut v = Vec::new();
    let mut first = String::new();
    for i in 0..count {
        let addr = format!("127.0.0.1:{}", free_port());
        let data = root.join(format!("node{i}"));
        let mut args = vec![
            "store".to_string(),
            "node".into(),
            "--listen".into(),
            addr.clone(),
            "--data".into(),
            data.display().to_string(),
            "--quota".into(),
            "2G".into(),
        ];
        if i > 0 {
            args.push("--bootstrap".into());
            args.push(first.clone());
        } else {
            first = addr.clone();
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Proc::start(&a);
        p.wait_prefix(Duration::from_secs(60), "store node");
        v.push(p);
    }
    (v, first)
}

fn store(root: &Path, args: &[&str]) -> std::process::Output {
    let mut c = servent(args);
    c.env("SERVENT_STORE_CAPS", root.join("caps"));
    run_cmd(c, T)
}

fn files_under(d: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                files_under(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn same_tree(a: &Path, b: &Path) {
    let (mut fa, mut fb) = (Vec::new(), Vec::new());
    files_under(a, &mut fa);
    files_under(b, &mut fb);
    let rel = |base: &Path, v: &[PathBuf]| {
        let mut r: Vec<PathBuf> = v
            .iter()
            .map(|p| p.strip_prefix(base).unwrap().to_path_buf())
            .collect();
        r.sort();
        r
    };
    assert_eq!(rel(a, &fa), rel(b, &fb), "same file list");
    for p in &fa {
        let q = b.join(p.strip_prefix(a).unwrap());
        assert!(
            std::fs::read(p).unwrap() == std::fs::read(&q).unwrap(),
            "{} differs",
            q.display()
        );
    }
}

#[test]
fn folder_round_trip_survives_n_minus_k_kills_and_tampering_and_no_node_sees_plaintext() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (mut procs, boot) = nodes(root, 10);
    let src = root.join("src").join("folder");
    std::fs::create_dir_all(src.join("many")).unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    std::fs::write(src.join("one"), b"x").unwrap();
    content(&src.join("big.bin"), 3 * 1024 * 1024 + 17);
    let marker = "servent-store plaintext marker that must never reach a node. ".repeat(200);
    std::fs::write(src.join("secret.txt"), &marker).unwrap();
    for i in 0..150 {
        std::fs::write(
            src.join("many").join(format!("f{i:03}")),
            format!("small file {i}\n"),
        )
        .unwrap();
    }
    let o = store(
        root,
        &["store", "put", src.to_str().unwrap(), "--bootstrap", &boot],
    );
    assert!(o.status.success(), "put: {}", stderr(&o));
    let out = stdout(&o);
    let cap = out.lines().last().unwrap().trim().to_string();
    assert!(cap.starts_with("sv1rw:"), "{out}");
    let ro = out
        .lines()
        .find_map(|l| l.strip_prefix("read-only: "))
        .unwrap()
        .trim()
        .to_string();

    // every byte any node holds: no 32-byte window of the plaintext marker
    let mut held = Vec::new();
    for i in 0..10 {
        files_under(&root.join(format!("node{i}")).join("shards"), &mut held);
    }
    assert!(held.len() >= 8, "shards stored: {}", held.len());
    let needle = &marker.as_bytes()[..32];
    for f in &held {
        let b = std::fs::read(f).unwrap();
        assert!(
            !b.windows(32).any(|w| w == needle),
            "plaintext in {}",
            f.display()
        );
    }

    let got = root.join("got1");
    let o = store(
        root,
        &[
            "store",
            "get",
            &ro,
            "-o",
            got.to_str().unwrap(),
            "--bootstrap",
            &boot,
        ],
    );
    assert!(o.status.success(), "get: {}", stderr(&o));
    same_tree(&src, &got.join("folder"));

    // a read-only capability cannot delete
    let o = store(root, &["store", "rm", &ro, "--bootstrap", &boot]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("read-only"), "{}", stderr(&o));

    // tamper with every shard on 4 = n-k nodes (flip the last byte): every segment keeps at
    // least k good shards; the nodes find the bad ones fail their hash and drop them, the
    // client rebuilds those segments from the others
    let mut tampered = Vec::new();
    for i in 6..10 {
        files_under(&root.join(format!("node{i}")).join("shards"), &mut tampered);
    }
    for f in &tampered {
        let mut b = std::fs::read(f).unwrap();
        let l = b.len() - 1;
        b[l] ^= 0xff;
        std::fs::write(f, b).unwrap();
    }
    let got = root.join("got-tampered");
    let o = store(
        root,
        &[
            "store",
            "get",
            &cap,
            "-o",
            got.to_str().unwrap(),
            "--bootstrap",
            &boot,
        ],
    );
    assert!(
        o.status.success(),
        "get with a tampered shard: {}",
        stderr(&o)
    );
    same_tree(&src, &got.join("folder"));
    assert!(
        tampered.iter().any(|f| !f.exists()),
        "the nodes drop shards that fail their hash"
    );

    // a fresh put (all 8 shards of every segment present), then kill -9 n-k = 4 nodes
    // (not the bootstrap one): every segment keeps at least k = 4
    let o = store(
        root,
        &["store", "put", src.to_str().unwrap(), "--bootstrap", &boot],
    );
    assert!(o.status.success(), "put: {}", stderr(&o));
    let cap2 = stdout(&o).lines().last().unwrap().trim().to_string();
    for p in procs.iter_mut().skip(1).take(4) {
        p.kill9();
    }
    let got = root.join("got2");
    let o = store(
        root,
        &[
            "store",
            "get",
            &cap2,
            "-o",
            got.to_str().unwrap(),
            "--bootstrap",
            &boot,
        ],
    );
    assert!(o.status.success(), "get after kills: {}", stderr(&o));
    same_tree(&src, &got.join("folder"));

    let o = store(root, &["store", "ls"]);
    assert!(stdout(&o).contains(&cap), "{}", stdout(&o));
    let o = store(root, &["store", "rm", &cap, "--bootstrap", &boot]);
    assert!(o.status.success(), "rm: {}", stderr(&o));
    let o = store(
        root,
        &[
            "store",
            "get",
            &cap,
            "-o",
            root.join("got3").to_str().unwrap(),
            "--bootstrap",
            &boot,
        ],
    );
    assert!(!o.status.success(), "get after rm must fail");
}

#[test]
fn kill9_of_a_node_during_a_put_gives_a_complete_object_or_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    let (mut procs, boot) = nodes(root, 10);
    let src = root.join("blob.bin");
    content(&src, 24 * 1024 * 1024);
    let mut c = servent(&["store", "put", src.to_str().unwrap(), "--bootstrap", &boot]);
    c.env("SERVENT_STORE_CAPS", root.join("caps"));
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until shards are arriving, then kill -9 two nodes in the middle of the put
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut fs = Vec::new();
        files_under(&root.join("node3").join("shards"), &mut fs);
        files_under(&root.join("node6").join("shards"), &mut fs);
        if !fs.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    procs[3].kill9();
    procs[6].kill9();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    if o.status.success() {
        let cap = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let got = root.join("got");
        let o = store(
            root,
            &[
                "store",
                "get",
                &cap,
                "-o",
                got.to_str().unwrap(),
                "--bootstrap",
                &boot,
            ],
        );
        assert!(o.status.success(), "get: {}", stderr(&o));
        assert!(std::fs::read(got.join("blob.bin")).unwrap() == std::fs::read(&src).unwrap());
    } else {
        assert!(
            err.contains("put failed") || err.contains("storage nodes"),
            "unclear error: {err}"
        );
    }
}
