//! Message Stream Encryption between separate `servent` processes on 127.0.0.1: a seeder that
//! requires MSE serves a leecher with the default policy (prefer), and a plaintext-only
//! leecher downloads from a default seeder (which accepts both).

use std::time::Duration;

mod common;
use common::content;
use common::torrent::{create, seeder};

/// A download that has not finished by then has hung.
const GET_TIMEOUT: Duration = Duration::from_secs(90);

fn run(args: &[&str]) -> std::process::Output {
    common::run(args, GET_TIMEOUT)
}

fn seed_and_get(seed_enc: &str, get_enc: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("image.bin");
    let data = content(&src, 2 << 20);
    let (torrent, _) = create(&src, "64K");
    let (_seeder, listen) = seeder(&torrent, &src, &["--encryption", seed_enc]);
    let out = dir.path().join("down");
    let got = run(&[
        "torrent",
        "get",
        torrent.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--peer",
        &listen,
        "--encryption",
        get_enc,
    ]);
    assert!(
        got.status.success(),
        "seed {seed_enc} / get {get_enc}: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("image.bin")).expect("downloaded"),
        data
    );
}

#[test]
fn a_seeder_that_requires_mse_serves_a_default_leecher() {
    seed_and_get("require", "prefer");
}

#[test]
fn a_plaintext_only_leecher_downloads_from_a_default_seeder() {
    seed_and_get("prefer", "plaintext");
}
