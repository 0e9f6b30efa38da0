//! Magnet links and trackerless torrents end to end, every party a separate `servent`
//! process on 127.0.0.1: a leecher given only a magnet link fetches the info dictionary from
//! a seeder (BEP 10 + BEP 9) and downloads the file; `share` publishes a file through the DHT
//! alone and `get MAGNET` finds it there, with no tracker running anywhere.

use std::process::Output;
use std::time::Duration;

mod common;
use common::torrent::{create, seeder};
use common::{Proc, content};

/// A download that has not finished by then has hung.
const GET_TIMEOUT: Duration = Duration::from_secs(90);

fn run(args: &[&str]) -> Output {
    common::run(args, GET_TIMEOUT)
}

#[test]
fn a_leecher_with_only_a_magnet_link_fetches_the_metadata_and_the_file_from_a_seeder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("image.bin");
    let data = content(&src, 3 << 20);
    // A tracker URL nobody answers: the magnet's peer comes from x.pe.
    let (torrent, created) = create(&src, "64K");
    let magnet = created
        .lines()
        .find_map(|l| {
            l.strip_prefix("magnet:")
                .and_then(|rest| rest.split_whitespace().last())
                .map(str::to_string)
        })
        .expect("create prints the magnet link");
    let (_seeder, listen) = seeder(&torrent, &src, &[]);
    let out = dir.path().join("down");
    let link = format!("{magnet}&x.pe={listen}");
    // The seeder may still be hashing: the leecher retries the peer until it answers.
    let got = run(&["torrent", "get", &link, "-o", out.to_str().unwrap()]);
    assert!(
        got.status.success(),
        "get failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("image.bin")).expect("downloaded"),
        data
    );
}

#[test]
fn share_publishes_through_the_dht_and_get_magnet_downloads_with_no_tracker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("boot");
    let mut boot_node = Proc::start(&[
        "dht",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--data",
        state.to_str().unwrap(),
    ]);
    // the first line the node prints is its address
    let first = boot_node.wait_line(Duration::from_secs(30), |_| true);
    let boot = first
        .rsplit_once("listening on udp ")
        .map(|(_, a)| a.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let folder = dir.path().join("album");
    std::fs::create_dir_all(folder.join("cd1")).expect("mkdir");
    let a = content(&folder.join("cd1").join("a.bin"), 700_000);
    let b = content(&folder.join("b.bin"), 1 << 20);
    let mut share = Proc::start(&[
        "torrent",
        "share",
        folder.to_str().unwrap(),
        "--bootstrap",
        &boot,
    ]);
    // share prints the magnet link first
    let magnet = share.wait_line(Duration::from_secs(60), |_| true);
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet:?}");
    assert!(!magnet.contains("tr="), "no tracker: {magnet:?}");
    let out = dir.path().join("down");
    let got = run(&[
        "torrent",
        "get",
        &magnet,
        "-o",
        out.to_str().unwrap(),
        "--bootstrap",
        &boot,
    ]);
    assert!(
        got.status.success(),
        "get failed: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(std::fs::read(out.join("album/cd1/a.bin")).expect("a"), a);
    assert_eq!(std::fs::read(out.join("album/b.bin")).expect("b"), b);
}

#[test]
fn share_keeps_its_dht_routing_table_in_the_data_folder_across_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut boot_node = Proc::start(&[
        "dht",
        "run",
        "--listen",
        "127.0.0.1:0",
        "--data",
        dir.path().join("boot").to_str().unwrap(),
    ]);
    let first = boot_node.wait_line(Duration::from_secs(30), |_| true);
    let boot = first
        .rsplit_once("listening on udp ")
        .map(|(_, a)| a.trim().to_string())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    let file = dir.path().join("f.bin");
    content(&file, 100_000);
    // a state folder that does not exist yet
    let data = dir.path().join("state").join("share");
    let saved = data.join("dht.dat");
    let share = |extra: &[&str]| {
        let mut args = vec!["torrent", "share", file.to_str().unwrap()];
        args.extend_from_slice(&["--data", data.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let mut p = Proc::start(&args);
        p.wait_line(Duration::from_secs(60), |l| l.contains("listening on"));
        let (code, rest) = p.interrupt(Duration::from_secs(30));
        assert_eq!(code, Some(0), "{rest}");
    };
    share(&["--bootstrap", &boot]);
    let first = std::fs::read(&saved).expect("dht.dat saved on exit");
    assert!(!first.is_empty());
    // no --bootstrap: the saved table is enough to start the DHT, and is saved again
    let before = std::fs::metadata(&saved)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::thread::sleep(Duration::from_millis(50));
    share(&[]);
    let after = std::fs::metadata(&saved)
        .and_then(|m| m.modified())
        .expect("mtime");
    assert!(after > before, "the second run saved its table again");
    assert!(!data.join("dht.tmp").exists(), "no temporary file left");
}
