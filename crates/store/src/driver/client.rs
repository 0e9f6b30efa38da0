//! The client: finds storage nodes through the DHT, encrypts and erasure-codes on this
//! machine, places each segment's n shards on n distinct nodes (retrying a failed node's
//! shard on the next closest one), stores the sealed manifest on the n nodes closest to
//! the storage index, and reads back from any k good shards per segment.
//!
//! A put is all or nothing: the manifest is written last, and a put that cannot place
//! every shard, or the manifest on enough nodes, deletes what it wrote and fails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use servent_core::Id;
use servent_kademlia::driver::{ClientOpts, DhtClient};
use tokio::task::JoinSet;

use super::rpc;
use crate::core::keys::{self, dht_id, sha256};
use crate::core::placement::{self, Candidate};
use crate::core::segment::{self, EncodedSegment, SegmentError};
use crate::core::{ObjectError, Params, object};
use crate::wire::shard::{ErrorCode, Kind, Request, Response};
use crate::wire::{Cap, FileEntry, Manifest, Segment, ShardLoc};

/// What a put stored so far (node, key), deleted again if the put fails.
type Placed = Arc<Mutex<Vec<(String, [u8; 32])>>>;

/// Segments encoded and uploaded at the same time.
const IN_FLIGHT: usize = 4;
/// Attempts per shard (one per node).
const ATTEMPTS: usize = 6;

/// What went wrong in a client operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The DHT.
    #[error("DHT: {0}")]
    Dht(#[from] servent_kademlia::driver::ClientError),
    /// Not enough nodes.
    #[error("only {have} reachable storage nodes, {need} needed (start more nodes or lower --n)")]
    TooFewNodes {
        /// Reachable.
        have: usize,
        /// Needed.
        need: usize,
    },
    /// A shard could not be placed anywhere.
    #[error(
        "put failed: shard {shard} of segment {segment} of {file:?} could not be stored ({last}); nothing was kept"
    )]
    Placement {
        /// The file.
        file: String,
        /// Segment index.
        segment: usize,
        /// Shard index.
        shard: usize,
        /// The last node error.
        last: String,
    },
    /// The manifest could not be stored on enough nodes.
    #[error(
        "put failed: the manifest reached only {stored} nodes of the {need} needed; nothing was kept"
    )]
    ManifestPut {
        /// Copies stored.
        stored: usize,
        /// Copies needed.
        need: usize,
    },
    /// No node had a manifest that opens with this capability.
    #[error("no reachable node holds this object (wrong capability, or deleted)")]
    NotFound,
    /// A segment could not be read.
    #[error("segment {segment} of {file:?}")]
    Segment {
        /// The file.
        file: String,
        /// Segment index.
        segment: usize,
        /// Why.
        source: SegmentError,
    },
    /// Bad parameters or manifest.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Local disk.
    #[error("{path}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A read-only capability cannot delete.
    #[error("this is a read-only capability; deleting needs the read-write one (sv1rw:…)")]
    ReadOnly,
    /// A path in the manifest that would leave the output folder.
    #[error("refusing unsafe path {0:?} in the manifest")]
    UnsafePath(String),
    /// No OS randomness.
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// Where a file's bytes come from.
#[derive(Clone, Debug)]
pub enum Data {
    /// A file on disk, read segment by segment.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Arc<Vec<u8>>),
}

/// One file to put.
#[derive(Clone, Debug)]
pub struct Source {
    /// Relative path in the object (empty for a single file).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The bytes.
    pub data: Data,
}

/// What a put did.
#[derive(Clone, Debug)]
pub struct PutReport {
    /// The read-write capability.
    pub cap: Cap,
    /// Files.
    pub files: usize,
    /// Plaintext bytes.
    pub bytes: u64,
    /// Shards stored.
    pub shards: usize,
    /// Shards that had to move to another node.
    pub retries: usize,
}

/// A storage client.
#[derive(Debug)]
pub struct Client {
    cands: Vec<Candidate>,
    dead: Mutex<Vec<String>>,
    /// Erasure and segment parameters for puts.
    pub params: Params,
    /// Per request.
    pub timeout: Duration,
}

impl Client {
    /// Joins the DHT through `bootstrap` (read-only), collects storage nodes with a few
    /// lookups, and asks each for its id and free space.
    pub async fn connect(
        bootstrap: Vec<SocketAddr>,
        params: Params,
    ) -> Result<Client, ClientError> {
        params.check()?;
        let local: SocketAddr = if bootstrap.iter().all(|a| a.ip().is_loopback()) {
            "127.0.0.1:0"
        } else {
            "0.0.0.0:0"
        }
        .parse()
        .map_err(|_| ClientError::Random("address".into()))?;
        let mut rng = servent_runtime::os_rng().map_err(|e| ClientError::Random(e.to_string()))?;
        let mut opts = ClientOpts::with_rng(local, rng.fork(1)).read_only();
        opts.timeout = Duration::from_secs(20);
        let mut dht = DhtClient::start(opts).await?;
        dht.bootstrap(bootstrap.clone()).await?;
        let mut addrs: Vec<SocketAddr> = bootstrap;
        for _ in 0..6 {
            if let Ok((found, _)) = dht.find_node(Id::random(&mut rng)).await {
                addrs.extend(found.iter().map(|n| SocketAddr::V4(n.addr)));
            }
        }
        let _ = dht.shutdown().await;
        addrs.sort();
        addrs.dedup();
        addrs.truncate(4096);
        let mut set = JoinSet::new();
        for a in addrs {
            set.spawn(async move {
                let r = rpc(&a.to_string(), &Request::Space, Duration::from_secs(5)).await;
                (a, r)
            });
        }
        let mut cands = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok((a, Ok(Response::Space { id, quota, used }))) = r {
                if used < quota {
                    cands.push(Candidate {
                        id: Id(id),
                        addr: a.to_string(),
                    });
                }
            }
        }
        cands.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(Client {
            cands,
            dead: Mutex::new(Vec::new()),
            params,
            timeout: Duration::from_secs(60),
        })
    }

    /// The storage nodes found.
    pub fn nodes(&self) -> &[Candidate] {
        &self.cands
    }

    fn dead(&self) -> Vec<String> {
        self.dead.lock().map(|d| d.clone()).unwrap_or_default()
    }

    fn mark_dead(&self, addr: &str) {
        if let Ok(mut d) = self.dead.lock() {
            if !d.iter().any(|x| x == addr) {
                tracing::warn!(addr, "storage node failed; using others");
                d.push(addr.to_string());
            }
        }
    }

    /// The files of a path: one file, or a folder walked in name order.
    pub fn sources(path: &Path) -> Result<(bool, Vec<Source>), ClientError> {
        let ioe = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ClientError::Io { path: p, source }
        };
        let meta = std::fs::metadata(path).map_err(ioe(path))?;
        if meta.is_file() {
            return Ok((
                false,
                vec![Source {
                    path: String::new(),
                    size: meta.len(),
                    data: Data::File(path.to_path_buf()),
                }],
            ));
        }
        let mut out = Vec::new();
        let mut stack = vec![(path.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .map_err(ioe(&dir))?
                .flatten()
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let name = e.file_name().to_string_lossy().into_owned();
                let r = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let m = e.metadata().map_err(ioe(&e.path()))?;
                if m.is_dir() {
                    stack.push((e.path(), r));
                } else if m.is_file() {
                    out.push(Source {
                        path: r,
                        size: m.len(),
                        data: Data::File(e.path()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((true, out))
    }

    /// Puts `sources` as one object named `name`; returns the read-write capability.
    pub async fn put(
        self: &Arc<Self>,
        name: &str,
        is_dir: bool,
        sources: Vec<Source>,
    ) -> Result<PutReport, ClientError> {
        let p = self.params;
        let (k, n) = (p.k as usize, p.n as usize);
        let live = self.cands.len() - self.dead().len().min(self.cands.len());
        if live < n {
            return Err(ClientError::TooFewNodes {
                have: live,
                need: n,
            });
        }
        let mut rng = servent_runtime::os_rng().map_err(|e| ClientError::Random(e.to_string()))?;
        let write: [u8; 32] = rng.bytes();
        let cap = Cap::ReadWrite { write };
        let read = cap.read_key();
        let secret = keys::delete_secret(&write);
        let owner = keys::owner_tag(&secret);
        let placed: Placed = Arc::new(Mutex::new(Vec::new()));
        let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut files: Vec<FileEntry> = Vec::with_capacity(sources.len());
        let mut bytes = 0u64;
        let result: Result<(), ClientError> = async {
            for (fi, src) in sources.iter().enumerate() {
                let fkey = keys::file_key(&read, fi as u32);
                let nseg = p.segments(src.size) as usize;
                let mut segs: Vec<Option<Segment>> = vec![None; nseg];
                let mut set: JoinSet<Result<(usize, Segment), ClientError>> = JoinSet::new();
                let mut next = 0usize;
                while next < nseg || !set.is_empty() {
                    while next < nseg && set.len() < IN_FLIGHT {
                        let (me, src, placed, retries) =
                            (self.clone(), src.clone(), placed.clone(), retries.clone());
                        let si = next;
                        set.spawn(async move {
                            let (from, to) = p.segment_range(src.size, si as u64);
                            let path = src.path.clone();
                            let enc = tokio::task::spawn_blocking(
                                move || -> Result<EncodedSegment, ClientError> {
                                    let plain = read_range(&src.data, from, to)?;
                                    segment::encode_segment(
                                        &fkey, fi as u32, si as u64, &plain, k, n,
                                    )
                                    .map_err(|source| {
                                        ClientError::Segment {
                                            file: src.path.clone(),
                                            segment: si,
                                            source,
                                        }
                                    })
                                },
                            )
                            .await
                            .map_err(|e| ClientError::Random(e.to_string()))??;
                            let seg = me
                                .place_segment(&path, si, fi, enc, owner, &placed, &retries)
                                .await?;
                            Ok((si, seg))
                        });
                        next += 1;
                    }
                    if let Some(r) = set.join_next().await {
                        let (si, seg) = r.map_err(|e| ClientError::Random(e.to_string()))??;
                        if let Some(slot) = segs.get_mut(si) {
                            *slot = Some(seg);
                        }
                    }
                }
                bytes += src.size;
                files.push(FileEntry {
                    path: src.path.clone(),
                    size: src.size,
                    segments: segs.into_iter().flatten().collect(),
                });
            }
            let m = Manifest {
                k: p.k,
                n: p.n,
                segment_size: p.segment_size,
                is_dir,
                name: name.to_string(),
                owner,
                files,
            };
            let sealed = object::seal_manifest(&read, rng.bytes(), &m);
            self.put_manifest(&cap, owner, sealed, &placed).await
        }
        .await;
        if let Err(e) = result {
            // all or nothing: remove what this put stored
            let list = placed.lock().map(|v| v.clone()).unwrap_or_default();
            let mut set = JoinSet::new();
            for (addr, key) in list {
                set.spawn(async move {
                    let _ = rpc(
                        &addr,
                        &Request::Delete { key, secret },
                        Duration::from_secs(10),
                    )
                    .await;
                });
            }
            while set.join_next().await.is_some() {}
            return Err(e);
        }
        let shards = placed.lock().map(|v| v.len()).unwrap_or(0);
        Ok(PutReport {
            cap,
            files: sources.len(),
            bytes,
            shards,
            retries: retries.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn place_segment(
        self: &Arc<Self>,
        file: &str,
        si: usize,
        fi: usize,
        enc: EncodedSegment,
        owner: [u8; 32],
        placed: &Placed,
        retries: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Segment, ClientError> {
        let n = enc.shards.len();
        // the segment's DHT key: its first shard's hash mixed with its position
        let mut tk = enc.hashes.first().copied().unwrap_or_default().to_vec();
        tk.extend_from_slice(&(fi as u64).to_be_bytes());
        tk.extend_from_slice(&(si as u64).to_be_bytes());
        let target = dht_id(&sha256(&tk));
        let dead = self.dead();
        let chosen =
            placement::place(&target, n, &self.cands, &dead).ok_or(ClientError::TooFewNodes {
                have: self.cands.len().saturating_sub(dead.len()),
                need: n,
            })?;
        let used = Arc::new(Mutex::new(
            chosen.iter().map(|c| c.addr.clone()).collect::<Vec<_>>(),
        ));
        let mut set = JoinSet::new();
        let hashes = enc.hashes.clone();
        for (i, (shard, first)) in enc.shards.into_iter().zip(chosen).enumerate() {
            let (me, used, placed, retries, file) = (
                self.clone(),
                used.clone(),
                placed.clone(),
                retries.clone(),
                file.to_string(),
            );
            let key = hashes.get(i).copied().unwrap_or_default();
            set.spawn(async move {
                let req = Request::Put {
                    key,
                    kind: Kind::Shard,
                    owner,
                    data: shard,
                };
                let mut node = first;
                let mut last = String::new();
                for attempt in 0..ATTEMPTS {
                    if attempt > 0 {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    match rpc(&node.addr, &req, me.timeout).await {
                        Ok(Response::Ok) => {
                            if let Ok(mut p) = placed.lock() {
                                p.push((node.addr.clone(), key));
                            }
                            return Ok((
                                i,
                                ShardLoc {
                                    hash: key,
                                    node: node.id.0,
                                    addr: node.addr,
                                },
                            ));
                        }
                        Ok(Response::Error { code, message }) => {
                            last = format!("{}: {code:?} {message}", node.addr);
                            if code == ErrorCode::Quota || code == ErrorCode::Internal {
                                me.mark_dead(&node.addr);
                            }
                        }
                        Ok(other) => last = format!("{}: unexpected {other:?}", node.addr),
                        Err(e) => {
                            last = e.to_string();
                            me.mark_dead(&node.addr);
                        }
                    }
                    let u = used.lock().map(|u| u.clone()).unwrap_or_default();
                    match placement::replacement(&target, &me.cands, &u, &me.dead()) {
                        Some(c) => {
                            if let Ok(mut u) = used.lock() {
                                u.push(c.addr.clone());
                            }
                            node = c;
                        }
                        None => break,
                    }
                }
                Err(ClientError::Placement {
                    file,
                    segment: si,
                    shard: i,
                    last,
                })
            });
        }
        let mut locs: Vec<Option<ShardLoc>> = vec![None; n];
        while let Some(r) = set.join_next().await {
            let (i, loc) = r.map_err(|e| ClientError::Random(e.to_string()))??;
            if let Some(s) = locs.get_mut(i) {
                *s = Some(loc);
            }
        }
        Ok(Segment {
            cipher_len: enc.cipher_len,
            shard_size: enc.shard_size,
            shards: locs.into_iter().flatten().collect(),
        })
    }

    async fn put_manifest(
        &self,
        cap: &Cap,
        owner: [u8; 32],
        sealed: Vec<u8>,
        placed: &Placed,
    ) -> Result<(), ClientError> {
        let (k, n) = (self.params.k as usize, self.params.n as usize);
        let si = cap.storage_index();
        let need = n - k + 1;
        let order = placement::by_distance(&dht_id(&si), &self.cands);
        let dead = self.dead();
        let mut set = JoinSet::new();
        for c in order
            .into_iter()
            .filter(|c| !dead.contains(&c.addr))
            .take(n)
        {
            let req = Request::Put {
                key: si,
                kind: Kind::Manifest,
                owner,
                data: sealed.clone(),
            };
            let t = self.timeout;
            set.spawn(async move { (c.addr.clone(), rpc(&c.addr, &req, t).await) });
        }
        let mut stored = 0;
        while let Some(r) = set.join_next().await {
            if let Ok((addr, Ok(Response::Ok))) = r {
                stored += 1;
                if let Ok(mut p) = placed.lock() {
                    p.push((addr, si));
                }
            } else if let Ok((addr, Err(_))) = r {
                self.mark_dead(&addr);
            }
        }
        if stored < need {
            return Err(ClientError::ManifestPut { stored, need });
        }
        Ok(())
    }

    /// The manifest of `cap`: asks the nodes closest to its storage index first.
    pub async fn manifest(&self, cap: &Cap) -> Result<Manifest, ClientError> {
        let si = cap.storage_index();
        let read = cap.read_key();
        let order = placement::by_distance(&dht_id(&si), &self.cands);
        for c in order.iter().take(64) {
            if let Ok(Response::Data(d)) =
                rpc(&c.addr, &Request::Get { key: si }, self.timeout).await
            {
                if let Ok(m) = object::open_manifest(&read, &d) {
                    return Ok(m);
                }
            }
        }
        Err(ClientError::NotFound)
    }

    /// Fetches and decrypts segment `si` of file `fi`. Shards whose hash does not match the
    /// manifest count as missing; the segment is rebuilt from any k good ones.
    pub async fn read_segment(
        &self,
        cap: &Cap,
        m: &Manifest,
        fi: usize,
        si: usize,
    ) -> Result<Vec<u8>, ClientError> {
        let (k, n) = (m.k as usize, m.n as usize);
        let file = m.files.get(fi).ok_or(ClientError::NotFound)?;
        let seg = file.segments.get(si).ok_or(ClientError::NotFound)?;
        let mut have: Vec<Option<Vec<u8>>> = vec![None; n];
        let mut next = 0usize;
        let mut good = 0usize;
        while good < k && next < n {
            let want = (k - good).min(n - next);
            let mut set = JoinSet::new();
            for i in next..next + want {
                let Some(loc) = seg.shards.get(i).cloned() else {
                    continue;
                };
                let t = self.timeout;
                set.spawn(async move {
                    (
                        i,
                        loc.hash,
                        rpc(&loc.addr, &Request::Get { key: loc.hash }, t).await,
                    )
                });
            }
            next += want;
            while let Some(r) = set.join_next().await {
                if let Ok((i, hash, Ok(Response::Data(d)))) = r {
                    if sha256(&d) == hash {
                        if let Some(s) = have.get_mut(i) {
                            *s = Some(d);
                            good += 1;
                        }
                    } else {
                        tracing::warn!(shard = i, "shard failed its hash; rebuilding from others");
                    }
                }
            }
        }
        let key = keys::file_key(&cap.read_key(), fi as u32);
        let hashes: Vec<[u8; 32]> = seg.shards.iter().map(|l| l.hash).collect();
        let (cl, ss) = (seg.cipher_len as usize, seg.shard_size as usize);
        let path = file.path.clone();
        tokio::task::spawn_blocking(move || {
            segment::decode_segment(&key, fi as u32, si as u64, k, n, cl, ss, &hashes, &have)
        })
        .await
        .map_err(|e| ClientError::Random(e.to_string()))?
        .map_err(|source| ClientError::Segment {
            file: path,
            segment: si,
            source,
        })
    }

    /// Reads the object into `out` (a folder for a folder object, else the file `out/name`
    /// or `out` itself when `out_is_file`); every file is written to a temp name and renamed.
    pub async fn get_to(
        self: &Arc<Self>,
        cap: &Cap,
        out: &Path,
    ) -> Result<(Manifest, Vec<PathBuf>), ClientError> {
        let m = Arc::new(self.manifest(cap).await?);
        let mut written = Vec::new();
        for (fi, f) in m.files.iter().enumerate() {
            let dest = if m.is_dir {
                safe_join(&out.join(safe_name(&m.name)?), &f.path)?
            } else {
                out.join(safe_name(&m.name)?)
            };
            let ioe = |p: &Path| {
                let p = p.to_path_buf();
                move |source| ClientError::Io { path: p, source }
            };
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(ioe(parent))?;
            }
            let tmp = dest.with_extension("servent-part");
            let mut fh = std::fs::File::create(&tmp).map_err(ioe(&tmp))?;
            // up to IN_FLIGHT segments fetched and decoded at once, written in order
            let nseg = f.segments.len();
            let mut set: JoinSet<(usize, Result<Vec<u8>, ClientError>)> = JoinSet::new();
            let mut done = std::collections::BTreeMap::new();
            let (mut next, mut write) = (0usize, 0usize);
            while write < nseg {
                while next < nseg && set.len() < IN_FLIGHT && done.len() < 2 * IN_FLIGHT {
                    let (me, cap, m, si) = (self.clone(), cap.clone(), m.clone(), next);
                    set.spawn(async move { (si, me.read_segment(&cap, &m, fi, si).await) });
                    next += 1;
                }
                if let Some(r) = set.join_next().await {
                    let (si, data) = r.map_err(|e| ClientError::Random(e.to_string()))?;
                    done.insert(si, data?);
                }
                while let Some(data) = done.remove(&write) {
                    use std::io::Write;
                    fh.write_all(&data).map_err(ioe(&tmp))?;
                    write += 1;
                }
            }
            fh.sync_all().map_err(ioe(&tmp))?;
            drop(fh);
            std::fs::rename(&tmp, &dest).map_err(ioe(&dest))?;
            written.push(dest);
        }
        Ok(((*m).clone(), written))
    }

    /// Deletes every shard and manifest copy of `cap` (read-write only); returns how many
    /// stored items were removed.
    pub async fn remove(&self, cap: &Cap) -> Result<usize, ClientError> {
        let secret = cap.delete_secret().ok_or(ClientError::ReadOnly)?;
        let m = self.manifest(cap).await?;
        let mut set = JoinSet::new();
        for (_, _, s) in m.segments() {
            for l in &s.shards {
                let (addr, key) = (l.addr.clone(), l.hash);
                set.spawn(async move {
                    rpc(
                        &addr,
                        &Request::Delete { key, secret },
                        Duration::from_secs(20),
                    )
                    .await
                });
            }
        }
        let si = cap.storage_index();
        for c in self.cands.clone() {
            set.spawn(async move {
                rpc(
                    &c.addr,
                    &Request::Delete { key: si, secret },
                    Duration::from_secs(20),
                )
                .await
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            if matches!(r, Ok(Ok(Response::Ok))) {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn read_range(d: &Data, from: u64, to: u64) -> Result<Vec<u8>, ClientError> {
    match d {
        Data::Bytes(b) => Ok(b
            .get(from as usize..to as usize)
            .unwrap_or_default()
            .to_vec()),
        Data::File(p) => {
            use std::io::{Read, Seek, SeekFrom};
            let ioe = |source| ClientError::Io {
                path: p.clone(),
                source,
            };
            let mut f = std::fs::File::open(p).map_err(ioe)?;
            f.seek(SeekFrom::Start(from)).map_err(ioe)?;
            let mut buf = vec![0u8; (to - from) as usize];
            f.read_exact(&mut buf).map_err(ioe)?;
            Ok(buf)
        }
    }
}

fn safe_name(name: &str) -> Result<String, ClientError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\\') {
        return Err(ClientError::UnsafePath(name.to_string()));
    }
    Ok(name.to_string())
}

/// `rel` under `base`, refusing absolute paths and `..`.
pub fn safe_join(base: &Path, rel: &str) -> Result<PathBuf, ClientError> {
    let mut p = base.to_path_buf();
    if rel.is_empty() {
        return Err(ClientError::UnsafePath(rel.to_string()));
    }
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
            return Err(ClientError::UnsafePath(rel.to_string()));
        }
        p.push(part);
    }
    Ok(p)
}
