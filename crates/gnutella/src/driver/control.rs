//! The local control API of a long-running servent: HTTP/1.0 + JSON on 127.0.0.1
//! (default [`control_for`] the listen address, [`DEFAULT_CONTROL`] for the default one), used by `servent gnutella search|get|peers|stats`.
//!
//! ```text
//! GET /peers                          {"peers":["127.0.0.1:6346",...],"role":"leaf",
//!                                       "details":[{"addr":..,"role":"ultrapeer",
//!                                       "qrp_fill":0.01|null,"deflate":true,"user_agent":..}]}
//! GET /stats                          {"rx":{"ping":..},"tx":{..},"duplicates":..,...}
//! GET /search?q=WORDS&wait=MS[&ttl=N] {"hits":[{"id":1,"name":..,"size":..,"host":..,
//!                                       "push":false,"hops":2,"speed":..}]}
//! GET /get?hit=ID&out=DIR             one JSON object per line while downloading:
//!                                       {"done":N,"total":M} ... then {"path":P} or {"error":E}
//! ```
//! Hit ids are numbers the daemon gives the hits of its recent searches (the last
//! [`MAX_REMEMBERED_HITS`]). The API is bound to the loopback interface only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::core::{Hit, Stats};
use crate::driver::{Node, NodeError};
use crate::wire::Kind;

/// The control API's default address: the one [`control_for`] derives from the default
/// `--listen 127.0.0.1:6346`.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:16346";

/// The control address derived from a servent's listen address: port + 10 000 (so servents
/// on 6346, 6347, ... get 16346, 16347, ...), port 0 (chosen by the OS) when that is out of
/// range or the listen port is itself 0; on the listen IP when it is a loopback address, else
/// on 127.0.0.1 (or ::1): the API serves local clients only, so it never listens elsewhere.
pub fn control_for(listen: SocketAddr) -> SocketAddr {
    let port = match listen.port() {
        0 => 0,
        p => p.checked_add(10_000).unwrap_or(0),
    };
    let ip = match listen.ip() {
        ip if ip.is_loopback() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    SocketAddr::new(ip, port)
}
/// Hits remembered for `get <hit-id>`.
pub const MAX_REMEMBERED_HITS: usize = 10_000;
/// Longest search wait the API accepts.
const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct HitTable {
    next: u64,
    hits: BTreeMap<u64, Hit>,
}

/// Serves the control API for `node` on `listener` until the task is dropped.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let table = Arc::new(Mutex::new(HitTable {
        next: 1,
        hits: BTreeMap::new(),
    }));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !peer.ip().is_loopback() {
            continue;
        }
        let node = node.clone();
        let table = table.clone();
        tokio::spawn(async move {
            let _ = handle(stream, node, table).await;
        });
    }
}

fn role_name(r: crate::core::PeerRole) -> &'static str {
    match r {
        crate::core::PeerRole::Leaf => "leaf",
        crate::core::PeerRole::Ultrapeer => "ultrapeer",
        _ => "0.4",
    }
}

/// The JSON form of a hit.
pub fn hit_json(id: u64, h: &Hit) -> Value {
    json!({
        "id": id,
        "name": h.name,
        "size": h.size,
        "host": h.addr.to_string(),
        "push": h.push,
        "busy": h.busy,
        "hops": h.hops,
        "speed": h.speed,
        "index": h.index,
        "servent_id": h.servent_id.to_string(),
        "urn": h.sha1.as_ref().map(crate::wire::urn::sha1_urn),
    })
}

/// The JSON form of the counters.
pub fn stats_json(s: &Stats) -> Value {
    let by_kind = |v: &[u64; 5]| {
        let mut m = serde_json::Map::new();
        for k in Kind::ALL {
            let name = match k {
                Kind::Ping => "ping",
                Kind::Pong => "pong",
                Kind::Push => "push",
                Kind::Query => "query",
                Kind::QueryHit => "queryhit",
            };
            m.insert(name.into(), json!(v[k.index()]));
        }
        Value::Object(m)
    };
    json!({
        "rx": by_kind(&s.rx),
        "tx": by_kind(&s.tx),
        "duplicates": s.duplicates,
        "throttled": s.throttled,
        "flooders_closed": s.flooders_closed,
        "refused_banned": s.refused_banned,
        "ttl_expired": s.ttl_expired,
        "unroutable": s.unroutable,
        "queries_seen": s.queries_seen,
        "queries_answered": s.queries_answered,
        "malformed": s.malformed,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
    })
}

fn query_params(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let v = servent_http::percent_decode_str(&v.replace('+', " "))?;
            Some((k.to_string(), v))
        })
        .collect()
}

async fn handle(
    mut stream: TcpStream,
    node: Arc<Node>,
    table: Arc<Mutex<HitTable>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while servent_core::framing::find(&head, b"\r\n\r\n").is_none()
        && servent_core::framing::find(&head, b"\n\n").is_none()
    {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 || head.len() > 8192 {
            return Ok(());
        }
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let target = line.split(' ').nth(1).unwrap_or("/");
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let params = query_params(q);
    let ok = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    let reply = |v: Value| format!("{ok}{v}\n");
    match path {
        "/peers" => {
            let peers = node.peers().await.unwrap_or_default();
            let (role, infos) = node
                .peer_infos()
                .await
                .unwrap_or((crate::core::Role::Flat04, Vec::new()));
            let details: Vec<Value> = infos
                .iter()
                .map(|p| {
                    json!({
                        "addr": p.addr.to_string(),
                        "role": role_name(p.role),
                        "qrp_fill": p.qrp_fill,
                        "deflate": p.deflate_in && p.deflate_out,
                        "user_agent": p.user_agent,
                    })
                })
                .collect();
            let v = json!({
                "peers": peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "role": format!("{role:?}").to_lowercase(),
                "details": details,
            });
            stream.write_all(reply(v).as_bytes()).await?;
        }
        "/stats" => {
            let v = match node.stats().await {
                Ok(s) => stats_json(&s),
                Err(e) => json!({"error": e.to_string()}),
            };
            stream.write_all(reply(v).as_bytes()).await?;
        }
        "/search" => {
            let q = params.get("q").cloned().unwrap_or_default();
            let wait = params
                .get("wait")
                .and_then(|w| w.parse().ok())
                .map_or(Duration::from_secs(5), Duration::from_millis)
                .min(MAX_WAIT);
            let ttl = params.get("ttl").and_then(|t| t.parse().ok());
            let v = match node.search(&q, ttl, wait).await {
                Ok(hits) => {
                    let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
                    let mut out = Vec::new();
                    for h in hits {
                        let id = t.next;
                        t.next += 1;
                        out.push(hit_json(id, &h));
                        t.hits.insert(id, h);
                    }
                    while t.hits.len() > MAX_REMEMBERED_HITS {
                        t.hits.pop_first();
                    }
                    json!({"hits": out})
                }
                Err(e) => json!({"error": e.to_string()}),
            };
            stream.write_all(reply(v).as_bytes()).await?;
        }
        "/get" => {
            let hit = params
                .get("hit")
                .and_then(|h| h.parse::<u64>().ok())
                .and_then(|id| {
                    let t = table.lock().unwrap_or_else(|p| p.into_inner());
                    t.hits.get(&id).cloned()
                });
            let out = params.get("out").map(PathBuf::from);
            stream.write_all(ok.as_bytes()).await?;
            let (Some(hit), Some(out)) = (hit, out) else {
                let v = json!({"error": "unknown hit id (search again) or no out folder"});
                stream.write_all(format!("{v}\n").as_bytes()).await?;
                return Ok(());
            };
            let (ptx, mut prx) = mpsc::channel(64);
            let dl = {
                let node = node.clone();
                tokio::spawn(async move { node.download(&hit, &out, Some(ptx)).await })
            };
            while let Some(p) = prx.recv().await {
                let v = json!({"done": p.done, "total": p.total});
                stream.write_all(format!("{v}\n").as_bytes()).await?;
            }
            let v = match dl.await {
                Ok(Ok(path)) => json!({"path": path.display().to_string()}),
                Ok(Err(e)) => json!({"error": e.to_string()}),
                Err(e) => json!({"error": e.to_string()}),
            };
            stream.write_all(format!("{v}\n").as_bytes()).await?;
        }
        _ => {
            let v = json!({"error": "unknown path; try /peers /stats /search?q= /get?hit=&out="});
            stream
                .write_all(
                    format!("HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{v}\n")
                        .as_bytes(),
                )
                .await?;
        }
    }
    stream.shutdown().await
}

/// Escapes a query-string value.
pub fn encode_param(s: &str) -> String {
    servent_http::percent_encode_str(s)
}

/// Sends `GET path` to the control API at `addr` and calls `each` with every JSON line of
/// the answer (one for most paths, many for `/get`).
pub async fn request(
    addr: SocketAddr,
    path: &str,
    mut each: impl FnMut(Value),
) -> Result<(), NodeError> {
    let mut s = TcpStream::connect(addr).await.map_err(|source| NodeError::Io {
        what: format!(
            "connecting to the servent's control API at {addr} (is `servent gnutella run` running? see --control)"
        ),
        source,
    })?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .map_err(|source| NodeError::Io {
            what: "sending a request".into(),
            source,
        })?;
    let mut lines = BufReader::new(s).lines();
    let mut in_body = false;
    while let Some(l) = lines.next_line().await.map_err(|source| NodeError::Io {
        what: "reading the answer".into(),
        source,
    })? {
        if !in_body {
            in_body = l.trim().is_empty();
            continue;
        }
        if l.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(&l).map_err(|e| NodeError::Protocol(format!("bad JSON: {e}")))?;
        each(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_control_address_is_local_and_follows_the_listen_port() {
        let at = |s: &str| control_for(s.parse().expect("addr")).to_string();
        assert_eq!(at("127.0.0.1:6346"), DEFAULT_CONTROL);
        assert_eq!(at("127.0.0.5:6347"), "127.0.0.5:16347");
        // A servent listening on a LAN or any address still takes commands on loopback only,
        // where a client on the same host reaches it.
        assert_eq!(at("10.254.0.1:6346"), "127.0.0.1:16346");
        assert_eq!(at("0.0.0.0:6346"), "127.0.0.1:16346");
        assert_eq!(at("[2001:db8::1]:6346"), "[::1]:16346");
        assert_eq!(at("127.0.0.1:60000"), "127.0.0.1:0");
        assert_eq!(at("127.0.0.1:0"), "127.0.0.1:0");
    }
}
