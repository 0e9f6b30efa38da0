//! Our miner as a Stratum v1 client: the [`Client`] core on a TCP connection, and hashing
//! threads running the midstate search ([`crate::mine`]) against the share target. Each
//! thread rolls its own extranonce2 values (thread `i` of `n` takes `i, i + n, ...`), scans
//! the whole nonce space of each, and hands every share to the connection over a bounded
//! channel (a full channel pauses the thread: a pool that answers slowly slows the miner
//! rather than filling memory).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::core::pool::client::{Client, ClientError, ClientEvent, Work};
use crate::mine::Midstate;
use crate::wire::stratum::next_line;

/// Nonces a thread scans between looks at the stop flag and the current job.
const CHUNK: u32 = 1 << 14;

/// What to run.
#[derive(Debug, Clone)]
pub struct MinerOptions {
    pub pool: SocketAddr,
    /// The address to be paid, optionally `.worker`.
    pub user: String,
    pub password: String,
    pub threads: usize,
    /// Stop after this many accepted shares.
    pub max_shares: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MinerError {
    #[error("connecting to the pool at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("the pool connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("the pool closed the connection")]
    Closed,
    #[error("the pool sent a line over the length limit")]
    LineTooLong,
}

/// A miner's figures.
#[derive(Debug, Clone, Default)]
pub struct MinerReport {
    pub accepted: u64,
    pub rejected: u64,
    /// Rejections by the pool's message.
    pub rejected_by: BTreeMap<String, u64>,
    pub hashes: u64,
    pub seconds: f64,
    pub extranonce1: Vec<u8>,
    pub difficulty: f64,
    /// Jobs with `clean_jobs` seen (each a new block on the network).
    pub clean_jobs: u64,
}

impl MinerReport {
    pub fn hash_rate(&self) -> f64 {
        self.hashes as f64 / self.seconds.max(1e-3)
    }
}

struct Slot {
    generation: AtomicU64,
    work: Mutex<Option<Arc<Work>>>,
}

struct Found {
    job_id: String,
    extranonce2: Vec<u8>,
    ntime: u32,
    nonce: u32,
}

fn hash_thread(
    index: u32,
    threads: u32,
    slot: Arc<Slot>,
    stop: Arc<AtomicBool>,
    hashes: Arc<AtomicU64>,
    shares: mpsc::Sender<Found>,
) {
    let mut seen_gen = u64::MAX;
    let mut work: Option<Arc<Work>> = None;
    let mut e2 = index;
    let mut start: u32 = 0;
    let mut mid: Option<Midstate> = None;
    while !stop.load(Ordering::Relaxed) {
        let g = slot.generation.load(Ordering::Acquire);
        if g != seen_gen {
            seen_gen = g;
            work = slot.work.lock().ok().and_then(|w| w.clone());
            e2 = index;
            start = 0;
            mid = None;
        }
        let Some(w) = work.clone() else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        if w.extranonce2_size < 4 {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut e2_bytes = vec![0u8; w.extranonce2_size];
        let n = e2_bytes.len();
        e2_bytes[n - 4..].copy_from_slice(&e2.to_be_bytes());
        let m = mid.get_or_insert_with(|| Midstate::with_target(&w.header(&e2_bytes), w.target));
        let end = start.saturating_add(CHUNK - 1);
        match m.scan(start, end) {
            Some(nonce) => {
                hashes.fetch_add(u64::from(nonce - start) + 1, Ordering::Relaxed);
                let f = Found {
                    job_id: w.notify.job_id.clone(),
                    extranonce2: e2_bytes,
                    ntime: w.notify.ntime,
                    nonce,
                };
                if shares.blocking_send(f).is_err() {
                    return;
                }
                if nonce == u32::MAX {
                    e2 = e2.wrapping_add(threads);
                    start = 0;
                    mid = None;
                } else {
                    start = nonce + 1;
                }
            }
            None => {
                hashes.fetch_add(u64::from(end - start) + 1, Ordering::Relaxed);
                if end == u32::MAX {
                    e2 = e2.wrapping_add(threads);
                    start = 0;
                    mid = None;
                } else {
                    start = end + 1;
                }
            }
        }
    }
}

/// Live figures, shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct MinerCounters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub hashes: Arc<AtomicU64>,
}

/// Mine for the pool until `stop` is set, `max_shares` shares were accepted, or the pool
/// goes away (an error, unless `stop` was set or the bound reached).
pub async fn run(
    opts: MinerOptions,
    stop: Arc<AtomicBool>,
    counters: Arc<MinerCounters>,
) -> Result<MinerReport, MinerError> {
    let sock = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(opts.pool))
        .await
        .map_err(|_| {
            MinerError::Connect(
                opts.pool,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"),
            )
        })?
        .map_err(|e| MinerError::Connect(opts.pool, e))?;
    let _ = sock.set_nodelay(true);
    let (mut rd, mut wr) = sock.into_split();
    let mut client = Client::new(&opts.user, &opts.password, "servent/coin-miner");
    wr.write_all(&client.poll_transmit()).await?;

    let threads = opts.threads.clamp(1, 1024) as u32;
    let slot = Arc::new(Slot {
        generation: AtomicU64::new(0),
        work: Mutex::new(None),
    });
    let hash_stop = Arc::new(AtomicBool::new(false));
    let (share_tx, mut share_rx) = mpsc::channel::<Found>(16);
    let mut handles = Vec::new();
    for i in 0..threads {
        let (slot, stop, hashes, tx) = (
            slot.clone(),
            hash_stop.clone(),
            counters.hashes.clone(),
            share_tx.clone(),
        );
        handles.push(
            std::thread::Builder::new()
                .name(format!("stratum-hash-{i}"))
                .spawn(move || hash_thread(i, threads, slot, stop, hashes, tx))?,
        );
    }
    drop(share_tx);

    let started = Instant::now();
    let mut report = MinerReport::default();
    // Jobs still worth submitting for (cleared on clean_jobs).
    let mut live: Vec<String> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let outcome: Result<(), MinerError> = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if opts.max_shares.is_some_and(|m| report.accepted >= m) {
            break Ok(());
        }
        let room = client.in_flight() < crate::core::pool::client::MAX_IN_FLIGHT;
        tokio::select! {
            r = rd.read(&mut chunk) => {
                let n = match r {
                    Ok(0) => break Err(MinerError::Closed),
                    Ok(n) => n,
                    Err(e) => break Err(e.into()),
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut used = 0;
                let mut failed = None;
                loop {
                    match next_line(&buf[used..]) {
                        Ok(Some((line, n))) => {
                            if !line.is_empty() {
                                if let Err(e) = client.handle_line(line) {
                                    failed = Some(MinerError::from(e));
                                    break;
                                }
                            }
                            used += n;
                        }
                        Ok(None) => break,
                        Err(_) => {
                            failed = Some(MinerError::LineTooLong);
                            break;
                        }
                    }
                }
                buf.drain(..used);
                if let Some(e) = failed {
                    break Err(e);
                }
                while let Some(e) = client.poll_event() {
                    match e {
                        ClientEvent::Subscribed { extranonce1 } => report.extranonce1 = extranonce1,
                        ClientEvent::Authorized => {}
                        ClientEvent::Difficulty(d) => report.difficulty = d,
                        ClientEvent::Work { work, clean } => {
                            if clean {
                                live.clear();
                                report.clean_jobs += 1;
                            }
                            if live.len() >= 16 {
                                live.remove(0);
                            }
                            live.push(work.notify.job_id.clone());
                            if let Ok(mut w) = slot.work.lock() {
                                *w = Some(Arc::new(work));
                            }
                            slot.generation.fetch_add(1, Ordering::Release);
                        }
                        ClientEvent::Accepted => {
                            report.accepted += 1;
                            counters.accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        ClientEvent::Rejected { reason, code, job_id } => {
                            // A stale job stays stale: its other shares are not sent.
                            if code == crate::wire::stratum::code::JOB_NOT_FOUND {
                                live.retain(|j| *j != job_id);
                            }
                            report.rejected += 1;
                            counters.rejected.fetch_add(1, Ordering::Relaxed);
                            *report.rejected_by.entry(reason).or_insert(0) += 1;
                        }
                    }
                }
            }
            Some(f) = share_rx.recv(), if room => {
                // A share of a job the pool has since replaced with clean_jobs is stale.
                if live.contains(&f.job_id) {
                    client.submit(&f.job_id, &f.extranonce2, f.ntime, f.nonce);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let out = client.poll_transmit();
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                break Err(e.into());
            }
        }
    };
    hash_stop.store(true, Ordering::Relaxed);
    drop(share_rx);
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    report.hashes = counters.hashes.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    match outcome {
        Err(MinerError::Closed) if stop.load(Ordering::Relaxed) => Ok(report),
        Err(e) => Err(e),
        Ok(()) => Ok(report),
    }
}
