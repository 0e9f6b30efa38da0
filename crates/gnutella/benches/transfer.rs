//! HTTP transfer throughput on loopback: servent's Gnutella download (our uploader, our
//! downloader) against `curl` fetching the same file from `python3 -m http.server`, in the
//! same run, interleaved (A B A B ...), medians of several runs. The goal in the issue is a
//! ratio of at least 1.0. Raw numbers go to the workspace's `target/bench/gnutella-transfer.csv`
//! (or `$SERVENT_BENCH_OUT/`). Size: `GNUTELLA_BENCH_MB` (default 256), runs: `GNUTELLA_BENCH_RUNS`
//! (default 5). Our downloader fsyncs the file before renaming it (curl does not).

// Not a core: a program run by hand may read its arguments, the environment and the disk.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::net::{SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::Duration;

use servent_gnutella::Hit;
use servent_gnutella::node::{Node, NodeOptions};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[allow(clippy::disallowed_methods)] // a benchmark measures wall time
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mb = env_num("GNUTELLA_BENCH_MB", 256);
    let runs = env_num("GNUTELLA_BENCH_RUNS", 5).max(1);
    let size = mb * 1024 * 1024;
    let share = tempfile::tempdir()?;
    let name = "bench.bin";
    let data: Vec<u8> = (0..size)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[3])
        .collect();
    std::fs::write(share.path().join(name), &data)?;
    drop(data);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    let py_port = probe.local_addr()?.port();
    drop(probe);
    let mut py = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &py_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(share.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = rt.block_on(async {
        let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
        o.share = Some(share.path().to_path_buf());
        o.want_conns = 0;
        o.seed = Some(1);
        let up = Node::start(o).await?;
        let mut o = NodeOptions::new("127.0.0.1:0".parse()?);
        o.want_conns = 0;
        o.seed = Some(2);
        let down = Node::start(o).await?;
        let SocketAddr::V4(addr) = up.local else {
            return Err("uploader is not on IPv4".into());
        };
        let hit = Hit {
            addr: SocketAddrV4::new(*addr.ip(), addr.port()),
            servent_id: up.servent_id,
            index: 0,
            name: name.into(),
            size: size as u32,
            speed: 0,
            push: false,
            busy: false,
            vendor: None,
            hops: 1,
            sha1: None,
        };
        // Wait for the Python server.
        let url = format!("http://127.0.0.1:{py_port}/{name}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", py_port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = tempfile::tempdir()?;
        let mut ours = Vec::new();
        let mut curl = Vec::new();
        let mut csv = String::from("run,tool,bytes,seconds,mb_per_s\n");
        for r in 0..runs {
            let t = std::time::Instant::now();
            let p = down.download(&hit, out.path(), None).await?;
            let s = t.elapsed().as_secs_f64();
            if std::fs::metadata(&p)?.len() != size as u64 {
                return Err("servent download has the wrong size".into());
            }
            std::fs::remove_file(&p)?;
            ours.push(size as f64 / s / 1e6);
            csv.push_str(&format!(
                "{r},servent,{size},{s:.6},{:.1}\n",
                size as f64 / s / 1e6
            ));

            let target = out.path().join("curl.bin");
            let t = std::time::Instant::now();
            let st = Command::new("curl")
                .args(["-s", "-o"])
                .arg(&target)
                .arg(&url)
                .status()?;
            let s = t.elapsed().as_secs_f64();
            if !st.success() || std::fs::metadata(&target)?.len() != size as u64 {
                return Err("curl download failed".into());
            }
            std::fs::remove_file(&target)?;
            curl.push(size as f64 / s / 1e6);
            csv.push_str(&format!(
                "{r},curl+python-http.server,{size},{s:.6},{:.1}\n",
                size as f64 / s / 1e6
            ));
        }
        up.shutdown().await;
        down.shutdown().await;
        Ok::<_, Box<dyn std::error::Error>>((median(&mut ours), median(&mut curl), csv))
    });
    let _ = py.kill();
    let _ = py.wait();
    let (ours, curl, csv) = result?;
    // The workspace's target/bench (git-ignored), wherever cargo runs the bench from.
    let dir = std::env::var("SERVENT_BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/bench").into());
    std::fs::create_dir_all(&dir)?;
    let path = std::path::Path::new(&dir).join("gnutella-transfer.csv");
    std::fs::write(&path, csv)?;
    println!(
        "gnutella HTTP transfer, {mb} MiB on loopback, {runs} interleaved runs: servent median {ours:.0} MB/s, curl from python3 http.server median {curl:.0} MB/s, ratio {:.2} (goal >= 1.0); raw numbers in {}",
        ours / curl.max(1e-9),
        path.display()
    );
    Ok(())
}
