//! Completing the client core's [`DiskJob`]s off its event loop.
//!
//! The core ([`Client`](crate::client::Client) with
//! [`ClientConfig::disk_jobs`](crate::client::ClientConfig::disk_jobs)) hands out block
//! writes, upload reads, piece hashes and flushes as [`ClientEvent::Disk`] (a piece received
//! from peers comes as one store: write it, hash its bytes); a [`DiskPool`] queues them for
//! its `threads` long-lived threads, which take the waiting jobs in batches, and sends each
//! result back as [`ClientCommand::DiskDone`]. Hashing reads the piece under the
//! storage's lock and hashes outside it, so two pieces hash on two cores at once while a
//! slow disk never stalls the peers' sockets.
//!
//! [`ClientEvent::Disk`]: crate::client::ClientEvent::Disk

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use sha1::{Digest, Sha1};
use tokio::sync::mpsc;

use super::storage::FileStorage;
use crate::client::{ClientCommand, DiskJob, DiskResult};
use crate::storage::{Storage, StorageError};

/// A [`FileStorage`] shared by the core (which marks pieces verified and flushes on stop)
/// and the blocking threads that run its jobs.
#[derive(Clone, Debug)]
pub struct SharedStorage(Arc<Mutex<FileStorage>>);

impl SharedStorage {
    /// Shares `storage`.
    pub fn new(storage: FileStorage) -> SharedStorage {
        SharedStorage(Arc::new(Mutex::new(storage)))
    }

    fn lock(&self) -> MutexGuard<'_, FileStorage> {
        // A job that panicked mid-write leaves bytes that fail their hash: still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `job`; a hash reads under the lock and hashes without it, a store writes under
    /// the lock and hashes its own bytes without it.
    pub fn run(&self, job: DiskJob) -> DiskResult {
        match job {
            DiskJob::Hash { offset, len } => {
                let Ok(n) = usize::try_from(len) else {
                    return DiskResult::Hashed(Err(format!("piece of {len} bytes")));
                };
                let mut buf = vec![0u8; n];
                let read = self.lock().read(offset, &mut buf);
                DiskResult::Hashed(
                    read.map(|()| Sha1::digest(&buf).into())
                        .map_err(|e| e.to_string()),
                )
            }
            DiskJob::Store { offset, data } => {
                let written = self.lock().write(offset, &data);
                DiskResult::Stored {
                    hash: written
                        .map(|()| Sha1::digest(&data).into())
                        .map_err(|e| e.to_string()),
                    buffer: data,
                }
            }
            other => other.run(&mut *self.lock()),
        }
    }
}

impl Storage for SharedStorage {
    fn len(&self) -> u64 {
        self.lock().len()
    }
    fn read(&mut self, offset: u64, out: &mut [u8]) -> Result<(), StorageError> {
        self.lock().read(offset, out)
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.lock().write(offset, data)
    }
    fn hash(&mut self, offset: u64, len: u64) -> Result<[u8; 20], StorageError> {
        self.lock().hash(offset, len)
    }
    fn mark_verified(&mut self, index: u32) {
        self.lock().mark_verified(index);
    }
    fn flush(&mut self) -> Result<(), StorageError> {
        self.lock().flush()
    }
}

/// Runs disk jobs on `threads` long-lived threads that drain one queue: an idle thread takes
/// every job waiting (not one wake-up and one task per job), runs them in order and sends
/// each result back. The queue holds what the core has outstanding, which the core bounds
/// ([`MAX_DISK_JOBS`](crate::client::MAX_DISK_JOBS)). The threads end once every clone of
/// the pool is dropped and the queue is drained.
#[derive(Clone, Debug)]
pub struct DiskPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    queue: Arc<Queue>,
}

type Back = mpsc::Sender<ClientCommand>;

#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    jobs: VecDeque<(u64, DiskJob, Back)>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

/// Threads a [`DiskPool`] uses by default: the cores of this machine, at most 2
/// (one hashing while the other writes; more would only queue on one disk).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

impl DiskPool {
    /// A pool over `storage` running jobs on `threads` threads (at least one); fails when
    /// the system refuses a thread.
    pub fn new(storage: SharedStorage, threads: usize) -> std::io::Result<DiskPool> {
        let inner = Arc::new(PoolInner {
            queue: Arc::new(Queue::default()),
        });
        for i in 0..threads.max(1) {
            let (q, st) = (inner.queue.clone(), storage.clone());
            // On error `inner` drops: the threads already started see the queue closed.
            std::thread::Builder::new()
                .name(format!("bt-disk-{i}"))
                .spawn(move || work(&q, &st))?;
        }
        Ok(DiskPool { inner })
    }

    /// Queues job `id`; its [`ClientCommand::DiskDone`] goes to `back` (the node's
    /// commander). Jobs start in order; the core bounds how many are outstanding.
    pub fn submit(&self, id: u64, job: DiskJob, back: Back) {
        let q = &self.inner.queue;
        q.lock().jobs.push_back((id, job, back));
        q.ready.notify_one();
    }
}

/// A disk thread: take every waiting job, run them, answer each; until closed and drained.
fn work(q: &Queue, storage: &SharedStorage) {
    let mut batch = Vec::new();
    loop {
        {
            let mut st = q.lock();
            while st.jobs.is_empty() && !st.closed {
                st = q.ready.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.jobs.is_empty() {
                return;
            }
            // Leave work for the other thread when there is more than one job.
            let take = st.jobs.len().div_ceil(2);
            batch.extend(st.jobs.drain(..take));
            if !st.jobs.is_empty() {
                q.ready.notify_one();
            }
        }
        for (id, job, back) in batch.drain(..) {
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| storage.run(job)))
                    .unwrap_or_else(|_| failed("it panicked".into()));
            // The node may be gone (stopped): then nobody waits for the result.
            let _ = back.blocking_send(ClientCommand::DiskDone { id, result });
        }
    }
}

fn failed(reason: String) -> DiskResult {
    DiskResult::Written(Err(format!("disk job failed: {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::MetainfoBuilder;

    #[test]
    fn the_pool_answers_every_job_once_with_the_hash_of_what_it_wrote() {
        let pl = 32 * 1024;
        let content: Vec<u8> = (0..pl * 40).map(|i| (i * 7 % 251) as u8).collect();
        let hashes: Vec<[u8; 20]> = content.chunks(pl).map(|c| Sha1::digest(c).into()).collect();
        let b = MetainfoBuilder {
            name: "t".into(),
            files: vec![
                (vec!["a".into()], 3 * pl as u64 / 2),
                (vec!["b".into()], (content.len() - 3 * pl / 2) as u64),
            ],
            piece_length: pl as u64,
            ..Default::default()
        };
        let meta = b.build(&hashes).unwrap().1;
        let dir = tempfile::tempdir().unwrap();
        let storage = SharedStorage::new(FileStorage::open(&meta, dir.path()).unwrap());
        let pool = DiskPool::new(storage.clone(), 2).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        // More jobs than the answer channel holds: the threads wait for room, drop nothing.
        for (i, piece) in content.chunks(pl).enumerate() {
            let job = DiskJob::Store {
                offset: (i * pl) as u64,
                data: piece.to_vec(),
            };
            pool.submit(i as u64, job, tx.clone());
        }
        let mut seen = vec![false; hashes.len()];
        for _ in 0..hashes.len() {
            let Some(ClientCommand::DiskDone { id, result }) = rx.blocking_recv() else {
                panic!("no answer");
            };
            let DiskResult::Stored { hash, buffer } = result else {
                panic!("{result:?}");
            };
            let i = id as usize;
            assert!(
                !std::mem::replace(&mut seen[i], true),
                "job {id} answered twice"
            );
            assert_eq!(hash, Ok(hashes[i]));
            assert_eq!(buffer, content[i * pl..(i + 1) * pl]);
        }
        // An upload read sees the bytes written, across the two files.
        pool.submit(
            99,
            DiskJob::Read {
                offset: pl as u64,
                len: pl as u32,
            },
            tx.clone(),
        );
        let Some(ClientCommand::DiskDone { id: 99, result }) = rx.blocking_recv() else {
            panic!("no read");
        };
        assert_eq!(result, DiskResult::Read(Ok(content[pl..2 * pl].to_vec())));
        // With the pool and our sender gone, no job holds a sender: the channel ends, no
        // stray answer comes later.
        drop((pool, tx));
        assert!(rx.blocking_recv().is_none());
    }
}
