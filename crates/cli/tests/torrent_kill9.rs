//! Crash safety of a download: a leecher is `kill -9`ed at 20 points during a download from a
//! slow seeder and restarted each time. A piece the resume data records as verified is never
//! lost (the count never goes down, and its bytes on disk are the right ones), and the final
//! file is correct.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::torrent::{create, info_hash, seeder};
use common::{Proc, content};

const LIMIT: Duration = Duration::from_secs(90);
const PIECE: usize = 16 << 10;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The pieces the resume file lists as verified (its layout: magic, info-hash, count, bits,
/// SHA-1 of all that).
fn verified(resume: &Path, pieces: usize) -> Vec<usize> {
    let Ok(b) = std::fs::read(resume) else {
        return Vec::new();
    };
    let bits = pieces.div_ceil(8);
    assert_eq!(b.len(), 8 + 20 + 4 + bits + 20, "torn resume file");
    assert_eq!(&b[..8], b"SVTRES01");
    (0..pieces)
        .filter(|i| b[32 + i / 8] & (0x80 >> (i % 8)) != 0)
        .collect()
}

#[test]
fn kill_9_at_twenty_points_of_a_download_loses_no_verified_piece() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("image.bin");
    let data = content(&src, 2 << 20);
    let pieces = data.len() / PIECE;
    let (torrent, _) = create(&src, "16K");
    let ih = info_hash(&torrent);
    // 2 MiB at 100 kB/s: about 21 s of transfer, so the kills land mid-download.
    let (_seeder, listen) = seeder(&torrent, &src, &["--upload-limit", "100000"]);
    let out = dir.path().join("dl");
    let resume = out.join(format!(".servent-resume-{ih}"));
    let get = || {
        Proc::start(&[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&out),
            "--peer",
            &listen,
            "--encryption",
            "plaintext",
        ])
    };
    let started = Instant::now();
    let mut before = Vec::new();
    let mut mid_download = 0;
    for i in 0..20u64 {
        let mut leecher = get();
        leecher.wait_line(LIMIT, |l| l.contains("listening on"));
        // Kill points spread over 0.6..2.1 s after it starts listening (resume data is
        // made durable once a second).
        std::thread::sleep(Duration::from_millis(600 + (i * 373) % 1500));
        leecher.kill9();
        let now = verified(&resume, pieces);
        assert!(
            before.iter().all(|p| now.contains(p)),
            "kill {i}: verified pieces were lost ({} before, {} after)",
            before.len(),
            now.len()
        );
        let on_disk = std::fs::read(out.join("image.bin")).unwrap();
        for &p in &now {
            assert!(
                on_disk[p * PIECE..(p + 1) * PIECE] == data[p * PIECE..(p + 1) * PIECE],
                "kill {i}: piece {p} is recorded verified but its bytes are wrong"
            );
        }
        if now.len() < pieces {
            mid_download += 1;
        }
        eprintln!("kill {i}: {} of {pieces} pieces durable", now.len());
        before = now;
    }
    assert!(
        mid_download >= 15,
        "only {mid_download} kills landed mid-download"
    );
    assert!(!before.is_empty(), "nothing was ever recorded verified");
    let fin = common::run(
        &[
            "torrent",
            "get",
            s(&torrent),
            "-o",
            s(&out),
            "--peer",
            &listen,
            "--encryption",
            "plaintext",
        ],
        LIMIT,
    );
    assert!(fin.status.success(), "{fin:?}");
    assert_eq!(std::fs::read(out.join("image.bin")).unwrap(), data);
    assert!(started.elapsed() < LIMIT * 2);
}
