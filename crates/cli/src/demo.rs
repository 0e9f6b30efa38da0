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
    print_table(&sections);
    let path = out.join("report.html");
    write_report(&path, &sections)?;
    println!(
        "\nreport: {}  ({:.1} s)",
        path.display(),
        started.elapsed().as_secs_f64()
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
    let w_sys = sections
        .iter()
        .map(|s| s.system.len())
        .max()
        .unwrap_or(6)
        .clamp(6, 40);
    let w_chk = sections
        .iter()
        .flat_map(|s| s.rows.iter().map(|r| r.check.len()))
        .max()
        .unwrap_or(5)
        .clamp(5, 70);
    println!(
        "{:<w_sys$}  {:<w_chk$}  {:<4}  result",
        "system", "check", "ok"
    );
    println!("{}", "-".repeat(w_sys + w_chk + 40));
    for s in sections {
        for (i, r) in s.rows.iter().enumerate() {
            let sys = if i == 0 { s.system.as_str() } else { "" };
            println!(
                "{:<w_sys$}  {:<w_chk$}  {:<4}  {}",
                trunc(sys, w_sys),
                trunc(&r.check, w_chk),
                if r.ok { "yes" } else { "NO" },
                r.result
            );
        }
    }
}

fn trunc(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
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
