//! `kill -9` of the Napster index server while accounts are being created: every account
//! whose login was acknowledged is on disk after the restart (its password checked, not
//! re-registered), and the database opens cleanly (the SQLite journal is consistent).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Proc, run_cmd, servent, text};

const LIMIT: Duration = Duration::from_secs(60);

fn server(db: &str) -> (Proc, String) {
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
        "1000",
    ]);
    let line = p.wait_prefix(Duration::from_secs(30), "napster server listening on ");
    let addr = line
        .trim_start_matches("napster server listening on ")
        .to_string();
    (p, addr)
}

fn login(addr: &str, nick: &str, pw: &str) -> std::process::Output {
    let mut cmd = servent(&["napster", "search", "nothing-matches-this"]);
    cmd.args(["--server", addr, "--nick", nick, "--password", pw]);
    run_cmd(cmd, LIMIT)
}

#[test]
fn accounts_acknowledged_before_a_kill_9_survive_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("nap.db");
    let db = db.to_str().expect("utf-8 temp path").to_string();
    let (mut srv, addr) = server(&db);
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, acked, stop) = (addr.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..40 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let nick = format!("w{w}n{i}");
                    let o = login(&addr, &nick, &format!("pw-{nick}"));
                    if o.status.code() != Some(1) {
                        acked.lock().expect("lock").push(nick);
                    }
                }
            })
        })
        .collect();
    // Kill while the workers are still creating accounts.
    let got = common::retry(Duration::from_secs(60), Duration::from_millis(10), || {
        (acked.lock().expect("lock").len() >= 12).then_some(())
    });
    assert!(got.is_some(), "12 accounts created within 60 s");
    srv.kill9();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().expect("worker");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 12);

    let (_srv, addr) = server(&db);
    for nick in &acked {
        let wrong = login(&addr, nick, "not-the-password");
        assert!(
            String::from_utf8_lossy(&wrong.stderr).contains("Invalid Password"),
            "account {nick} lost by kill -9: {}",
            text(&wrong)
        );
        let right = login(&addr, nick, &format!("pw-{nick}"));
        assert_ne!(right.status.code(), Some(1), "{nick}: {}", text(&right));
    }
}
