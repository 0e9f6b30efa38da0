//! The storage node: shards on disk, content-addressed (`shards/ab/abcd…`), each file a
//! small header (magic, kind, owner tag, SHA-256 of the data) and the data, written
//! atomically (temp file, fsync, rename, fsync of the folder), checked on every read (a
//! file that fails its hash is removed and reported `Corrupt`). A quota bounds the bytes
//! held. The node is also a Kademlia DHT member on the same port (UDP).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use servent_kademlia::driver::{ClientOpts, DhtClient};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::read_frame;
use crate::core::keys::{owner_tag, sha256};
use crate::wire::shard::{ErrorCode, Kind, Request, Response};

const MAGIC: &[u8; 4] = b"SVS1";
const HEADER: usize = 4 + 1 + 32 + 32;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// TCP (shards) and UDP (DHT) address.
    pub listen: SocketAddr,
    /// Where the shards live.
    pub data: PathBuf,
    /// Bytes the node may hold.
    pub quota: u64,
    /// DHT nodes to join through.
    pub bootstrap: Vec<SocketAddr>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Disk.
    #[error("{path}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP listener.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The DHT.
    #[error("DHT: {0}")]
    Dht(#[from] servent_kademlia::driver::ClientError),
    /// No randomness.
    #[error("no OS randomness: {0}")]
    Random(String),
}

/// The shard store on disk.
#[derive(Debug)]
pub struct Disk {
    root: PathBuf,
    quota: u64,
    used: AtomicU64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NodeError + '_ {
    move |source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Disk {
    /// Opens (creates) the store and counts what it holds; removes temp files a kill left.
    pub fn open(root: &Path, quota: u64) -> Result<Disk, NodeError> {
        let shards = root.join("shards");
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&shards).map_err(io(&shards))?;
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut used = 0u64;
        for d in std::fs::read_dir(&shards).map_err(io(&shards))?.flatten() {
            if let Ok(rd) = std::fs::read_dir(d.path()) {
                for f in rd.flatten() {
                    used += f.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
        }
        Ok(Disk {
            root: root.to_path_buf(),
            quota,
            used: AtomicU64::new(used),
        })
    }

    fn path(&self, key: &[u8; 32]) -> PathBuf {
        let h = hex::encode(key);
        self.root.join("shards").join(&h[..2]).join(h)
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The keys held (for audits and handover).
    pub fn keys(&self) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("shards")) {
            for d in rd.flatten() {
                if let Ok(rd2) = std::fs::read_dir(d.path()) {
                    for f in rd2.flatten() {
                        let name = f.file_name();
                        if let Some(k) = hex::decode(name.to_string_lossy().as_bytes())
                            .ok()
                            .and_then(|v| <[u8; 32]>::try_from(v).ok())
                        {
                            out.push(k);
                        }
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// Reads and checks what is under `key`: (kind, owner, data).
    pub fn get(&self, key: &[u8; 32]) -> Result<(Kind, [u8; 32], Vec<u8>), ErrorCode> {
        let p = self.path(key);
        let raw = match std::fs::read(&p) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ErrorCode::NotFound),
            Err(_) => return Err(ErrorCode::Internal),
        };
        let ok = raw.len() >= HEADER && raw.get(..4) == Some(&MAGIC[..]);
        let kind = raw.get(4).copied().and_then(Kind::from_byte);
        let (Some(kind), true) = (kind, ok) else {
            self.drop_corrupt(&p, raw.len());
            return Err(ErrorCode::Corrupt);
        };
        let mut owner = [0u8; 32];
        owner.copy_from_slice(raw.get(5..37).unwrap_or(&[0; 32]));
        let hash = raw.get(37..69).unwrap_or_default();
        let data = raw.get(HEADER..).unwrap_or_default();
        let h = sha256(data);
        if hash != h || (kind == Kind::Shard && h != *key) {
            self.drop_corrupt(&p, raw.len());
            return Err(ErrorCode::Corrupt);
        }
        Ok((kind, owner, data.to_vec()))
    }

    fn drop_corrupt(&self, p: &Path, len: usize) {
        tracing::warn!(path = %p.display(), "stored data failed its hash; removed");
        if std::fs::remove_file(p).is_ok() {
            self.used.fetch_sub(len as u64, Ordering::Relaxed);
        }
    }

    /// Stores `data` atomically.
    pub fn put(&self, key: &[u8; 32], kind: Kind, owner: &[u8; 32], data: &[u8]) -> Response {
        if kind == Kind::Shard && sha256(data) != *key {
            return Response::error(ErrorCode::Forbidden, "data does not hash to its key");
        }
        match self.get(key) {
            Ok((_, _, old)) if old == data => return Response::Ok,
            Ok(_) => {
                return Response::error(
                    ErrorCode::Exists,
                    "a different object is stored under this key",
                );
            }
            Err(_) => {}
        }
        let size = (HEADER + data.len()) as u64;
        if self.used() + size > self.quota {
            return Response::error(
                ErrorCode::Quota,
                format!("quota of {} bytes reached", self.quota),
            );
        }
        let p = self.path(key);
        let r = (|| -> std::io::Result<()> {
            let dir = p.parent().unwrap_or(&self.root);
            std::fs::create_dir_all(dir)?;
            let tmp =
                self.root
                    .join("tmp")
                    .join(format!("{}.{}", hex::encode(&key[..8]), rand_suffix()));
            let mut f = std::fs::File::create(&tmp)?;
            use std::io::Write;
            let mut head = Vec::with_capacity(HEADER);
            head.extend_from_slice(MAGIC);
            head.push(match kind {
                Kind::Manifest => 1,
                _ => 0,
            });
            head.extend_from_slice(owner);
            head.extend_from_slice(&sha256(data));
            f.write_all(&head)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &p)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(())
        })();
        match r {
            Ok(()) => {
                self.used.fetch_add(size, Ordering::Relaxed);
                Response::Ok
            }
            Err(e) => Response::error(ErrorCode::Internal, format!("disk: {e}")),
        }
    }

    /// Deletes `key` if `secret` is its owner's.
    pub fn delete(&self, key: &[u8; 32], secret: &[u8; 32]) -> Response {
        match self.get(key) {
            Ok((_, owner, data)) => {
                if owner != owner_tag(secret) {
                    return Response::error(ErrorCode::Forbidden, "wrong delete secret");
                }
                if std::fs::remove_file(self.path(key)).is_ok() {
                    self.used
                        .fetch_sub((HEADER + data.len()) as u64, Ordering::Relaxed);
                }
                Response::Ok
            }
            Err(ErrorCode::NotFound) => Response::Ok,
            Err(c) => Response::error(c, "cannot read"),
        }
    }
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// The bound address (TCP and UDP).
    pub local: SocketAddr,
    /// The DHT id.
    pub id: servent_core::Id,
    /// The store.
    pub disk: Arc<Disk>,
    dht: DhtClient,
    listener: TcpListener,
}

impl Node {
    /// Opens the store, binds TCP then UDP on the same port, joins the DHT.
    pub async fn start(opts: NodeOpts) -> Result<Node, NodeError> {
        let data = opts.data.clone();
        let disk = tokio::task::spawn_blocking(move || Disk::open(&data, opts.quota))
            .await
            .map_err(|e| NodeError::Random(e.to_string()))??;
        let listener = TcpListener::bind(opts.listen)
            .await
            .map_err(|source| NodeError::Bind {
                addr: opts.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: opts.listen,
            source,
        })?;
        let rng = servent_runtime::os_rng().map_err(|e| NodeError::Random(e.to_string()))?;
        let mut dht = DhtClient::start(ClientOpts::with_rng(local, rng)).await?;
        if !opts.bootstrap.is_empty() {
            let n = dht.bootstrap(opts.bootstrap.clone()).await?;
            tracing::info!(nodes = n, "joined the DHT");
        }
        Ok(Node {
            local,
            id: dht.id,
            disk: Arc::new(disk),
            dht,
            listener,
        })
    }

    /// Serves until `stop` resolves; then shuts the DHT down.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), NodeError> {
        let Node {
            listener,
            disk,
            mut dht,
            id,
            ..
        } = self;
        let serve = async {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let d = disk.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(s, d, id).await;
                });
            }
        };
        let refresh = async {
            // keep the routing table warm: one lookup of a random target a minute
            let mut rng = servent_core::Rng::new(id.low_u64());
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = dht.find_node(servent_core::Id::random(&mut rng)).await;
            }
        };
        tokio::select! {
            () = serve => {}
            () = refresh => {}
            () = stop => {}
        }
        let _ = dht.shutdown().await;
        Ok(())
    }
}

async fn serve_conn(
    mut s: TcpStream,
    disk: Arc<Disk>,
    id: servent_core::Id,
) -> std::io::Result<()> {
    s.set_nodelay(true).ok();
    // a connection carries requests one after the other; idle ones close after 120 s
    for _ in 0..1_000_000 {
        let body = match tokio::time::timeout(Duration::from_secs(120), read_frame(&mut s)).await {
            Ok(Ok(b)) => b,
            _ => return Ok(()),
        };
        let resp = match Request::decode(&body) {
            Err(e) => Response::error(ErrorCode::BadRequest, e.to_string()),
            Ok(req) => {
                let d = disk.clone();
                tokio::task::spawn_blocking(move || answer(&d, id, req))
                    .await
                    .unwrap_or_else(|_| Response::error(ErrorCode::Internal, "worker failed"))
            }
        };
        s.write_all(&resp.encode()).await?;
    }
    Ok(())
}

fn answer(d: &Disk, id: servent_core::Id, req: Request) -> Response {
    match req {
        Request::Put {
            key,
            kind,
            owner,
            data,
        } => d.put(&key, kind, &owner, &data),
        Request::Get { key } => match d.get(&key) {
            Ok((_, _, data)) => Response::Data(data),
            Err(c) => Response::error(c, "cannot serve"),
        },
        Request::Has { keys } => Response::Has(keys.iter().map(|k| d.path(k).exists()).collect()),
        Request::Delete { key, secret } => d.delete(&key, &secret),
        Request::Space => Response::Space {
            id: id.0,
            quota: d.quota,
            used: d.used(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_checks_hashes_quota_and_owners() {
        let t = tempfile::tempdir().unwrap();
        let d = Disk::open(t.path(), 1000).unwrap();
        let data = b"shard bytes".to_vec();
        let key = sha256(&data);
        let secret = [1u8; 32];
        let owner = owner_tag(&secret);
        assert_eq!(d.put(&key, Kind::Shard, &owner, &data), Response::Ok);
        assert!(matches!(
            d.put(&[0; 32], Kind::Shard, &owner, &data),
            Response::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ));
        assert_eq!(d.get(&key).unwrap().2, data);
        assert!(matches!(
            d.put(&[9; 32], Kind::Manifest, &owner, &[0; 2000]),
            Response::Error {
                code: ErrorCode::Quota,
                ..
            }
        ));
        assert!(matches!(
            d.delete(&key, &[2; 32]),
            Response::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ));
        // flip a byte on disk: the read fails and the file is gone
        let p = d.path(&key);
        let mut raw = std::fs::read(&p).unwrap();
        let l = raw.len() - 1;
        raw[l] ^= 1;
        std::fs::write(&p, raw).unwrap();
        assert_eq!(d.get(&key).map(|_| ()), Err(ErrorCode::Corrupt));
        assert_eq!(d.get(&key).map(|_| ()), Err(ErrorCode::NotFound));
        assert_eq!(d.put(&key, Kind::Shard, &owner, &data), Response::Ok);
        assert_eq!(d.delete(&key, &secret), Response::Ok);
        assert_eq!(d.used(), 0);
        assert_eq!(Disk::open(t.path(), 1000).unwrap().used(), 0);
    }
}
