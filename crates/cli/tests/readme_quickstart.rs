//! The README's quickstart stays true: every `###` section under `## Quickstart` runs as
//! written, its fenced blocks one after another in one `bash -euo pipefail`, in a fresh
//! temporary folder that is also `$HOME`, with this build's `servent` first on `PATH`.
//! The section "Before you start" is the prelude of every other section. Each section has
//! a time limit; `timeout` kills its whole process group (background servers included)
//! when it is reached, and every section kills its background jobs when it ends. A file a
//! section tells the user to download (the coin's `blocks1-256.bz2`) is copied in from the
//! shared data folder beside the checkout.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The most one section may take (debug build, 2 cores, other tests running).
const SECTION_LIMIT_S: u64 = 240;

/// One `###` section: its title and the text of its fenced blocks.
struct Section {
    title: String,
    script: String,
}

fn quickstart(readme: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut in_quickstart = false;
    let mut in_block = false;
    for line in readme.lines() {
        if in_block {
            if line.trim_start().starts_with("```") {
                in_block = false;
            } else if let Some(s) = sections.last_mut() {
                s.script.push_str(line);
                s.script.push('\n');
            }
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            in_quickstart = title.trim() == "Quickstart";
            continue;
        }
        if !in_quickstart {
            continue;
        }
        if let Some(title) = line.strip_prefix("### ") {
            sections.push(Section {
                title: title.trim().to_string(),
                script: String::new(),
            });
        } else if line.trim_start().starts_with("```") {
            assert!(
                !sections.is_empty(),
                "a quickstart block outside any ### section"
            );
            in_block = true;
        }
    }
    sections
}

fn run_section(prelude: &str, s: &Section, bin_dir: &Path) -> Result<f64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = format!(
        "set -euo pipefail\n\
         trap 'exit 143' TERM INT\n\
         trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT\n\
         set -x\n\
         {prelude}\n\
         {}",
        s.script
    );
    // Data files a section names that a user downloads (the coin's real blocks) come from
    // the shared data folder beside the checkout, as CI lays it.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/bitcoin");
    for name in ["blocks1-256.bz2"] {
        if s.script.contains(name) {
            std::fs::copy(shared.join(name), dir.path().join(name))
                .map_err(|e| format!("{name} must be in {}: {e}", shared.display()))?;
        }
    }
    let path = dir.path().join("section.sh");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let log = dir.path().join("section.log");
    let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let started = Instant::now();
    let status = Command::new("timeout")
        .args(["-k", "5", &SECTION_LIMIT_S.to_string(), "bash"])
        .arg(&path)
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("PATH", path_var)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("running bash: {e}"))?;
    let secs = started.elapsed().as_secs_f64();
    if status.success() {
        return Ok(secs);
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(format!(
        "section \"{}\" failed ({status}, {secs:.1} s); last lines of its output:\n{}",
        s.title,
        tail.join("\n")
    ))
}

#[test]
fn every_readme_quickstart_block_runs_as_written() {
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let sections = quickstart(&readme);
    let prelude = sections
        .iter()
        .find(|s| s.title == "Before you start")
        .map(|s| s.script.clone())
        .expect("README quickstart has a \"Before you start\" section");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_servent"))
        .parent()
        .expect("binary folder")
        .to_path_buf();
    let mut failures = Vec::new();
    let mut ran = 0;
    for s in sections.iter().filter(|s| s.title != "Before you start") {
        assert!(
            !s.script.trim().is_empty(),
            "section {} has no block",
            s.title
        );
        ran += 1;
        match run_section(&prelude, s, &bin_dir) {
            Ok(secs) => eprintln!("quickstart \"{}\": ok in {secs:.1} s", s.title),
            Err(e) => failures.push(e),
        }
    }
    assert!(ran >= 7, "only {ran} quickstart sections found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_parser_finds_sections_and_blocks() {
    let text = "# x\n## Quickstart\n### A\ntext\n```\necho a\n```\n### B\n```bash\necho b\n```\n```\necho c\n```\n## Other\n### C\n```\necho no\n```\n";
    let s = quickstart(text);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].title, "A");
    assert_eq!(s[0].script, "echo a\n");
    assert_eq!(s[1].script, "echo b\necho c\n");
}
