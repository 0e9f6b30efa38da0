//! Disk work as requests: block writes, block reads for upload, piece hashes and resume
//! flushes (after newly verified pieces, on the next tick; at completion, at once) leave the core as [`DiskJob`]s when [`ClientConfig::disk_jobs`] is set.
//! Part of the client core ([`super::Client`]): an `impl` block over its state.
//!
//! With `disk_jobs` off (the simulator, the tests, the default) each job runs at once on the
//! client's own [`Storage`], in the same order the core would have done the work inline.
//! With it on, jobs come out of [`Core::poll_event`] as [`ClientEvent::Disk`] (after the
//! other events) and the driver runs them off the core's thread, feeding each result back as
//! [`ClientCommand::DiskDone`]; results may come back in any order. Blocks from peers are
//! then gathered in memory, one buffer per started piece, and a complete piece leaves as one
//! [`DiskJob::Store`] that writes it and hashes those same bytes (no read back, one job per
//! piece rather than per 16 KiB block). The bytes held (buffers and stores outstanding) are
//! counted: past [`ClientConfig::disk_memory`] (or one piece, if larger) the picker starts no new piece,
//! while blocks of started pieces are still requested, so every buffer fills and leaves.
//! A web-seed piece is written whole and hashed once that write has completed. While
//! [`MAX_DISK_JOBS`] jobs are outstanding the client requests no more blocks and serves no
//! more uploads (requests wait in the peer's bounded queue); blocks already on their way are
//! always accepted.

use sha1::{Digest, Sha1};

use super::*;

/// Jobs outstanding (handed out, not answered) above which the client stops requesting
/// blocks and serving uploads until some complete.
pub const MAX_DISK_JOBS: usize = 64;

/// Default [`ClientConfig::disk_memory`]: bytes of piece buffers and outstanding
/// [`DiskJob::Store`]s above which the client starts no new piece.
pub const MAX_HELD_BYTES: u64 = 64 << 20;

/// Piece buffers kept for reuse once their stores come back.
const SPARE_BUFFERS: usize = 8;

/// Slow work for the driver: run it on the torrent's storage, answer with
/// [`ClientCommand::DiskDone`] carrying the job's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskJob {
    /// Write `data` at `offset` (a block, or a whole web-seed piece).
    Write {
        /// Offset in the concatenated content.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Read `len` bytes at `offset` (a block a peer asked for).
    Read {
        /// Offset in the concatenated content.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Write a whole piece's `data` at `offset`, then answer the SHA-1 of `data`.
    Store {
        /// Offset in the concatenated content.
        offset: u64,
        /// The piece.
        data: Vec<u8>,
    },
    /// SHA-1 of `len` bytes at `offset` (a piece whose blocks are all written).
    Hash {
        /// Offset in the concatenated content.
        offset: u64,
        /// Length.
        len: u64,
    },
    /// Make the verified pieces durable ([`Storage::flush`]: data first, then resume data).
    Flush,
}

/// The result of a [`DiskJob`], of the same kind; errors as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskResult {
    /// A write finished.
    Written(Result<(), String>),
    /// A read finished, with the bytes.
    Read(Result<Vec<u8>, String>),
    /// A hash finished.
    Hashed(Result<[u8; 20], String>),
    /// A store finished: the piece is written, with its hash.
    Stored {
        /// The SHA-1 of the piece, or why it could not be written.
        hash: Result<[u8; 20], String>,
        /// The job's buffer, given back for the core to fill again (its fresh pages would
        /// otherwise be faulted in and zeroed anew for every piece).
        buffer: Vec<u8>,
    },
    /// A flush finished.
    Flushed(Result<(), String>),
}

impl DiskJob {
    /// Runs the job on `storage` where the caller is (inline, or on a blocking thread).
    pub fn run(self, storage: &mut dyn Storage) -> DiskResult {
        match self {
            DiskJob::Write { offset, data } => {
                DiskResult::Written(storage.write(offset, &data).map_err(|e| e.to_string()))
            }
            DiskJob::Read { offset, len } => {
                let mut buf = vec![0u8; len as usize];
                DiskResult::Read(
                    storage
                        .read(offset, &mut buf)
                        .map(|()| buf)
                        .map_err(|e| e.to_string()),
                )
            }
            DiskJob::Hash { offset, len } => {
                DiskResult::Hashed(storage.hash(offset, len).map_err(|e| e.to_string()))
            }
            DiskJob::Store { offset, data } => DiskResult::Stored {
                hash: storage
                    .write(offset, &data)
                    .map(|()| Sha1::digest(&data).into())
                    .map_err(|e| e.to_string()),
                buffer: data,
            },
            DiskJob::Flush => DiskResult::Flushed(storage.flush().map_err(|e| e.to_string())),
        }
    }
}

/// What the core waits for from an outstanding job.
#[derive(Debug)]
pub(super) enum Pending {
    /// Bytes of `piece` being written; `answer`: a [`ClientCommand::PieceData`] id.
    Write { piece: u32, answer: Option<u64> },
    /// A block for `conn`.
    Read { conn: ConnId, block: BlockRef },
    /// The hash of `piece`.
    Hash { piece: u32 },
    /// `piece` written and hashed from `held` bytes in memory.
    Store { piece: u32, held: u64 },
    /// A flush.
    Flush,
}

/// The disk bookkeeping of a client.
#[derive(Debug, Default)]
pub(super) struct Disk {
    /// Job ids handed out and not answered yet.
    pub(super) pending: BTreeMap<u64, Pending>,
    /// Jobs not yet taken by the driver.
    pub(super) queue: VecDeque<(u64, DiskJob)>,
    pub(super) next_id: u64,
    /// Writes outstanding per piece.
    pub(super) writes: BTreeMap<u32, u32>,
    /// Pieces whose blocks are all received, to hash once their writes are done.
    pub(super) hash_after_writes: BTreeSet<u32>,
    /// Pieces being hashed.
    pub(super) hashing: BTreeSet<u32>,
    /// [`ClientCommand::PieceData`] ids waiting for their piece's hash.
    pub(super) answers: BTreeMap<u32, Vec<u64>>,
    /// A flush is outstanding (at most one at a time).
    pub(super) flushing: bool,
    /// Another flush is due as soon as the outstanding one is answered (the download has
    /// completed meanwhile).
    pub(super) flush_again: bool,
    /// [`ClientCommand::Stop`] ids to answer once the stop's flush is done.
    pub(super) stop_answers: Vec<u64>,
    /// Blocks received of started pieces, a buffer of the piece's length each.
    pub(super) buffers: BTreeMap<u32, Vec<u8>>,
    /// Bytes of outstanding stores.
    pub(super) held: u64,
    /// Buffers given back by stores, to receive the next pieces (at most [`SPARE_BUFFERS`]).
    pub(super) spare: Vec<Vec<u8>>,
    /// Without `disk_jobs`: the SHA-1 of each started piece's first bytes, while its blocks
    /// have come in order, and how many bytes it covers (a piece whose blocks all came in
    /// order is checked without reading it back).
    pub(super) hashers: BTreeMap<u32, (Sha1, u32)>,
}

impl<S: Storage> Client<S> {
    /// Whether so many jobs are outstanding that new work must wait.
    pub(super) fn disk_full(&self) -> bool {
        self.disk.pending.len() >= MAX_DISK_JOBS
    }

    /// Bytes of new pieces the picker may start: what `disk_memory` (at least one piece)
    /// leaves after the started pieces (each has, or will have, a buffer of its length) and
    /// the outstanding stores; unbounded when blocks are written as they come (no
    /// `disk_jobs`).
    pub(super) fn new_piece_budget(&self) -> u64 {
        if !self.cfg.disk_jobs {
            return u64::MAX;
        }
        self.cfg
            .disk_memory
            .max(self.piece_length)
            .saturating_sub(self.disk.held + self.picker.partial_bytes())
    }

    /// Bytes held in memory: piece buffers and stores outstanding.
    pub fn disk_bytes_held(&self) -> u64 {
        self.disk.held
            + self
                .disk
                .buffers
                .values()
                .map(|b| b.len() as u64)
                .sum::<u64>()
    }

    /// A block of `piece` at `begin` from a peer, with `disk_jobs`: copied into the piece's
    /// buffer; `done` (the piece's last block) sends the whole piece to be stored.
    pub(super) fn buffer_block(
        &mut self,
        now: Instant,
        piece: u32,
        begin: u32,
        data: &[u8],
        done: bool,
    ) {
        let len = self.picker.piece_len(piece) as usize;
        let spare = &mut self.disk.spare;
        let buf = self.disk.buffers.entry(piece).or_insert_with(|| {
            // A reused buffer keeps another piece's bytes: every one is overwritten before
            // the piece is complete (and the hash would catch one that was not).
            let mut b = spare.pop().unwrap_or_default();
            b.resize(len, 0);
            b
        });
        // The picker only expects blocks inside the piece; a miss would be its bug, and
        // then the piece fails its hash rather than panicking here.
        if let Some(dst) = buf.get_mut(begin as usize..begin as usize + data.len()) {
            dst.copy_from_slice(data);
        }
        if !done {
            return;
        }
        let Some(data) = self.disk.buffers.remove(&piece) else {
            return;
        };
        let offset = u64::from(piece) * self.piece_length;
        let held = data.len() as u64;
        self.disk.held += held;
        self.submit(
            now,
            Pending::Store { piece, held },
            DiskJob::Store { offset, data },
        );
    }

    /// Drops the buffer of `piece` (verified another way, or failed).
    pub(super) fn drop_buffer(&mut self, piece: u32) {
        self.disk.buffers.remove(&piece);
        self.disk.hashers.remove(&piece);
    }

    /// A block of `piece` at `begin` from a peer, without `disk_jobs`: written at once from
    /// the received bytes (no copy), and added to the piece's running SHA-1 while the
    /// piece's blocks come in order.
    pub(super) fn write_block(&mut self, now: Instant, piece: u32, begin: u32, data: &[u8]) {
        let offset = u64::from(piece) * self.piece_length + u64::from(begin);
        let r = self.storage.write(offset, data).map_err(|e| e.to_string());
        let len = data.len() as u32;
        if r.is_err() {
            self.disk.hashers.remove(&piece);
        } else if begin == 0 {
            // Each block is accepted once per attempt at a piece: block 0 starts it.
            let mut h = Sha1::new();
            h.update(data);
            self.disk.hashers.insert(piece, (h, len));
        } else {
            match self.disk.hashers.get_mut(&piece) {
                Some((h, at)) if *at == begin => {
                    h.update(data);
                    *at += len;
                }
                _ => {
                    self.disk.hashers.remove(&piece);
                }
            }
        }
        self.finish_job(
            now,
            Pending::Write {
                piece,
                answer: None,
            },
            DiskResult::Written(r),
        );
    }

    /// Jobs handed out (or queued) and not answered yet.
    pub fn disk_jobs_pending(&self) -> usize {
        self.disk.pending.len()
    }

    /// The next disk job for the caller, when [`ClientConfig::disk_jobs`] is set (the same
    /// jobs [`Core::poll_event`] returns as [`ClientEvent::Disk`] otherwise).
    pub fn poll_disk_job(&mut self) -> Option<(u64, DiskJob)> {
        self.disk.queue.pop_front()
    }

    pub(super) fn submit(&mut self, now: Instant, pending: Pending, job: DiskJob) {
        if !self.cfg.disk_jobs {
            let result = job.run(&mut self.storage);
            self.finish_job(now, pending, result);
            return;
        }
        let id = self.disk.next_id;
        self.disk.next_id += 1;
        if let Pending::Write { piece, .. } = pending {
            *self.disk.writes.entry(piece).or_default() += 1;
        }
        self.disk.pending.insert(id, pending);
        self.disk.queue.push_back((id, job));
    }

    /// A [`ClientCommand::DiskDone`] from the driver.
    pub(super) fn disk_done(&mut self, now: Instant, id: u64, result: DiskResult) {
        let was_full = self.disk_full();
        let was_tight = self.new_piece_budget() < self.piece_length;
        let Some(pending) = self.disk.pending.remove(&id) else {
            return;
        };
        if let Pending::Write { piece, .. } = pending {
            if let Some(n) = self.disk.writes.get_mut(&piece) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.disk.writes.remove(&piece);
                }
            }
        }
        self.finish_job(now, pending, result);
        let freed = was_tight && self.new_piece_budget() >= self.piece_length;
        if (was_full || freed) && !self.disk_full() {
            // Work held back while the disk was busy.
            let conns: Vec<ConnId> = self.peers.keys().copied().collect();
            for c in conns {
                self.serve(now, c);
                self.fill_requests(now, c);
            }
        }
    }

    fn finish_job(&mut self, now: Instant, pending: Pending, result: DiskResult) {
        match (pending, result) {
            (Pending::Write { piece, answer }, DiskResult::Written(r)) => {
                if let Some(id) = answer {
                    self.disk.answers.entry(piece).or_default().push(id);
                }
                if let Err(reason) = r {
                    self.emit(ClientEvent::StorageFailed { reason });
                    self.disk.hash_after_writes.remove(&piece);
                    if !self.picker.have().get(piece) {
                        self.picker.failed(piece);
                        self.drop_buffer(piece);
                    }
                    self.answer_piece(piece, false);
                    return;
                }
                if !self.disk.writes.contains_key(&piece)
                    && self.disk.hash_after_writes.remove(&piece)
                {
                    self.hash_piece(now, piece);
                }
            }
            (Pending::Read { conn, block }, DiskResult::Read(r)) => match r {
                Ok(data) => self.send_block(now, conn, block, &data),
                Err(reason) => self.emit(ClientEvent::StorageFailed { reason }),
            },
            (Pending::Hash { piece }, DiskResult::Hashed(r)) => {
                self.disk.hashing.remove(&piece);
                let ok = match r {
                    Ok(h) => self.piece_hashes.get(piece as usize) == Some(&h),
                    Err(reason) => {
                        self.emit(ClientEvent::StorageFailed { reason });
                        false
                    }
                };
                self.piece_checked(now, piece, ok);
                let have = self.picker.have().get(piece);
                self.answer_piece(piece, have);
            }
            (Pending::Store { piece, held }, DiskResult::Stored { hash, buffer }) => {
                self.disk.held = self.disk.held.saturating_sub(held);
                if self.disk.spare.len() < SPARE_BUFFERS {
                    self.disk.spare.push(buffer);
                }
                match hash {
                    Ok(h) => {
                        let ok = self.piece_hashes.get(piece as usize) == Some(&h);
                        self.piece_checked(now, piece, ok);
                    }
                    // The disk failed, not the peers: fetch the piece again, strike nobody.
                    Err(reason) => {
                        self.emit(ClientEvent::StorageFailed { reason });
                        if !self.picker.have().get(piece) {
                            self.picker.failed(piece);
                        }
                    }
                }
            }
            (Pending::Flush, DiskResult::Flushed(r)) => {
                self.disk.flushing = false;
                if let Err(reason) = r {
                    self.emit(ClientEvent::StorageFailed { reason });
                }
                if std::mem::take(&mut self.disk.flush_again) {
                    self.flush_now(now);
                }
                self.answer_stops();
            }
            // A result of another kind than its job: the driver is broken; the job is lost,
            // which the core survives (the piece is fetched again, the block not sent).
            (p, _) => {
                if let Pending::Store { held, .. } = p {
                    self.disk.held = self.disk.held.saturating_sub(held);
                }
                if let Pending::Hash { piece }
                | Pending::Write { piece, .. }
                | Pending::Store { piece, .. } = p
                {
                    self.disk.hashing.remove(&piece);
                    self.disk.hash_after_writes.remove(&piece);
                    if !self.picker.have().get(piece) {
                        self.picker.failed(piece);
                    }
                    self.answer_piece(piece, false);
                }
                if matches!(p, Pending::Flush) {
                    self.disk.flushing = false;
                    if std::mem::take(&mut self.disk.flush_again) {
                        self.flush_now(now);
                    }
                    self.answer_stops();
                }
            }
        }
    }

    /// Once stopped and no flush is outstanding, the stop is done: answer every
    /// [`ClientCommand::Stop`] waiting for it.
    pub(super) fn answer_stops(&mut self) {
        if !self.stopped || self.disk.flushing {
            return;
        }
        for id in std::mem::take(&mut self.disk.stop_answers) {
            self.emit(ClientEvent::Stopped { id });
        }
    }

    fn answer_piece(&mut self, piece: u32, ok: bool) {
        for id in self.disk.answers.remove(&piece).unwrap_or_default() {
            self.emit(ClientEvent::PieceDataDone {
                id,
                index: piece,
                ok,
            });
        }
    }

    /// Every block of `piece` is received: hash it once its writes are done.
    pub(super) fn verify_piece(&mut self, now: Instant, piece: u32) {
        if self.disk.writes.contains_key(&piece) {
            self.disk.hash_after_writes.insert(piece);
        } else {
            self.hash_piece(now, piece);
        }
    }

    fn hash_piece(&mut self, now: Instant, piece: u32) {
        if !self.disk.hashing.insert(piece) {
            return;
        }
        let offset = u64::from(piece) * self.piece_length;
        let len = u64::from(self.picker.piece_len(piece));
        if let Some((h, at)) = self.disk.hashers.remove(&piece) {
            if u64::from(at) == len && !self.cfg.disk_jobs {
                let hash: [u8; 20] = h.finalize().into();
                self.finish_job(now, Pending::Hash { piece }, DiskResult::Hashed(Ok(hash)));
                return;
            }
        }
        self.submit(now, Pending::Hash { piece }, DiskJob::Hash { offset, len });
    }

    /// Make verified pieces durable, unless a flush is already outstanding (then the next
    /// tick flushes again).
    pub(super) fn flush_soon(&mut self, now: Instant) {
        if self.disk.flushing {
            self.flush_pending = true;
            return;
        }
        self.disk.flushing = true;
        self.submit(now, Pending::Flush, DiskJob::Flush);
    }

    /// Make every verified piece durable now (the download completed): a flush job at once,
    /// or right after the one outstanding is answered (that one may have started before the
    /// last pieces were verified).
    pub(super) fn flush_now(&mut self, now: Instant) {
        if self.disk.flushing {
            self.disk.flush_again = true;
            return;
        }
        self.disk.flushing = true;
        self.submit(now, Pending::Flush, DiskJob::Flush);
    }
}
