//! Completing the client core's [`DiskJob`]s off its event loop.
//!
//! The core ([`Client`](crate::client::Client) with
//! [`ClientConfig::disk_jobs`](crate::client::ClientConfig::disk_jobs)) hands out block
//! writes, upload reads, piece hashes and flushes as [`ClientEvent::Disk`] (a piece received
//! from peers comes as one store: write it, hash its bytes); a [`DiskPool`] runs each on tokio's blocking threads, at most `threads` at a time (a semaphore), and
//! sends the result back as [`ClientCommand::DiskDone`]. Hashing reads the piece under the
//! storage's lock and hashes outside it, so two pieces hash on two cores at once while a
//! slow disk never stalls the peers' sockets.
//!
//! [`ClientEvent::Disk`]: crate::client::ClientEvent::Disk

use std::sync::{Arc, Mutex, MutexGuard};

use sha1::{Digest, Sha1};
use tokio::sync::{Semaphore, mpsc};

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

/// Runs disk jobs on blocking threads, `threads` at a time.
#[derive(Clone, Debug)]
pub struct DiskPool {
    storage: SharedStorage,
    permits: Arc<Semaphore>,
}

/// Blocking threads a [`DiskPool`] uses by default: the cores of this machine, at most 2
/// (one hashing while the other writes; more would only queue on one disk).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(2))
}

impl DiskPool {
    /// A pool over `storage` running at most `threads` jobs at once.
    pub fn new(storage: SharedStorage, threads: usize) -> DiskPool {
        DiskPool {
            storage,
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs job `id` and sends its [`ClientCommand::DiskDone`] to `back` (the node's
    /// commander). Jobs wait their turn in order; the core bounds how many are outstanding.
    pub fn submit(&self, id: u64, job: DiskJob, back: mpsc::Sender<ClientCommand>) {
        let storage = self.storage.clone();
        let permits = self.permits.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let result = match tokio::task::spawn_blocking(move || storage.run(job)).await {
                Ok(r) => r,
                Err(e) => failed(e.to_string()),
            };
            // The node may be gone (stopped): then nobody waits for the result.
            let _ = back.send(ClientCommand::DiskDone { id, result }).await;
        });
    }
}

fn failed(reason: String) -> DiskResult {
    DiskResult::Written(Err(format!("disk job failed: {reason}")))
}
