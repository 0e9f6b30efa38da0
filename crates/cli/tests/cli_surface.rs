//! The command line's common surface (issue 15): one clear error line whatever
//! RUST_BACKTRACE says, numeric flags checked against the range their help states, exit codes
//! in every command's help, and the DHT node's default state folder.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

mod common;

use std::time::Duration;

use common::{Proc, free_port, run, run_cmd, servent, text};

#[test]
fn an_ordinary_error_is_one_line_even_with_rust_backtrace_set() {
    for (args, code) in [
        (&["sim", "run", "no-such-scenario"][..], 1),
        (&["torrent", "show", "/nonexistent/x.torrent"][..], 1),
    ] {
        let mut cmd = servent(args);
        cmd.env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1");
        let o = run_cmd(cmd, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(code), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line, no backtrace: {}", text(&o));
        assert!(lines[0].starts_with("error: "), "{}", text(&o));
        assert!(!err.contains("stack backtrace"), "{}", text(&o));
    }
}

#[test]
fn sim_nodes_outside_the_stated_range_is_a_usage_error() {
    let help = run(&["sim", "run", "--help"], Duration::from_secs(30));
    let h = String::from_utf8_lossy(&help.stdout);
    assert!(h.contains("1 to 100000000"), "{h}");
    for bad in ["0", "100000001", "-3"] {
        let o = run(
            &["sim", "run", "chord-pathlen", "--nodes", bad],
            Duration::from_secs(30),
        );
        assert_eq!(o.status.code(), Some(2), "--nodes {bad}: {}", text(&o));
    }
}

#[test]
fn every_subcommand_help_states_the_exit_codes() {
    for args in [
        &["sim", "--help"][..],
        &["sim", "run", "--help"],
        &["ping", "--help"],
        &["ping", "serve", "--help"],
        &["ping", "send", "--help"],
        &["dht", "--help"],
        &["chord", "lookup", "--help"],
    ] {
        let o = run(args, Duration::from_secs(30));
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(h.contains("Exit codes: 0 success"), "{args:?}: {h}");
    }
}

#[test]
fn dht_run_keeps_its_state_under_the_default_state_folder_for_its_address() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = servent(&["dht", "run", "--listen", &listen]);
    cmd.env("HOME", home.path())
        .env_remove("XDG_STATE_HOME")
        .current_dir(work.path());
    let mut node = Proc::start_cmd(cmd);
    node.wait_line(Duration::from_secs(30), |l| l.contains("listening on udp"));
    let (code, rest) = node.interrupt(Duration::from_secs(30));
    assert_eq!(code, Some(0), "Ctrl-C of a node is a normal stop: {rest}");
    let dir = home
        .path()
        .join(".local/state/servent")
        .join(format!("dht-127.0.0.1-{port}"));
    assert!(
        dir.join("dht.state").is_file(),
        "state saved on exit under {}",
        dir.display()
    );
    // nothing is written into the folder the node was started from
    let stray: Vec<_> = std::fs::read_dir(work.path())
        .expect("read work dir")
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn napster_server_keeps_its_database_under_data_or_the_default_state_folder() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    for explicit in [false, true] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let data = work.path().join("state");
        let data_s = data.to_string_lossy().into_owned();
        let mut args = vec!["napster", "server", "--listen", &listen];
        if explicit {
            args.extend(["--data", &data_s]);
        }
        let mut cmd = servent(&args);
        cmd.env("HOME", home.path())
            .env_remove("XDG_STATE_HOME")
            .current_dir(work.path());
        let mut srv = Proc::start_cmd(cmd);
        srv.wait_line(Duration::from_secs(30), |l| l.contains("listening on"));
        let line = srv.wait_prefix(Duration::from_secs(30), "database ");
        let (code, rest) = srv.interrupt(Duration::from_secs(30));
        assert_eq!(code, Some(0), "{rest}");
        let want = if explicit {
            data.join("napster.db")
        } else {
            home.path()
                .join(".local/state/servent")
                .join(format!("napster-127.0.0.1-{port}"))
                .join("napster.db")
        };
        assert!(want.is_file(), "{} missing", want.display());
        assert!(line.contains(&*want.to_string_lossy()), "{line}");
    }
    // the default never writes into the folder the server was started from
    let names: Vec<_> = std::fs::read_dir(work.path())
        .expect("read work dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("state")], "{names:?}");
}
