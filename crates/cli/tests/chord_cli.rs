//! `servent chord` as a user runs it: separate processes on 127.0.0.1, checked through the
//! commands' output and exit codes.

mod common;

use std::time::Duration;

use common::{Proc, free_port, retry, run, stdout, text};

const T: Duration = Duration::from_secs(20);

/// Starts `chord run --bits BITS --id ID` on a free port (joining `join`); returns the
/// process and its address once it prints that it listens.
fn node(bits: u32, id: u64, join: Option<&str>) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let (b, i) = (bits.to_string(), id.to_string());
    let mut args = vec!["chord", "run", "--bits", &b, "--id", &i, "--listen", &addr];
    if let Some(j) = join {
        args.extend(["--join", j]);
    }
    let mut p = Proc::start(&args);
    p.wait_line(T, |l| l.contains("listening on"));
    (p, addr)
}

/// The responsible node `chord lookup KEY --node AT` prints, once the ring answers it.
fn responsible(key: u64, at: &str) -> Option<u64> {
    let o = run(&["chord", "lookup", &key.to_string(), "--node", at], T);
    if !o.status.success() {
        return None;
    }
    stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("responsible: node "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
}

#[test]
fn a_key_equal_to_the_contact_nodes_id_is_answered_through_every_node() {
    let (_a, a) = node(5, 1, None);
    let (_b, b) = node(5, 4, Some(&a));
    // Wait for the two-node ring to stabilize: key 3 belongs to 4, key 5 to 1.
    retry(T, Duration::from_millis(100), || {
        (responsible(3, &a) == Some(4) && responsible(5, &b) == Some(1)).then_some(())
    })
    .expect("the ring {1, 4} stabilizes");
    for key in 0..32u64 {
        let want = if (2..=4).contains(&key) { 4 } else { 1 };
        for at in [&a, &b] {
            assert_eq!(responsible(key, at), Some(want), "lookup {key} --node {at}");
        }
    }
}

#[test]
fn bits_outside_1_to_160_are_usage_errors() {
    for bits in ["0", "161"] {
        let o = run(
            &["chord", "run", "--bits", bits, "--listen", "127.0.0.1:0"],
            T,
        );
        assert_eq!(o.status.code(), Some(2), "--bits {bits}: {}", text(&o));
        assert!(text(&o).contains("1..=160"), "{}", text(&o));
    }
}

#[test]
fn an_id_outside_the_ring_is_an_error_not_reduced() {
    let o = run(
        &[
            "chord",
            "run",
            "--bits",
            "5",
            "--id",
            "40",
            "--listen",
            "127.0.0.1:0",
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--id 40 is outside the ring: with m = 5 ids are 0..=31"),
        "{}",
        text(&o)
    );
}

#[test]
fn joining_a_ring_of_another_size_names_both_sizes() {
    let (_a, a) = node(5, 1, None);
    let o = run(
        &[
            "chord",
            "run",
            "--bits",
            "6",
            "--id",
            "9",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &a,
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("the ring has m = 5 bits but this node was started with --bits 6"),
        "{t}"
    );
    assert!(!t.contains("no answer"), "{t}");
}

/// Starts the lecture's ring `ids` (m = 5) as separate processes, each joining through the
/// first with `--bootstrap`, with quick maintenance periods.
fn lecture_ring(ids: &[u64]) -> Vec<(u64, Proc, String)> {
    let mut out: Vec<(u64, Proc, String)> = Vec::new();
    for &id in ids {
        let addr = format!("127.0.0.1:{}", free_port());
        let i = id.to_string();
        let mut args = vec![
            "chord",
            "run",
            "--bits",
            "5",
            "--id",
            &i,
            "--listen",
            &addr,
            "--stabilize",
            "50ms",
            "--fix-fingers",
            "10ms",
        ];
        let first = out.first().map(|(_, _, a)| a.clone());
        if let Some(f) = &first {
            args.extend(["--bootstrap", f]);
        }
        let mut p = Proc::start(&args);
        p.wait_line(T, |l| l.contains("listening on"));
        out.push((id, p, addr));
    }
    out
}

fn addr_of(ring: &[(u64, Proc, String)], id: u64) -> String {
    ring.iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, _, a)| a.clone())
        .unwrap()
}

/// `chord lookup KEY --node AT --json`: (route, responsible).
fn lookup_json(key: u64, at: &str) -> Option<(Vec<u64>, u64)> {
    let o = run(
        &["chord", "lookup", &key.to_string(), "--node", at, "--json"],
        T,
    );
    if !o.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).ok()?;
    let route = v["route"]
        .as_array()?
        .iter()
        .filter_map(|h| h.as_str()?.parse().ok())
        .collect();
    let resp = v["responsible"]["id"].as_str()?.parse().ok()?;
    Some((route, resp))
}

/// The Node column of `chord fingers --node AT --json`.
fn finger_nodes(at: &str) -> Vec<u64> {
    let o = run(&["chord", "fingers", "--node", at, "--json"], T);
    stdout(&o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["node"]["id"].as_str()?.parse().ok())
        .collect()
}

#[test]
fn the_lecture_rings_answer_as_the_lecture_does() {
    let b = lecture_ring(&[1, 4, 9, 11, 14, 18, 20, 21, 28]);
    let (n1, n28) = (addr_of(&b, 1), addr_of(&b, 28));
    let ok = retry(T, Duration::from_millis(200), || {
        (finger_nodes(&n1) == [4, 4, 9, 9, 18]
            && lookup_json(26, &n1) == Some((vec![1, 18, 20, 21], 28))
            && lookup_json(12, &n28) == Some((vec![28, 4, 9, 11], 14)))
        .then_some(())
    });
    assert!(
        ok.is_some(),
        "fingers of 1: {:?}, lookup 26 at 1: {:?}, lookup 12 at 28: {:?}",
        finger_nodes(&n1),
        lookup_json(26, &n1),
        lookup_json(12, &n28)
    );
    drop(b);

    let a = lecture_ring(&[1, 4, 8, 11, 14, 17]);
    let n8 = addr_of(&a, 8);
    let ok = retry(T, Duration::from_millis(200), || {
        (finger_nodes(&n8) == [11, 11, 14, 17, 1] && lookup_json(3, &n8) == Some((vec![8, 1], 4)))
            .then_some(())
    });
    assert!(
        ok.is_some(),
        "fingers of 8: {:?}, lookup 3 at 8: {:?}",
        finger_nodes(&n8),
        lookup_json(3, &n8)
    );
}

#[test]
fn get_and_delete_of_a_missing_key_exit_3_and_stats_count_the_store() {
    let (_a, a) = node(160, 7, None);
    let o = run(&["chord", "get", "nosuch", "--node", &a], T);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = run(&["chord", "delete", "nosuch", "--node", &a], T);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = run(&["chord", "put", "greeting", "hello", "--node", &a], T);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["chord", "get", "greeting", "--node", &a, "--json"], T);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["value"], "hello", "{}", text(&o));
    let o = run(&["chord", "stats", "--node", &a, "--json"], T);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["items"], 1, "{}", text(&o));
    assert_eq!(v["bits"], 160, "{}", text(&o));
    assert!(v["requests_in"].as_u64().unwrap() >= 3, "{}", text(&o));
}

#[test]
fn ctrl_c_of_a_member_exits_0_with_a_summary() {
    let (p, a) = node(5, 3, None);
    let o = run(&["chord", "put", "k", "v", "--node", &a], T);
    assert!(o.status.success(), "{}", text(&o));
    let (code, rest) = p.interrupt(T);
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("left the ring after"), "{rest}");
    assert!(rest.contains("handed 1 keys"), "{rest}");
}

#[test]
fn bootstrap_takes_a_file_of_addresses_and_skips_dead_ones() {
    let (_a, a) = node(5, 1, None);
    let dir = std::env::temp_dir().join(format!("servent-chord-bootstrap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ring.txt");
    let dead = format!("127.0.0.1:{}", free_port());
    std::fs::write(&file, format!("# the ring\n{dead}\n{a}\n")).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let data = dir.join("data");
    let mut p = Proc::start(&[
        "chord",
        "run",
        "--bits",
        "5",
        "--id",
        "9",
        "--listen",
        &addr,
        "--bootstrap",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]);
    let l = p.wait_line(Duration::from_secs(40), |l| l.contains("listening on"));
    assert!(l.contains(&format!("joined through {a}")), "{l}");
    let written = std::fs::read_to_string(data.join("node.addr")).unwrap();
    assert_eq!(written.trim(), addr);
    let _ = std::fs::remove_dir_all(&dir);
}
