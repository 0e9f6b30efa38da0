//! `servent gnutella` as a user runs it: two servents started like the quickstart on one
//! host (no control flags: each control API is derived from its --listen and written to
//! <data>/control.addr), a search a second after start, --json records, exit 3 for no hits,
//! Ctrl-C exits 0 with a summary, and `get --help` shows no defaulted flag as required.

mod common;

use std::time::Duration;

use common::{Proc, free_port, run, share_dir, stdout, text};

const T: Duration = Duration::from_secs(20);

/// The control address a `run` prints: "... listening on A, control API on C".
fn control_of(p: &mut Proc) -> String {
    let line = p.wait_line(T, |l| l.contains(" control API on "));
    line.rsplit_once(" control API on ")
        .map(|(_, c)| c.trim().to_string())
        .unwrap_or_default()
}

/// Two ports whose derived control ports (+10000) are free too.
fn listen_port() -> u16 {
    loop {
        let p = free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

#[test]
fn quickstart_servents_need_no_control_flags_and_find_the_file_a_second_after_start() {
    let dir = tempfile::tempdir().unwrap();
    let share = share_dir(
        dir.path(),
        "music",
        &[("Pixies - Debaser.mp3", b"debaser bytes" as &[u8])],
    );
    let (pa, pb) = (listen_port(), listen_port());
    let la = format!("127.0.0.1:{pa}");
    let lb = format!("127.0.0.1:{pb}");
    let data_a = dir.path().join("a");
    let mut a = Proc::start(&[
        "gnutella",
        "run",
        "--listen",
        &la,
        "--share",
        share.to_str().unwrap(),
        "--data",
        data_a.to_str().unwrap(),
    ]);
    let ca = control_of(&mut a);
    assert_eq!(ca, format!("127.0.0.1:{}", pa + 10_000));
    let written = std::fs::read_to_string(data_a.join("control.addr")).unwrap();
    assert_eq!(written.trim(), ca);
    let mut b = Proc::start(&["gnutella", "run", "--listen", &lb, "--peer", &la]);
    let cb = control_of(&mut b);
    assert_eq!(cb, format!("127.0.0.1:{}", pb + 10_000));
    std::thread::sleep(Duration::from_secs(1));
    let o = run(
        &[
            "gnutella", "search", "debaser", "--wait", "2s", "--node", &cb,
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("Pixies - Debaser.mp3"), "{}", text(&o));
    // --json: one object per hit.
    let o = run(
        &[
            "gnutella", "search", "debaser", "--wait", "2s", "--node", &cb, "--json",
        ],
        T,
    );
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert_eq!(lines[0]["name"], "Pixies - Debaser.mp3");
    // Nothing found: exit 3.
    let o = run(
        &[
            "gnutella", "search", "nirvana", "--wait", "1s", "--node", &cb,
        ],
        T,
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    // peers and stats --json.
    let o = run(&["gnutella", "peers", "--node", &ca, "--json"], T);
    let peers: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(peers.len(), 1, "one link per pair: {}", text(&o));
    let o = run(&["gnutella", "stats", "--node", &ca, "--json"], T);
    let st: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(st.is_object(), "{}", text(&o));
    // Ctrl-C: exit 0 and a summary line.
    let (code, rest) = b.interrupt(T);
    assert_eq!(code, Some(0), "{rest}");
    assert!(rest.contains("stopped after "), "{rest}");
}

#[test]
fn get_help_shows_no_defaulted_flag_as_required() {
    let o = run(&["gnutella", "get", "--help"], T);
    let usage = stdout(&o)
        .lines()
        .find(|l| l.starts_with("Usage:"))
        .unwrap_or_default()
        .to_string();
    assert_eq!(usage, "Usage: servent gnutella get [OPTIONS] <TARGET>");
    assert!(stdout(&o).contains("-o, --output <DIR>"), "{}", stdout(&o));
}

#[test]
fn out_of_range_numbers_are_usage_errors() {
    for args in [
        &["gnutella", "run", "--max-ttl", "0"][..],
        &["gnutella", "run", "--max-conns", "100000"],
        &["gnutella", "search", "x", "--ttl", "200"],
        &["gnutella", "run", "--max-pings-per-sec", "0"],
        &["gnutella", "run", "--max-queries-per-sec", "1000000"],
        &["gnutella", "run", "--flood-ban", "soon"],
    ] {
        let o = run(args, T);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
    }
}
