//! The server's message limits seen from the real client, as separate processes: a 60 KB
//! search is refused with the server's reason (exit 1), not a silent disconnect or an
//! empty result, and `--max-search-len` moves the limit.

mod common;

use std::time::Duration;

use common::{Proc, run, text};

fn search(addr: &str, query: &str) -> std::process::Output {
    run(
        &[
            "napster",
            "search",
            query,
            "--server",
            addr,
            "--nick",
            "bob",
            "--password",
            "pw",
        ],
        Duration::from_secs(60),
    )
}

#[test]
fn an_over_long_search_is_refused_with_the_servers_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("a.db");
    let mut server = Proc::start(&[
        "napster",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().expect("utf-8"),
        "--argon2-kib",
        "64",
        "--max-search-len",
        "64",
    ]);
    let addr = server.wait_prefix(Duration::from_secs(30), "napster server listening on ");

    // 60 KB: past the 2 048-byte payload limit.
    let o = search(&addr, &"x".repeat(60_000));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("Message too long"), "{}", text(&o));

    // 100 bytes: within the payload limit, past --max-search-len 64.
    let o = search(&addr, &"y".repeat(100));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Search too long"),
        "{}",
        text(&o)
    );

    // A short search still gets its honest "nothing found" (exit 3).
    let o = search(&addr, "debaser");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}
