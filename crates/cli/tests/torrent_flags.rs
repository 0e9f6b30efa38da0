//! The `servent torrent` vocabulary (issue 15): `-o/--output` is always a folder, durations
//! take units, limits are range-checked with the range in the message, every subcommand's
//! help states the exit codes.

use std::time::Duration;

mod common;
use common::torrent::{NO_TRACKER, arg as s};
use common::{content, run, stderr};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn create_with_output_writes_name_dot_torrent_into_the_folder_and_get_takes_output_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.bin");
    content(&src, 100_000);
    let folder = dir.path().join("torrents");
    std::fs::create_dir_all(&folder).unwrap();
    let t = NO_TRACKER;
    let o = run(
        &["torrent", "create", s(&src), "-t", t, "-o", s(&folder)],
        LIMIT,
    );
    assert!(o.status.success(), "{o:?}");
    let torrent = folder.join("clip.bin.torrent");
    assert!(torrent.is_file(), "no {}", torrent.display());
    // --torrent-file names the file exactly; with -o too it is a usage error.
    let exact = dir.path().join("x.torrent");
    let o = run(
        &[
            "torrent",
            "create",
            s(&src),
            "-t",
            t,
            "--torrent-file",
            s(&exact),
        ],
        LIMIT,
    );
    assert!(o.status.success() && exact.is_file(), "{o:?}");
    let both = [
        "torrent",
        "create",
        s(&src),
        "-t",
        t,
        "-o",
        s(&folder),
        "--torrent-file",
        s(&exact),
    ];
    assert_eq!(run(&both, LIMIT).status.code(), Some(2));
    // `get` spells its folder --output; --out still works. The data is already complete
    // (it is the source), so each returns at once.
    for flag in ["--output", "--out", "-o"] {
        let o = run(&["torrent", "get", s(&torrent), flag, s(dir.path())], LIMIT);
        assert!(o.status.success(), "{flag}: {o:?}");
    }
}

#[test]
fn create_and_share_with_output_create_a_missing_folder_and_write_name_dot_torrent_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.bin");
    content(&src, 100_000);
    // create -o into a folder two levels deep that does not exist yet
    let folder = dir.path().join("new").join("torrents");
    let o = run(
        &[
            "torrent",
            "create",
            s(&src),
            "-t",
            NO_TRACKER,
            "-o",
            s(&folder),
        ],
        LIMIT,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(folder.join("clip.bin.torrent").is_file());
    // share -o likewise: the torrent is written before the magnet line is printed
    let folder2 = dir.path().join("shared").join("out");
    let torrent = folder2.join("clip.bin.torrent");
    let mut p = common::Proc::start(&["torrent", "share", s(&src), "--no-dht", "-o", s(&folder2)]);
    p.wait_line(LIMIT, |l| l.starts_with("magnet:"));
    assert!(torrent.is_file(), "no {}", torrent.display());
}

#[test]
fn durations_take_units_and_limits_out_of_range_are_usage_errors_naming_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let torrent = dir.path().join("none.torrent");
    let get = |extra: &[&str]| {
        let mut a = vec!["torrent", "get", s(&torrent), "-o", s(dir.path())];
        a.extend_from_slice(extra);
        run(&a, LIMIT)
    };
    for (flag, value, range) in [
        ("--upload-limit", "10", "1024 to 10000000000"),
        ("--download-limit", "0", "1024 to 10000000000"),
        ("--seed-ratio", "0", "0.01 to 1000"),
        ("--seed-ratio", "5000", "0.01 to 1000"),
        ("--seed-time", "0s", "1s to 365 days"),
        ("--seed-time", "400d", ""),
    ] {
        let o = get(&[flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {o:?}");
        assert!(stderr(&o).contains(range), "{flag} {value}: {}", stderr(&o));
    }
    // Accepted spellings get past argument parsing (then fail on the missing torrent, 1).
    for (flag, value) in [
        ("--seed-time", "90s"),
        ("--seed-time", "2m"),
        ("--seed-time", "120"),
    ] {
        let o = get(&["--seed-after", flag, value]);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {o:?}");
    }
    let o = run(&["torrent", "tracker", "--interval", "0s"], LIMIT);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("1s to 24h"), "{}", stderr(&o));
}

#[test]
fn every_torrent_subcommand_help_states_the_exit_codes() {
    for sub in ["create", "show", "tracker", "seed", "share", "get"] {
        let o = run(&["torrent", sub, "--help"], LIMIT);
        assert!(o.status.success(), "{sub}: {o:?}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("Exit codes: 0 success"), "{sub}: {out}");
    }
}
