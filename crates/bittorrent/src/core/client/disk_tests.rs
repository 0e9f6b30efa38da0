//! Disk work as jobs ([`ClientConfig::disk_jobs`]): answered late and out of order, and
//! backpressure while the disk is busy.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::storage::{MemStorage, StorageError, synthetic_bytes};
use crate::swarm::synthetic_torrent;

/// Storage the test shares with the client, as the driver shares its files.
#[derive(Clone, Debug)]
struct Shared(Rc<RefCell<MemStorage>>);

impl Storage for Shared {
    fn len(&self) -> u64 {
        self.0.borrow().len()
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().read(offset, out)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.0.borrow_mut().write(offset, data)
    }
}

struct Pair {
    seeder: Client<Shared>,
    leecher: Client<Shared>,
    s_store: Shared,
    l_store: Shared,
    content: Vec<u8>,
    /// Jobs handed out and held back, per side (0 seeder, 1 leecher).
    held: [Vec<(u64, DiskJob)>; 2],
    requests_sent: usize,
    writes: usize,
    now: Instant,
    lc: Option<ConnId>,
}

fn pair() -> Pair {
    // 64 pieces of 64 KiB: 256 blocks, more than MAX_DISK_JOBS.
    let meta = synthetic_torrent(7, 64 * 65536, 65536, "http://127.0.0.1:1/a");
    let mut content = vec![0u8; meta.total_length as usize];
    synthetic_bytes(7, 0, &mut content);
    let n = meta.piece_count() as u32;
    let s_store = Shared(Rc::new(RefCell::new(MemStorage::with(content.clone()))));
    let l_store = Shared(Rc::new(RefCell::new(MemStorage::empty(meta.total_length))));
    let mut scfg = ClientConfig::new(*b"-SV0100-ssssssssssss", 7000);
    scfg.disk_jobs = true;
    let mut lcfg = ClientConfig::new(*b"-SV0100-llllllllllll", 7001);
    lcfg.disk_jobs = true;
    let seeder = Client::new(scfg, &meta, s_store.clone(), Bitfield::full(n), Rng::new(2));
    let leecher = Client::new(lcfg, &meta, l_store.clone(), Bitfield::new(n), Rng::new(3));
    Pair {
        seeder,
        leecher,
        s_store,
        l_store,
        content,
        held: [Vec::new(), Vec::new()],
        requests_sent: 0,
        writes: 0,
        now: Instant::from_secs(1),
        lc: None,
    }
}

impl Pair {
    /// Connects the two and moves bytes and jobs until nothing moves; `complete(side, n)`
    /// says how many of a side's held jobs to answer this round (newest first: out of order).
    fn run(&mut self, rounds: usize, mut complete: impl FnMut(usize, usize) -> usize) {
        let sc = ConnId::inbound(1);
        if self.leecher.peers.is_empty() {
            let peer: SocketAddr = "127.0.0.1:7000".parse().unwrap();
            self.leecher.handle_input(
                self.now,
                Input::Command(ClientCommand::AddPeers {
                    id: 1,
                    peers: vec![peer],
                }),
            );
        }
        for _ in 0..rounds {
            let mut moved = false;
            while let Some(t) = self.leecher.poll_transmit() {
                match t {
                    Transmit::Connect { conn, .. } => {
                        self.lc = Some(conn);
                        let peer = "127.0.0.2:7001".parse().unwrap();
                        self.seeder
                            .handle_input(self.now, Input::Connected { conn: sc, peer });
                        let peer = "127.0.0.1:7000".parse().unwrap();
                        self.leecher
                            .handle_input(self.now, Input::Connected { conn, peer });
                        moved = true;
                    }
                    Transmit::Send { conn, data } if Some(conn) == self.lc => {
                        self.requests_sent += count_requests(&data);
                        self.seeder.handle_input(
                            self.now,
                            Input::Received {
                                conn: sc,
                                data: &data,
                            },
                        );
                        moved = true;
                    }
                    _ => {}
                }
            }
            while let Some(t) = self.seeder.poll_transmit() {
                if let (Transmit::Send { conn, data }, Some(lc)) = (t, self.lc) {
                    if conn == sc {
                        self.leecher.handle_input(
                            self.now,
                            Input::Received {
                                conn: lc,
                                data: &data,
                            },
                        );
                        moved = true;
                    }
                }
            }
            for side in 0..2 {
                let (c, store) = if side == 0 {
                    (&mut self.seeder, &self.s_store)
                } else {
                    (&mut self.leecher, &self.l_store)
                };
                // The driver's way: jobs come after the other events.
                while let Some(e) = c.poll_event() {
                    match e {
                        ClientEvent::Disk { id, job } => {
                            if side == 1 && matches!(job, DiskJob::Write { .. }) {
                                self.writes += 1;
                            }
                            self.held[side].push((id, job));
                        }
                        ClientEvent::StorageFailed { .. } | ClientEvent::PieceFailed { .. } => {
                            panic!("{e:?}")
                        }
                        _ => {}
                    }
                }
                let n = complete(side, self.held[side].len()).min(self.held[side].len());
                for _ in 0..n {
                    let Some((id, job)) = self.held[side].pop() else {
                        break;
                    };
                    let result = job.run(&mut store.clone());
                    c.handle_input(
                        self.now,
                        Input::Command(ClientCommand::DiskDone { id, result }),
                    );
                    moved = true;
                }
            }
            if !moved {
                self.now += Duration::from_millis(500);
                self.leecher.handle_timeout(self.now);
                self.seeder.handle_timeout(self.now);
                if self.leecher.is_complete() && self.held.iter().all(Vec::is_empty) {
                    break;
                }
            }
        }
    }
}

fn count_requests(data: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = data;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if rest[4] == 6 && len == 13 {
            n += 1;
        }
        rest = rest.get(4 + len..).unwrap_or_default();
    }
    n
}

#[test]
fn with_disk_jobs_answered_late_and_out_of_order_a_download_completes_byte_for_byte() {
    let mut p = pair();
    let mut rng = Rng::new(11);
    // Each round answers a random part of what is held, newest first.
    p.run(20_000, |_, held| {
        if held == 0 {
            0
        } else {
            rng.below(held as u64 + 1) as usize
        }
    });
    assert!(p.leecher.is_complete());
    assert_eq!(p.l_store.0.borrow().data(), p.content.as_slice());
    assert_eq!(p.leecher.disk_jobs_pending(), 0);
    // Every block that arrived went to the disk: nothing dropped.
    assert_eq!(
        p.writes as u64 * u64::from(BLOCK_LEN),
        p.leecher.stats().downloaded
    );
}

#[test]
fn while_the_disk_is_busy_the_leecher_stops_requesting_and_keeps_every_block() {
    let mut p = pair();
    // The seeder's reads are answered, the leecher's writes never.
    p.run(2_000, |side, held| if side == 0 { held } else { 0 });
    let held = p.held[1].len();
    assert!(held >= MAX_DISK_JOBS, "{held}");
    assert_eq!(p.leecher.disk_jobs_pending(), held);
    // Requests stopped once the disk was full: at most one peer's pipeline beyond it.
    let asked = p.requests_sent;
    assert!(
        asked < 256,
        "asked for all {asked} blocks while the disk was stuck"
    );
    assert!(asked <= MAX_DISK_JOBS + MIN_REQUESTS.max(64), "{asked}");
    // Every block that arrived is waiting to be written, none was dropped.
    assert_eq!(p.writes, held);
    assert!(!p.leecher.is_complete());
    // The disk catches up: requesting resumes and the download finishes.
    p.run(20_000, |_, held| held);
    assert!(p.leecher.is_complete());
    assert_eq!(p.l_store.0.borrow().data(), p.content.as_slice());
}
