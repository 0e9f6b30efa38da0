//! Load: N clients (default 10 000) logged in and sharing over real TCP on 127.0.0.1,
//! held by one process, while a second process issues searches; the server runs in this
//! process. Prints searches per second and latency p50/p99, then checks that every account
//! reached the database. Bounded: setup 300 s, searching 10 s, every wait has a timeout.
//!
//! `cargo bench -p servent-napster --bench load [-- CLIENTS]`

#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // wall-clock timing and child processes: a benchmark

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant as Wall};

use servent_napster::net::{self, ServerOptions};
use servent_napster::server::ServerConfig;
use servent_napster::store::Store;
use servent_napster::wire::{self, ClientMsg, FileInfo, LinkType, SearchQuery};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FILES_EACH: usize = 10;
const SEARCH_FOR: Duration = Duration::from_secs(10);

fn login(nick: &str, out: &mut Vec<u8>) {
    let _ = ClientMsg::Login {
        nick: nick.into(),
        password: "pw".into(),
        port: 6699,
        client: "load".into(),
        link: LinkType::CABLE,
    }
    .encode(out);
}

/// Reads frames until one of type `kind`; returns how many frames were read.
async fn until(s: &mut TcpStream, buf: &mut Vec<u8>, kind: u16) -> std::io::Result<usize> {
    let mut frames = 0;
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        while let Some((len, t)) = wire::parse_header(buf) {
            let total = 4 + len as usize;
            if buf.len() < total {
                break;
            }
            buf.drain(..total);
            frames += 1;
            if t == kind {
                return Ok(frames);
            }
            if t == wire::kind::ERROR {
                return Err(std::io::Error::other("server refused"));
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Child 1: hold `n` logged-in, sharing connections until stdin closes.
async fn clients(addr: SocketAddr, n: usize) {
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = Vec::with_capacity(n);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<bool>(n.max(1));
    for i in 0..n {
        let gate = gate.clone();
        let done = done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let r = async {
                let mut s = TcpStream::connect(addr).await?;
                let mut out = Vec::new();
                login(&format!("load{i}"), &mut out);
                for k in 0..FILES_EACH {
                    let _ = ClientMsg::Share(FileInfo {
                        name: format!("C:\\mp3\\artist{} - song {k} by load{i}.mp3", i % 500),
                        md5: "0".repeat(32),
                        size: 4_000_000,
                        bitrate: 128,
                        freq: 44100,
                        secs: 240,
                    })
                    .encode(&mut out);
                }
                s.write_all(&out).await?;
                let mut buf = Vec::new();
                until(&mut s, &mut buf, wire::kind::LOGIN_ACK).await?;
                Ok::<_, std::io::Error>(s)
            }
            .await;
            drop(permit);
            let _ = done.send(r.is_ok()).await;
            drop(done);
            if let Ok(mut s) = r {
                let mut sink = vec![0u8; 4096];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            }
        }));
    }
    drop(done_tx);
    let mut ok = 0;
    let mut failed = 0;
    while let Some(r) = done_rx.recv().await {
        if r { ok += 1 } else { failed += 1 }
    }
    println!("READY {ok} {failed}");
    let _ = std::io::stdout().flush();
    // Hold the connections until the parent closes our stdin.
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
    for t in tasks {
        t.abort();
    }
}

/// Child 2: log in and search for `SEARCH_FOR`; print the figures.
async fn searcher(addr: SocketAddr, n: usize) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr).await?;
    let mut out = Vec::new();
    login("searcher", &mut out);
    s.write_all(&out).await?;
    let mut buf = Vec::new();
    until(&mut s, &mut buf, wire::kind::LOGIN_ACK).await?;
    let mut lat = Vec::new();
    let mut results = 0usize;
    let start = Wall::now();
    let mut i = 0usize;
    while start.elapsed() < SEARCH_FOR && lat.len() < 1_000_000 {
        let mut q = Vec::new();
        let _ = ClientMsg::Search(SearchQuery {
            contains: vec![format!("artist{} song {}", i % 500, i % FILES_EACH)],
            max_results: Some(100),
            ..Default::default()
        })
        .encode(&mut q);
        let t = Wall::now();
        s.write_all(&q).await?;
        let frames = until(&mut s, &mut buf, wire::kind::SEARCH_END).await?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        results += frames - 1;
        i += 7;
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct =
        |p: f64| lat[((p / 100.0 * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "SEARCHES {} {:.0} {:.3} {:.3} {:.1} {n}",
        lat.len(),
        lat.len() as f64 / secs,
        pct(50.0),
        pct(99.0),
        results as f64 / lat.len().max(1) as f64
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("clients") => {
            let addr = args[1].parse().expect("addr");
            let n = args[2].parse().expect("n");
            rt.block_on(clients(addr, n));
        }
        Some("search") => {
            let addr = args[1].parse().expect("addr");
            let n = args[2].parse().expect("n");
            if let Err(e) = rt.block_on(searcher(addr, n)) {
                eprintln!("searcher: {e}");
            }
        }
        n => {
            let n: usize = n.and_then(|s| s.parse().ok()).unwrap_or(10_000);
            rt.block_on(parent(n));
        }
    }
}

async fn parent(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("load.db");
    let mut o = ServerOptions::new("127.0.0.1:0".parse().expect("addr"), db.clone());
    // One searcher asks as fast as it can: the per-user search limit is lifted here.
    o.config = ServerConfig {
        max_connections: n + 100,
        search_rate: (1e9, 1e9),
        ..ServerConfig::for_tests()
    };
    o.max_connections = n + 100;
    let srv = net::start_server(o).await.expect("server");
    let exe = std::env::current_exe().expect("exe");
    let t = Wall::now();
    let mut holder = Command::new(&exe)
        .args(["clients", &srv.addr.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("clients process");
    let out = holder.stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        line
    });
    let line = tokio::time::timeout(Duration::from_secs(300), ready)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let setup = t.elapsed().as_secs_f64();
    println!(
        "napster load: {n} clients, {FILES_EACH} files each, on 127.0.0.1 (server here, clients and searcher in two child processes)"
    );
    println!("setup: {} in {setup:.1} s", line.trim());
    let search = Command::new(&exe)
        .args(["search", &srv.addr.to_string(), &n.to_string()])
        .output()
        .expect("search process");
    let s = String::from_utf8_lossy(&search.stdout);
    let f: Vec<&str> = s.split_whitespace().collect();
    if f.first() == Some(&"SEARCHES") && f.len() >= 6 {
        println!(
            "while {} connections stay logged in: {} searches, {} searches/s, latency p50 {} ms, p99 {} ms, {} results/search",
            n, f[1], f[2], f[3], f[4], f[5]
        );
    } else {
        println!(
            "searcher failed: {s} {}",
            String::from_utf8_lossy(&search.stderr)
        );
    }
    drop(holder.stdin.take());
    let _ = tokio::task::spawn_blocking(move || holder.wait()).await;
    let stats = srv.shutdown().await.expect("shutdown");
    let accounts = Store::open(&db)
        .and_then(|s| s.accounts())
        .map(|a| a.len())
        .unwrap_or(0);
    println!(
        "server: {} logins, {} searches; accounts in the database after shutdown: {accounts} (expected {})",
        stats.logins,
        stats.searches,
        n + 1
    );
    let dir_out = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "target".into())
        .join("napster-bench");
    let _ = std::fs::create_dir_all(&dir_out);
    let _ = std::fs::write(
        dir_out.join("load.csv"),
        format!(
            "clients,setup_s,searcher_line,accounts\n{n},{setup:.2},{},{accounts}\n",
            s.trim()
        ),
    );
}
