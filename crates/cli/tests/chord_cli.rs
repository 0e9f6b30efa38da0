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
