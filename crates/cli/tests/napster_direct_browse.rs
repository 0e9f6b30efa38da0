//! `servent napster browse NICK --direct` between separate processes: the browsee's
//! `share` process answers GETLIST on its data port, or (firewalled) pushes its list to
//! the browser's data port; the server's 642 reason reaches the user.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Proc, retry, run, stdout, text};

/// A client command that has not finished by then has hung.
const CLIENT: Duration = Duration::from_secs(60);

/// The index server; returns it with its address.
fn server(db: &Path) -> (Proc, String) {
    let db = db.to_str().expect("utf-8 temp path");
    let mut p = Proc::start(&[
        "napster",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--db",
        db,
        "--argon2-kib",
        "64",
        "--login-rate",
        "50",
    ]);
    let addr = p.wait_prefix(Duration::from_secs(30), "napster server listening on ");
    (p, addr)
}

/// `servent napster ARGS` as `nick`.
fn client(addr: &str, nick: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["napster"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", addr, "--nick", nick, "--password", "pw"]);
    run(&all, CLIENT)
}

/// A `servent napster share` process for `dir` as `nick`, logged in and sharing.
fn sharer(addr: &str, nick: &str, dir: &Path, extra: &[&str]) -> Proc {
    let dir = dir.to_str().expect("utf-8 temp path");
    let mut args = vec!["napster", "share", dir, "--server", addr, "--nick", nick];
    args.extend_from_slice(&["--password", "pw"]);
    args.extend_from_slice(extra);
    let mut p = Proc::start(&args);
    p.wait_line(Duration::from_secs(30), |l| l.contains("sharing"));
    p
}

#[test]
fn browse_direct_gets_the_list_from_the_sharer_or_its_push_across_processes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let open = dir.path().join("open");
    let walled = dir.path().join("walled");
    std::fs::create_dir_all(open.join("pixies")).expect("share dir");
    std::fs::create_dir_all(&walled).expect("share dir");
    std::fs::write(open.join("pixies/Debaser.mp3"), vec![7u8; 4321]).expect("file");
    std::fs::write(open.join("Gigantic.mp3"), vec![8u8; 1234]).expect("file");
    std::fs::write(walled.join("Wave of Mutilation.mp3"), vec![9u8; 999]).expect("file");

    let (_server, addr) = server(&dir.path().join("napster.db"));
    let _alice = sharer(&addr, "alice", &open, &[]);
    let _wall = sharer(&addr, "wall", &walled, &["--firewalled"]);

    // alice serves GETLIST on her data port.
    let o = client(&addr, "bob", &["browse", "alice", "--direct"]);
    assert!(o.status.success(), "direct browse: {}", text(&o));
    let mut lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["Gigantic.mp3\t1234", "pixies/Debaser.mp3\t4321"],
        "{}",
        text(&o)
    );

    // wall is firewalled: its process connects to ours and pushes the list.
    let o = client(&addr, "bob", &["browse", "wall", "--direct", "--json"]);
    assert!(o.status.success(), "pushed direct browse: {}", text(&o));
    let v: serde_json::Value =
        serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(v["nick"], "wall");
    assert_eq!(v["file"], "Wave of Mutilation.mp3");
    assert_eq!(v["size"], 999);

    // The server's 642 reason reaches the user, with exit status 1.
    let o = client(&addr, "bob", &["browse", "nobody", "--direct"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nobody is not online."),
        "{}",
        text(&o)
    );
    // The share processes are still serving (one more direct browse works).
    let again = retry(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = client(&addr, "carol", &["browse", "alice", "--direct"]);
        o.status.success().then_some(o)
    });
    assert!(again.is_some(), "alice stopped answering GETLIST");
}
