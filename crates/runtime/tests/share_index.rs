//! The shared-file index against a real folder: search, hashing, and every way out refused.

use std::fs;

use servent_runtime::share::ShareIndex;

fn folder() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("Pixies - Debaser.mp3"), b"debaser bytes").unwrap();
    fs::write(d.path().join("pixies - wave of mutilation.mp3"), b"wave").unwrap();
    fs::create_dir(d.path().join("docs")).unwrap();
    fs::write(d.path().join("docs/Chord Paper.pdf"), vec![1u8; 5000]).unwrap();
    d
}

#[test]
fn scan_gives_stable_indexes_sizes_and_keywords() {
    let d = folder();
    let idx = ShareIndex::scan(d.path()).unwrap();
    let paths: Vec<&str> = idx.files().iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        vec![
            "Pixies - Debaser.mp3",
            "docs/Chord Paper.pdf",
            "pixies - wave of mutilation.mp3"
        ]
    );
    let f = idx.get(1).unwrap();
    assert_eq!((f.name.as_str(), f.size), ("Chord Paper.pdf", 5000));
    assert_eq!(f.keywords, vec!["docs", "chord", "paper", "pdf"]);
    assert_eq!(idx.total_bytes(), 13 + 4 + 5000);
    assert_eq!(
        idx.by_path("docs/Chord Paper.pdf").map(|f| f.index),
        Some(1)
    );
}

#[test]
fn search_is_case_insensitive_all_terms_with_wildcards() {
    let d = folder();
    let idx = ShareIndex::scan(d.path()).unwrap();
    let names = |q: &str| {
        idx.search(q, 10)
            .iter()
            .map(|f| f.index)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("DEBASER"), vec![0]);
    assert_eq!(names("pixies"), vec![0, 2]);
    assert_eq!(names("pixies wave"), vec![2]);
    assert_eq!(names("deb*"), vec![0]);
    assert_eq!(names("*.pdf"), vec![1]);
    assert_eq!(names("mut*tion pix*"), vec![2]);
    assert_eq!(names("nothing-here"), Vec::<u32>::new());
    assert_eq!(names("*"), Vec::<u32>::new());
    assert_eq!(idx.search("pixies", 1).len(), 1);
}

#[test]
fn hashes_are_computed_on_demand() {
    let d = folder();
    let idx = ShareIndex::scan(d.path()).unwrap();
    let h = idx.hashes(2).unwrap();
    assert_eq!(h, idx.hashes(2).unwrap());
    // servent_core::Id::hash is SHA-1, checked there against the published vector
    assert_eq!(h.sha1, servent_core::Id::hash(b"wave").0);
    assert_eq!(
        hex(&h.sha256),
        "4b125ec99a74470517f9f51ac1a70eafa3dbd1ddd4bae409fe59a98ed720a3a4"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn paths_outside_the_folder_and_symlinks_are_refused() {
    let d = folder();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("link.mp3")).unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path().join("linkdir")).unwrap();
    let idx = ShareIndex::scan(d.path()).unwrap();
    // symlinks are not shared at all
    assert!(idx.files().iter().all(|f| !f.path.contains("link")));
    for bad in [
        "../secret",
        "link.mp3",
        "linkdir/secret",
        "/etc/passwd",
        "docs/../../x",
        "docs",
    ] {
        assert!(idx.resolve(bad).is_err(), "{bad}");
    }
    assert!(idx.resolve("docs/Chord Paper.pdf").is_ok());
    assert!(idx.open(99).is_err());
    let mut s = String::new();
    use std::io::Read;
    idx.open(0).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "debaser bytes");
    assert!(idx.get_named(0, "Pixies - Debaser.mp3").is_some());
    assert!(idx.get_named(0, "../../etc/passwd").is_none());
}
