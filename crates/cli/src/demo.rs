//! `servent demo`: every implemented system on 127.0.0.1, a summary table, and an HTML
//! report with the plots.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use servent_core::pingpong::{Ping, PingEvent, PingPong, Transport};
use servent_runtime::{NodeConfig, spawn};
use servent_sim::{Plot, Scenario, ScenarioOpts};

/// One system's part of the demo.
#[derive(Debug, Default)]
pub struct DemoSection {
    /// The system's name.
    pub system: String,
    /// What was checked and what came out: (check, result, passed).
    pub rows: Vec<DemoRow>,
    /// Plots for the report.
    pub plots: Vec<Plot>,
    /// Paragraphs for the report.
    pub notes: Vec<String>,
}

/// One line of the summary table.
#[derive(Debug, Clone)]
pub struct DemoRow {
    /// What was done.
    pub check: String,
    /// What came out (figures).
    pub result: String,
    /// Whether it did what it should.
    pub ok: bool,
}

impl DemoSection {
    /// An empty section for `system`.
    pub fn new(system: &str) -> DemoSection {
        DemoSection {
            system: system.to_string(),
            ..DemoSection::default()
        }
    }

    /// Adds a row.
    pub fn row(&mut self, check: impl Into<String>, result: impl Into<String>, ok: bool) {
        self.rows.push(DemoRow {
            check: check.into(),
            result: result.into(),
            ok,
        });
    }

    /// Whether every row passed.
    pub fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.ok)
    }
}

/// Runs the demo and writes `out/report.html`.
pub async fn run(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut sections = Vec::new();
    let started = std::time::Instant::now();
    // Each system's section, in the order of the README.
    sections.push(section_or_failure(
        "foundation (ping/pong example protocol)",
        foundation(out).await,
    ));
    sections.push(section_or_failure(
        "Napster (OpenNap)",
        crate::napster::demo(out).await,
    ));
    sections.push(section_or_failure(
        "Gnutella 0.4 / 0.6",
        crate::gnutella::demo(out).await,
    ));
    sections.push(section_or_failure(
        "BitTorrent",
        crate::torrent::demo(out).await,
    ));
    sections.push(section_or_failure(
        "Kademlia DHT (BEP 5)",
        crate::dht::demo(out).await,
    ));
    sections.push(section_or_failure(
        "Chord",
        crate::chord::demo(&out.join("chord")).await,
    ));
    sections.push(section_or_failure(
        "Coin (Bitcoin regtest)",
        crate::coin::demo(out).await,
    ));
    sections.push(section_or_failure(
        "Coin pool (Stratum v1, PPLNS)",
        crate::coin_pool::demo_pool(out, 8).await,
    ));
    sections.push(section_or_failure("P2P TV", crate::tv::demo(out).await));
    print_table(&sections);
    let path = out.join("report.html");
    write_report(&path, &sections)?;
    let (files, bytes) = remove_payloads(out)
        .with_context(|| format!("removing the demo's payload files under {}", out.display()))?;
    println!(
        "\nreport: {}  ({:.1} s; removed the {files} payload files the demo made, {})",
        path.display(),
        started.elapsed().as_secs_f64(),
        crate::common::fmt_bytes(bytes)
    );
    if sections.iter().all(DemoSection::ok) {
        Ok(())
    } else {
        anyhow::bail!("some demo checks failed (see the table above)")
    }
}

/// A section that failed to run at all still shows up, as a failed row.
pub fn section_or_failure(system: &str, r: Result<DemoSection>) -> DemoSection {
    r.unwrap_or_else(|e| {
        let mut s = DemoSection::new(system);
        s.row("run", format!("{e:#}"), false);
        s
    })
}

async fn foundation(out: &Path) -> Result<DemoSection> {
    let mut sec = DemoSection::new("foundation (ping/pong example protocol)");
    // 1. Real sockets: 4 nodes on 127.0.0.1, every node pings every other over UDP and TCP.
    let cfg = NodeConfig {
        udp: Some("127.0.0.1:0".parse()?),
        tcp: Some("127.0.0.1:0".parse()?),
        ..NodeConfig::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        nodes.push(spawn(cfg.clone(), |_| PingPong::new(Duration::from_secs(2))).await?);
    }
    let addrs: Vec<_> = nodes.iter().map(|n| n.local).collect();
    let mut sent = 0;
    for (i, n) in nodes.iter().enumerate() {
        for (j, a) in addrs.iter().enumerate() {
            if i == j {
                continue;
            }
            let (Some(udp), Some(tcp)) = (a.udp, a.tcp) else {
                continue;
            };
            n.command(Ping {
                id: (j * 2) as u64,
                to: udp,
                transport: Transport::Datagram,
            })
            .await?;
            n.command(Ping {
                id: (j * 2 + 1) as u64,
                to: tcp,
                transport: Transport::Stream,
            })
            .await?;
            sent += 2;
        }
    }
    let mut rtts = Vec::new();
    let mut lost = 0;
    for n in &mut nodes {
        let mut got = 0;
        while got < 6 {
            match tokio::time::timeout(Duration::from_secs(5), n.next_event()).await {
                Ok(Some(PingEvent::Pong { rtt, .. })) => {
                    rtts.push(rtt.as_secs_f64() * 1e3);
                    got += 1;
                }
                Ok(Some(PingEvent::Pinged { .. })) => {}
                Ok(Some(_)) => {
                    lost += 1;
                    got += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    for n in nodes {
        n.shutdown().await?;
    }
    rtts.sort_by(f64::total_cmp);
    sec.row(
        "tokio driver: 4 nodes ping each other over UDP and TCP on 127.0.0.1",
        format!(
            "{}/{} answered, {} lost, median RTT {:.2} ms",
            rtts.len(),
            sent,
            lost,
            servent_sim::percentile(&rtts, 50.0)
        ),
        rtts.len() == sent,
    );
    // 2. The same core in the simulator, at scale.
    let opts = ScenarioOpts {
        params: Default::default(),
        nodes: Some(10_000),
        seed: 1,
        out: out.join("pingpong"),
    };
    let rep = tokio::task::block_in_place(|| servent_sim::pingpong::PingPongScenario.run(&opts))?;
    rep.write(&opts.out)?;
    let get = |k: &str| rep.get(k).unwrap_or_default().to_string();
    let success: f64 = get("success").parse().unwrap_or(0.0);
    sec.row(
        "simulator: 10 000 nodes, 1% loss, 1% dead nodes",
        format!(
            "success {}, {} events at {} events/s",
            get("success"),
            get("events"),
            get("events_per_sec")
        ),
        success > 0.9,
    );
    sec.plots.extend(rep.plots);
    sec.notes.push(
        "The same PingPong core runs under the tokio driver on real sockets and under the \
         simulator; the runtime crate's test checks that both report the same events."
            .into(),
    );
    Ok(sec)
}

fn print_table(sections: &[DemoSection]) {
    print!("{}", table_text(sections));
}

/// The summary: one block per system; each check on its own line and its result on the next,
/// indented, so nothing is cut at any terminal width (a terminal wraps long results itself).
fn table_text(sections: &[DemoSection]) -> String {
    let mut t = String::new();
    for s in sections {
        let _ = writeln!(t, "\n{}", s.system);
        for r in &s.rows {
            let _ = writeln!(t, "  {:<3}  {}", if r.ok { "ok" } else { "NO" }, r.check);
            if !r.result.is_empty() {
                let _ = writeln!(t, "       {}", r.result);
            }
        }
    }
    t
}

/// What the report keeps: the page, its plots and the figures behind them.
const REPORT_EXTENSIONS: &[&str] = &["html", "svg", "csv", "json", "md"];

/// The folders under the output folder where sections put the files they exercise the systems
/// with (shared files, downloaded copies, torrents, databases).
const PAYLOAD_FOLDERS: &[&str] = &[
    "coin",
    "bittorrent",
    "bittorrent-trackerless",
    "gnutella",
    "napster",
];

/// Deletes the payload files the sections made (in [`PAYLOAD_FOLDERS`] only, so nothing else
/// in a user's output folder is touched), keeping the report's files; returns (files, bytes).
fn remove_payloads(out: &Path) -> std::io::Result<(u64, u64)> {
    fn walk(dir: &Path, acc: &mut (u64, u64)) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let path = e.path();
            // Not followed: a symbolic link is removed as a file.
            if e.file_type()?.is_dir() {
                walk(&path, acc)?;
                // Only empty folders go (remove_dir refuses the others).
                let _ = std::fs::remove_dir(&path);
            } else {
                let keep = path
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| REPORT_EXTENSIONS.contains(&x));
                if !keep {
                    acc.0 += 1;
                    acc.1 += e.metadata().map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }
    let mut acc = (0, 0);
    for name in PAYLOAD_FOLDERS {
        let dir = out.join(name);
        if dir.is_dir() {
            walk(&dir, &mut acc)?;
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(acc)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write_report(path: &Path, sections: &[DemoSection]) -> Result<()> {
    let mut h = String::new();
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>servent demo</title>");
    h.push_str("<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}.no{color:#b00;font-weight:bold}.yes{color:#080}</style></head><body>");
    h.push_str("<h1>servent demo</h1><p>Every implemented system, run on 127.0.0.1 and in the simulator.</p>");
    for s in sections {
        let _ = write!(
            h,
            "<h2>{}</h2><table><tr><th>check</th><th>ok</th><th>result</th></tr>",
            esc(&s.system)
        );
        for r in &s.rows {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
                esc(&r.check),
                if r.ok { "yes" } else { "no" },
                if r.ok { "yes" } else { "NO" },
                esc(&r.result)
            );
        }
        h.push_str("</table>");
        for n in &s.notes {
            let _ = write!(h, "<p>{}</p>", esc(n));
        }
        for p in &s.plots {
            match servent_sim::scenario::render_svg(p) {
                Ok(svg) => h.push_str(&svg),
                Err(e) => {
                    let _ = write!(
                        h,
                        "<p class=\"no\">plot {} failed: {}</p>",
                        esc(&p.name),
                        esc(&e)
                    );
                }
            }
        }
    }
    h.push_str("</body></html>\n");
    servent_sim::scenario::write_atomic(path, h.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_prints_every_check_and_result_whole_whatever_their_length() {
        let mut s = DemoSection::new("Kademlia DHT (BEP 5)");
        let long = "stored at 8 nodes, put seq 2, found seq 2; ".repeat(4);
        s.row(
            "BEP 44 mutable item updated (seq 2), newest found by another node",
            &long,
            true,
        );
        s.row("a check that failed", "", false);
        let t = table_text(&[s]);
        assert!(!t.contains('…'), "{t}");
        assert!(t.contains(&format!("       {long}\n")), "{t}");
        assert!(t.contains(
            "  ok   BEP 44 mutable item updated (seq 2), newest found by another node\n"
        ));
        assert!(t.contains("  NO   a check that failed\n"));
        assert!(!t.contains("Some("), "no Rust debug text: {t}");
    }

    #[test]
    fn the_demo_removes_its_payload_copies_and_keeps_the_report_and_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path();
        let put = |rel: &str, len: usize| {
            let p = out.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, vec![7u8; len]).expect("write");
        };
        put("bittorrent/leecher-1/image.bin", 1000);
        put("bittorrent/image.torrent", 100);
        put("gnutella/shares/n1/Pixies - Debaser.mp3", 500);
        put("napster/napster.db", 50);
        put("bittorrent-swarm/bittorrent_swarm.svg", 10);
        put("bittorrent-swarm/bittorrent_swarm.csv", 10);
        put("gnutella/flood.csv", 10);
        put("report.html", 10);
        put("mine/keep.bin", 10);
        let (files, bytes) = remove_payloads(out).expect("remove");
        assert_eq!((files, bytes), (4, 1650));
        for gone in ["bittorrent", "napster", "gnutella/shares"] {
            assert!(!out.join(gone).exists(), "{gone} is still there");
        }
        for kept in [
            "bittorrent-swarm/bittorrent_swarm.svg",
            "bittorrent-swarm/bittorrent_swarm.csv",
            "gnutella/flood.csv",
            "report.html",
            "mine/keep.bin",
        ] {
            assert!(out.join(kept).is_file(), "{kept} was removed");
        }
    }
}
