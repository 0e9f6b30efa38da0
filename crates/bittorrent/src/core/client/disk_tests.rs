//! Disk work as jobs ([`ClientConfig::disk_jobs`]): answered late and out of order, and
//! backpressure while the disk is busy; on the in-memory [`Harness`].

use super::*;
use crate::harness::{Harness, SharedMem};
use crate::storage::{MemStorage, synthetic_bytes};
use crate::swarm::synthetic_torrent;

const SEEDER: usize = 0;
const LEECHER: usize = 1;

/// A seeder and a leecher of 64 pieces of 64 KiB (256 blocks, more than MAX_DISK_JOBS),
/// both handing out disk jobs; the leecher dials the seeder. Returns the content too.
fn pair() -> (Harness, Vec<u8>) {
    let meta = synthetic_torrent(7, 64 * 65536, 65536, "http://127.0.0.1:1/a");
    let mut content = vec![0u8; meta.total_length as usize];
    synthetic_bytes(7, 0, &mut content);
    let n = meta.piece_count() as u32;
    let s_store = SharedMem::new(MemStorage::with(content.clone()));
    let l_store = SharedMem::new(MemStorage::empty(meta.total_length));
    let mut scfg = ClientConfig::new(*b"-SV0100-ssssssssssss", 7000);
    scfg.disk_jobs = true;
    let mut lcfg = ClientConfig::new(*b"-SV0100-llllllllllll", 7001);
    lcfg.disk_jobs = true;
    let seeder = Client::new(scfg, &meta, s_store.clone(), Bitfield::full(n), Rng::new(2));
    let leecher = Client::new(lcfg, &meta, l_store.clone(), Bitfield::new(n), Rng::new(3));
    let mut h = Harness::new();
    let s_addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    h.add(seeder, s_store, s_addr);
    h.add(leecher, l_store, "127.0.0.2:7001".parse().unwrap());
    h.command(
        LEECHER,
        ClientCommand::AddPeers {
            id: 1,
            peers: vec![s_addr],
        },
    );
    (h, content)
}

fn leecher_done(h: &Harness) -> bool {
    h.node(LEECHER).client.is_complete() && h.nodes().all(|n| n.held.is_empty())
}

fn no_failures(h: &Harness) {
    for n in h.nodes() {
        assert!(
            !n.events.iter().any(|e| matches!(
                e,
                ClientEvent::StorageFailed { .. } | ClientEvent::PieceFailed { .. }
            )),
            "{:?}",
            n.events
        );
    }
}

#[test]
fn with_disk_jobs_answered_late_and_out_of_order_a_download_completes_byte_for_byte() {
    let (mut h, content) = pair();
    let mut rng = Rng::new(11);
    // Each round answers a random part of what is held, newest first.
    h.drive(
        20_000,
        |_, held| rng.below(held as u64 + 1) as usize,
        leecher_done,
    );
    no_failures(&h);
    let l = h.node(LEECHER);
    assert!(l.client.is_complete());
    assert_eq!(l.storage.data(), content);
    assert_eq!(l.client.disk_jobs_pending(), 0);
    // Every block that arrived went to the disk (in whole pieces): nothing dropped.
    assert_eq!(l.written, l.client.stats().downloaded);
    assert_eq!(l.client.disk_bytes_held(), 0);
}

#[test]
fn while_the_disk_is_busy_the_leecher_stops_requesting_and_keeps_every_block() {
    let (mut h, content) = pair();
    // The leecher may hold four pieces (256 KiB) in memory.
    let limit = 4 * 65536;
    h.node_mut(LEECHER).client.cfg.disk_memory = limit;
    // The seeder's reads are answered, the leecher's stores never.
    h.drive(
        2_000,
        |node, held| if node == SEEDER { held } else { 0 },
        |_| false,
    );
    let l = h.node(LEECHER);
    // Requests stopped at the memory limit: four pieces asked for, no block more.
    let asked = l.requests_sent as u64;
    assert_eq!(asked * u64::from(BLOCK_LEN), limit, "{asked} blocks asked");
    assert_eq!(l.client.disk_bytes_held(), limit);
    // Every block that arrived is waiting to be written, none was dropped.
    assert_eq!(l.written, limit);
    assert_eq!(l.held.len(), 4);
    assert_eq!(l.client.disk_jobs_pending(), 4);
    assert!(!l.client.is_complete());
    // The disk catches up: requesting resumes and the download finishes.
    h.drive(20_000, |_, held| held, leecher_done);
    no_failures(&h);
    let l = h.node(LEECHER);
    assert!(l.client.is_complete());
    assert_eq!(l.storage.data(), content);
    assert_eq!(l.client.disk_bytes_held(), 0);
}

#[test]
fn while_uploads_wait_for_the_disk_the_seeder_stops_reading_at_the_job_limit() {
    let (mut h, content) = pair();
    // The seeder's reads are never answered.
    h.drive(
        2_000,
        |node, held| if node == SEEDER { 0 } else { held },
        |_| false,
    );
    let s = h.node(SEEDER);
    assert_eq!(s.held.len(), MAX_DISK_JOBS);
    assert_eq!(s.client.disk_jobs_pending(), MAX_DISK_JOBS);
    // The disk catches up: serving resumes from the peer's queue and the download finishes.
    h.drive(20_000, |_, held| held, leecher_done);
    no_failures(&h);
    assert_eq!(h.node(LEECHER).storage.data(), content);
}

#[test]
fn at_completion_the_resume_data_is_flushed_by_a_disk_job_never_inline() {
    let (mut h, content) = pair();
    let mut rng = Rng::new(5);
    h.drive(
        20_000,
        |_, held| rng.below(held as u64 + 1) as usize,
        leecher_done,
    );
    no_failures(&h);
    let l = h.node(LEECHER);
    assert_eq!(l.storage.data(), content);
    let done = l.completed_at.expect("completed");
    // A flush job left the core once the download completed (none would come later: no
    // piece is verified after the last).
    assert!(
        l.flush_jobs.iter().any(|t| *t >= done),
        "flush jobs at {:?}, completed at {done:?}",
        l.flush_jobs
    );
    // Every flush of the content was a job the harness answered: none ran on the core.
    assert_eq!(l.storage.flushes(), l.flush_jobs.len() as u64);
}

#[test]
fn a_stop_is_answered_only_after_its_flush_job_is_done_and_never_flushes_inline() {
    let (mut h, _) = pair();
    // Download part of the content with every disk job answered at once.
    h.drive(
        20_000,
        |_, held| held,
        |h| h.node(LEECHER).client.stats().downloaded > 16 * 65536,
    );
    assert!(!h.node(LEECHER).client.is_complete());
    let flushes_before = h.node(LEECHER).storage.flushes();
    let jobs_before = h.node(LEECHER).flush_jobs.len();
    h.command(LEECHER, ClientCommand::Stop { id: 42 });
    // The leecher's jobs are held: the stop waits for its flush.
    h.drive(
        200,
        |node, held| if node == LEECHER { 0 } else { held },
        |_| false,
    );
    let stopped = |h: &Harness| {
        h.node(LEECHER)
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Stopped { id: 42 }))
    };
    assert!(!stopped(&h), "Stopped before the flush was done");
    assert_eq!(
        h.node(LEECHER).storage.flushes(),
        flushes_before,
        "an inline flush"
    );
    assert!(
        h.node(LEECHER).flush_jobs.len() > jobs_before,
        "the stop handed out no flush job"
    );
    // The disk answers: the stop is done.
    h.drive(200, |_, held| held, stopped);
    assert!(stopped(&h));
    assert!(h.node(LEECHER).storage.flushes() > flushes_before);
}
