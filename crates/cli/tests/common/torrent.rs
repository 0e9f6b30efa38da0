//! The setup every `torrent_*` test repeats: a payload's torrent, its info-hash, a seeder
//! process listening on a free loopback port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Proc, free_port, run, stdout};

/// How long one setup step (create, show, a seeder's first line) may take.
const STEP: Duration = Duration::from_secs(90);

/// A tracker URL nobody answers: peers come from `--peer`, `x.pe` or the DHT.
pub const NO_TRACKER: &str = "http://127.0.0.1:1/announce";

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// `torrent create SRC -t NO_TRACKER --piece-size PIECE` into `SRC.torrent` beside it;
/// returns that path and what `create` printed (its magnet line among it).
pub fn create(src: &Path, piece: &str) -> (PathBuf, String) {
    create_with(src, piece, &["-t", NO_TRACKER])
}

/// `torrent create SRC --piece-size PIECE EXTRA..` into `SRC.torrent` beside it (EXTRA: the
/// trackers, `--web-seed URL`, `--trackerless`…); returns that path and what `create`
/// printed.
pub fn create_with(src: &Path, piece: &str, extra: &[&str]) -> (PathBuf, String) {
    let torrent = src.with_extension("torrent");
    let mut args = vec!["torrent", "create", arg(src), "--piece-size", piece];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--torrent-file", arg(&torrent)]);
    let o = run(&args, STEP);
    assert!(o.status.success(), "torrent create {extra:?}: {o:?}");
    (torrent, stdout(&o))
}

/// The torrent's info-hash in hex, from `torrent show --json`.
pub fn info_hash(torrent: &Path) -> String {
    let shown = stdout(&run(&["torrent", "show", arg(torrent), "--json"], STEP));
    let v: serde_json::Value = serde_json::from_str(shown.trim()).expect("show --json");
    v["info_hash"].as_str().expect("info_hash").to_string()
}

/// `torrent seed TORRENT SRC --listen 127.0.0.1:FREE EXTRA..`, once it says it listens;
/// returns the process (SIGKILLed on drop) and its address.
pub fn seeder(torrent: &Path, src: &Path, extra: &[&str]) -> (Proc, String) {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "torrent",
        "seed",
        arg(torrent),
        arg(src),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let mut p = Proc::start(&args);
    p.wait_line(STEP, |l| l.contains("listening on"));
    (p, listen)
}
