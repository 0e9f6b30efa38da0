//! `torrent share` stopped by a user's Ctrl-C is a normal stop: a summary line and exit 0
//! (issue 15: it printed "Error: … stopped with N of N pieces verified" and exited 1).

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests are not cores

mod common;

use std::time::Duration;

use common::torrent::arg;
use common::{Proc, servent};

#[test]
fn ctrl_c_of_torrent_share_prints_a_summary_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("f.bin");
    common::content(&file, 300_000);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut cmd = servent(&[
        "torrent",
        "share",
        arg(&file),
        "-o",
        arg(&out),
        "--listen",
        "127.0.0.1:0",
        "--no-dht",
    ]);
    cmd.current_dir(dir.path());
    let mut p = Proc::start_cmd(cmd);
    p.wait_line(Duration::from_secs(60), |l| l.contains("listening on"));
    let (code, rest) = p.interrupt(Duration::from_secs(30));
    assert_eq!(code, Some(0), "a user's stop is a success: {rest}");
    assert!(
        rest.lines().any(|l| l.contains("(seeding): stopped")),
        "a summary line: {rest}"
    );
    assert!(!rest.contains("Error"), "{rest}");
    assert!(out.join("f.bin.torrent").is_file());
}
