//! The message of the day between separate processes: `servent napster server --motd FILE`
//! (or `--motd-text`) sends it after the login, and `servent napster motd` shows it.

mod common;

use std::time::Duration;

use common::{Proc, run, stdout, text};

fn motd_of(addr: &str) -> Vec<String> {
    let o = run(
        &[
            "napster",
            "motd",
            "--server",
            addr,
            "--nick",
            "reader",
            "--password",
            "pw",
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "motd: {}", text(&o));
    stdout(&o).lines().map(String::from).collect()
}

#[test]
fn the_servers_message_of_the_day_is_shown_by_the_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("motd.txt");
    std::fs::write(&file, "Welcome to the test server.\r\n\r\nBe nice.\n").expect("motd file");
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
        "--name",
        "nap.test",
        "--motd",
        file.to_str().expect("utf-8"),
    ]);
    let addr = server.wait_prefix(Duration::from_secs(30), "napster server listening on ");
    let lines = motd_of(&addr);
    assert_eq!(
        lines[1..],
        [
            "SERVER nap.test",
            "Welcome reader!",
            "",
            "Welcome to the test server.",
            "",
            "Be nice."
        ],
        "{lines:?}"
    );
    assert!(lines[0].starts_with("VERSION servent "), "{lines:?}");
    drop(server);

    // --motd-text, lines separated by \n; without a motd only the server's own lines.
    let db = dir.path().join("b.db");
    let mut server = Proc::start(&[
        "napster",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db.to_str().expect("utf-8"),
        "--argon2-kib",
        "64",
        "--motd-text",
        "one\\ntwo",
    ]);
    let addr = server.wait_prefix(Duration::from_secs(30), "napster server listening on ");
    let lines = motd_of(&addr);
    assert_eq!(
        lines[1..],
        ["SERVER servent", "Welcome reader!", "", "one", "two"]
    );

    // A motd file that is too large is refused at start (exit 1), not cut silently.
    let big = dir.path().join("big.txt");
    std::fs::write(&big, vec![b'x'; 70_000]).expect("big file");
    let o = run(
        &[
            "napster",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--db",
            dir.path().join("c.db").to_str().expect("utf-8"),
            "--motd",
            big.to_str().expect("utf-8"),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("64 KiB"),
        "{}",
        text(&o)
    );
}
