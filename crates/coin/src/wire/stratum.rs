//! Stratum v1 (the de-facto mining protocol of slush's pool, as the Bitcoin wiki's
//! "Stratum mining protocol" page describes it): JSON-RPC objects, one per line, over TCP.
//!
//! - Client → pool: `mining.subscribe`, `mining.authorize [user, password]`,
//!   `mining.submit [worker, job_id, extranonce2, ntime, nonce]`, `mining.extranonce.subscribe`
//!   (which our pool answers `false`).
//! - Pool → client: `mining.notify [job_id, prevhash, coinb1, coinb2, merkle_branch, version,
//!   nbits, ntime, clean_jobs]`, `mining.set_difficulty [difficulty]`, and responses
//!   `{"id", "result", "error": [code, message, null]}`.
//!
//! Byte orders, as every Stratum implementation has them: `prevhash` is the header's 32
//! bytes with each 4-byte word reversed ([`Notify::prev`] holds the header order);
//! `version`, `nbits`, `ntime` and `nonce` are the 8 hex digits of the number (the header
//! holds them little-endian); coinbase parts, extranonces and merkle branch hashes are raw
//! bytes in hex. A line is at most [`MAX_LINE`] bytes; every malformed or oversized line is a
//! [`StratumError`], never a panic.
use serde_json::{Value, json};
use thiserror::Error;

/// Longest line accepted, newline included (a notify with a 250-output coinbase is ~18 KB).
pub const MAX_LINE: usize = 64 * 1024;
/// Longest job id, worker name or password accepted.
pub const MAX_NAME: usize = 128;
/// Most merkle branch entries (a block of 2^32 transactions needs 32).
pub const MAX_BRANCH: usize = 32;
/// Longest extranonce (1 or 2) accepted, in bytes.
pub const MAX_EXTRANONCE: usize = 32;

/// Stratum's error codes (slush's list).
pub mod code {
    pub const OTHER: i64 = 20;
    pub const JOB_NOT_FOUND: i64 = 21;
    pub const DUPLICATE: i64 = 22;
    pub const LOW_DIFFICULTY: i64 = 23;
    pub const UNAUTHORIZED: i64 = 24;
    pub const NOT_SUBSCRIBED: i64 = 25;
}

/// Why a line is not a Stratum message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StratumError {
    #[error("line longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("unknown method {0:?}")]
    UnknownMethod(String),
    #[error("{method}: parameter {index}: {why}")]
    BadParam {
        method: &'static str,
        index: usize,
        why: &'static str,
    },
    #[error("neither a request, a notification nor a response")]
    BadShape,
    #[error("bad id")]
    BadId,
}

/// A request id (Stratum uses numbers, some clients strings).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Id {
    #[default]
    Null,
    Num(u64),
    Str(String),
}

impl Id {
    fn to_json(&self) -> Value {
        match self {
            Id::Null => Value::Null,
            Id::Num(n) => json!(n),
            Id::Str(s) => json!(s),
        }
    }
    fn from_json(v: Option<&Value>) -> Result<Id, StratumError> {
        match v {
            None | Some(Value::Null) => Ok(Id::Null),
            Some(Value::Number(n)) => n.as_u64().map(Id::Num).ok_or(StratumError::BadId),
            Some(Value::String(s)) if s.len() <= MAX_NAME => Ok(Id::Str(s.clone())),
            Some(_) => Err(StratumError::BadId),
        }
    }
}

/// `mining.submit`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    pub worker: String,
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
}

/// `mining.notify`'s parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub job_id: String,
    /// The previous block hash in header (internal) byte order.
    pub prev: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    /// Sibling hashes from the coinbase up to the root, internal byte order.
    pub merkle_branch: Vec<[u8; 32]>,
    pub version: u32,
    pub nbits: u32,
    pub ntime: u32,
    pub clean_jobs: bool,
}

/// What a miner sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Subscribe {
        id: Id,
        user_agent: Option<String>,
    },
    Authorize {
        id: Id,
        user: String,
        password: String,
    },
    Submit {
        id: Id,
        share: Submit,
    },
    ExtranonceSubscribe {
        id: Id,
    },
    /// A response to a request of the pool's (e.g. `client.get_version`), ignored.
    Response {
        id: Id,
    },
}

/// A Stratum error triple `[code, message, traceback]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorTriple {
    pub code: i64,
    pub message: String,
}

/// What a pool sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    Notify(Notify),
    SetDifficulty(f64),
    /// The answer to request `id`: its result, or the error.
    Response {
        id: Id,
        result: Result<Value, ErrorTriple>,
    },
    /// `client.reconnect`, `client.show_message` and the like: known to exist, ignored.
    Other {
        method: String,
    },
}

/// `mining.subscribe`'s result: `[[subscriptions...], extranonce1, extranonce2_size]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
}

impl Subscribed {
    pub fn to_json(&self, subscription: &str) -> Value {
        json!([
            [
                ["mining.set_difficulty", subscription],
                ["mining.notify", subscription]
            ],
            hex(&self.extranonce1),
            self.extranonce2_size
        ])
    }
    pub fn from_json(v: &Value) -> Result<Subscribed, StratumError> {
        const M: &str = "mining.subscribe result";
        let bad = |index, why| StratumError::BadParam {
            method: M,
            index,
            why,
        };
        let a = v.as_array().ok_or(bad(0, "not an array"))?;
        let e1 = a
            .get(1)
            .and_then(Value::as_str)
            .ok_or(bad(1, "extranonce1 missing"))?;
        let extranonce1 = unhex_bounded(e1, MAX_EXTRANONCE).ok_or(bad(1, "bad extranonce1"))?;
        let size = a
            .get(2)
            .and_then(Value::as_u64)
            .filter(|n| (1..=MAX_EXTRANONCE as u64).contains(n))
            .ok_or(bad(2, "bad extranonce2 size"))?;
        Ok(Subscribed {
            extranonce1,
            extranonce2_size: size as usize,
        })
    }
}

/// The first complete line in `buf` (without its `\n` and an optional `\r`) and the bytes it
/// used; `Ok(None)` until a newline arrives; an error once [`MAX_LINE`] bytes hold none.
pub fn next_line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, StratumError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            let line = &buf[..i];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            Ok(Some((line, i + 1)))
        }
        None if buf.len() >= MAX_LINE => Err(StratumError::LineTooLong),
        None => Ok(None),
    }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

/// Bytes of a hex string of at most `max` bytes; `None` if odd, not hex or too long.
pub fn unhex_bounded(s: &str, max: usize) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() / 2 > max {
        return None;
    }
    let b = s.as_bytes();
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks_exact(2)
        .map(|p| Some(nib(p[0])? << 4 | nib(p[1])?))
        .collect()
}

/// The header's prev hash as Stratum writes it: each 4-byte word reversed.
pub fn swap_words(h: &[u8; 32]) -> [u8; 32] {
    let mut o = *h;
    for w in o.chunks_exact_mut(4) {
        w.reverse();
    }
    o
}

fn parse(line: &[u8]) -> Result<serde_json::Map<String, Value>, StratumError> {
    if line.len() > MAX_LINE {
        return Err(StratumError::LineTooLong);
    }
    match serde_json::from_slice::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(StratumError::NotObject),
        Err(e) => Err(StratumError::Json(e.to_string())),
    }
}

fn params(m: &serde_json::Map<String, Value>) -> &[Value] {
    match m.get("params") {
        Some(Value::Array(a)) => a,
        _ => &[],
    }
}

fn str_param<'a>(
    p: &'a [Value],
    method: &'static str,
    index: usize,
) -> Result<&'a str, StratumError> {
    let s = p
        .get(index)
        .and_then(Value::as_str)
        .ok_or(StratumError::BadParam {
            method,
            index,
            why: "not a string",
        })?;
    if s.len() > MAX_NAME {
        return Err(StratumError::BadParam {
            method,
            index,
            why: "too long",
        });
    }
    Ok(s)
}

fn hex_param(
    p: &[Value],
    method: &'static str,
    index: usize,
    max: usize,
) -> Result<Vec<u8>, StratumError> {
    let s = p
        .get(index)
        .and_then(Value::as_str)
        .ok_or(StratumError::BadParam {
            method,
            index,
            why: "not a string",
        })?;
    unhex_bounded(s, max).ok_or(StratumError::BadParam {
        method,
        index,
        why: "not hex of the right size",
    })
}

fn u32_param(p: &[Value], method: &'static str, index: usize) -> Result<u32, StratumError> {
    let b = hex_param(p, method, index, 4)?;
    let b: [u8; 4] = b.try_into().map_err(|_| StratumError::BadParam {
        method,
        index,
        why: "not 8 hex digits",
    })?;
    Ok(u32::from_be_bytes(b))
}

/// Decode one line a miner sent.
pub fn decode_client(line: &[u8]) -> Result<ClientMessage, StratumError> {
    let m = parse(line)?;
    let id = Id::from_json(m.get("id"))?;
    let method = match m.get("method") {
        Some(Value::String(s)) => s.as_str(),
        None if m.contains_key("result") || m.contains_key("error") => {
            return Ok(ClientMessage::Response { id });
        }
        _ => return Err(StratumError::BadShape),
    };
    let p = params(&m);
    match method {
        "mining.subscribe" => {
            let user_agent = p
                .first()
                .and_then(Value::as_str)
                .map(|s| s.chars().take(MAX_NAME).collect());
            Ok(ClientMessage::Subscribe { id, user_agent })
        }
        "mining.authorize" => {
            const M: &str = "mining.authorize";
            let user = str_param(p, M, 0)?.to_string();
            let password = match p.get(1) {
                None | Some(Value::Null) => String::new(),
                Some(_) => str_param(p, M, 1)?.to_string(),
            };
            Ok(ClientMessage::Authorize { id, user, password })
        }
        "mining.submit" => {
            const M: &str = "mining.submit";
            if p.len() < 5 || p.len() > 6 {
                return Err(StratumError::BadParam {
                    method: M,
                    index: p.len(),
                    why: "expected 5 parameters",
                });
            }
            Ok(ClientMessage::Submit {
                id,
                share: Submit {
                    worker: str_param(p, M, 0)?.to_string(),
                    job_id: str_param(p, M, 1)?.to_string(),
                    extranonce2: hex_param(p, M, 2, MAX_EXTRANONCE)?,
                    ntime: u32_param(p, M, 3)?,
                    nonce: u32_param(p, M, 4)?,
                },
            })
        }
        "mining.extranonce.subscribe" => Ok(ClientMessage::ExtranonceSubscribe { id }),
        other => Err(StratumError::UnknownMethod(
            other.chars().take(MAX_NAME).collect(),
        )),
    }
}

/// Decode one line a pool sent.
pub fn decode_server(line: &[u8]) -> Result<ServerMessage, StratumError> {
    let m = parse(line)?;
    let id = Id::from_json(m.get("id"))?;
    let method = match m.get("method") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(StratumError::BadShape),
        None => {
            if !m.contains_key("result") && !m.contains_key("error") {
                return Err(StratumError::BadShape);
            }
            let result = match m.get("error") {
                None | Some(Value::Null) => Ok(m.get("result").cloned().unwrap_or(Value::Null)),
                Some(Value::Array(a)) => Err(ErrorTriple {
                    code: a.first().and_then(Value::as_i64).unwrap_or(code::OTHER),
                    message: a
                        .get(1)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(MAX_NAME)
                        .collect(),
                }),
                Some(other) => Err(ErrorTriple {
                    code: other
                        .get("code")
                        .and_then(Value::as_i64)
                        .unwrap_or(code::OTHER),
                    message: other
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .chars()
                        .take(MAX_NAME)
                        .collect(),
                }),
            };
            return Ok(ServerMessage::Response { id, result });
        }
    };
    let p = params(&m);
    match method {
        "mining.notify" => {
            const M: &str = "mining.notify";
            if p.len() < 9 {
                return Err(StratumError::BadParam {
                    method: M,
                    index: p.len(),
                    why: "expected 9 parameters",
                });
            }
            let prev: [u8; 32] =
                hex_param(p, M, 1, 32)?
                    .try_into()
                    .map_err(|_| StratumError::BadParam {
                        method: M,
                        index: 1,
                        why: "not 32 bytes",
                    })?;
            let branch = p[4].as_array().ok_or(StratumError::BadParam {
                method: M,
                index: 4,
                why: "not an array",
            })?;
            if branch.len() > MAX_BRANCH {
                return Err(StratumError::BadParam {
                    method: M,
                    index: 4,
                    why: "too many hashes",
                });
            }
            let merkle_branch = branch
                .iter()
                .map(|h| {
                    h.as_str()
                        .and_then(|s| unhex_bounded(s, 32))
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or(StratumError::BadParam {
                            method: M,
                            index: 4,
                            why: "a hash is not 32 bytes of hex",
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ServerMessage::Notify(Notify {
                job_id: str_param(p, M, 0)?.to_string(),
                prev: swap_words(&prev),
                coinb1: hex_param(p, M, 2, MAX_LINE)?,
                coinb2: hex_param(p, M, 3, MAX_LINE)?,
                merkle_branch,
                version: u32_param(p, M, 5)?,
                nbits: u32_param(p, M, 6)?,
                ntime: u32_param(p, M, 7)?,
                clean_jobs: p[8].as_bool().ok_or(StratumError::BadParam {
                    method: M,
                    index: 8,
                    why: "not a boolean",
                })?,
            }))
        }
        "mining.set_difficulty" => {
            let d = p
                .first()
                .and_then(Value::as_f64)
                .filter(|d| d.is_finite() && *d > 0.0)
                .ok_or(StratumError::BadParam {
                    method: "mining.set_difficulty",
                    index: 0,
                    why: "not a positive number",
                })?;
            Ok(ServerMessage::SetDifficulty(d))
        }
        other => Ok(ServerMessage::Other {
            method: other.chars().take(MAX_NAME).collect(),
        }),
    }
}

fn line(v: &Value, out: &mut Vec<u8>) {
    // serde_json never fails to write a Value into a Vec.
    let _ = serde_json::to_writer(&mut *out, v);
    out.push(b'\n');
}

/// Append `m` as one line.
pub fn encode_client(m: &ClientMessage, out: &mut Vec<u8>) {
    let v = match m {
        ClientMessage::Subscribe { id, user_agent } => {
            let p: Vec<Value> = user_agent.iter().map(|u| json!(u)).collect();
            json!({"id": id.to_json(), "method": "mining.subscribe", "params": p})
        }
        ClientMessage::Authorize { id, user, password } => {
            json!({"id": id.to_json(), "method": "mining.authorize", "params": [user, password]})
        }
        ClientMessage::Submit { id, share } => json!({
            "id": id.to_json(),
            "method": "mining.submit",
            "params": [
                share.worker,
                share.job_id,
                hex(&share.extranonce2),
                format!("{:08x}", share.ntime),
                format!("{:08x}", share.nonce),
            ]
        }),
        ClientMessage::ExtranonceSubscribe { id } => {
            json!({"id": id.to_json(), "method": "mining.extranonce.subscribe", "params": []})
        }
        ClientMessage::Response { id } => {
            json!({"id": id.to_json(), "result": null, "error": null})
        }
    };
    line(&v, out);
}

/// Append `m` as one line.
pub fn encode_server(m: &ServerMessage, out: &mut Vec<u8>) {
    let v = match m {
        ServerMessage::Notify(n) => json!({
            "id": null,
            "method": "mining.notify",
            "params": [
                n.job_id,
                hex(&swap_words(&n.prev)),
                hex(&n.coinb1),
                hex(&n.coinb2),
                n.merkle_branch.iter().map(|h| hex(h)).collect::<Vec<_>>(),
                format!("{:08x}", n.version),
                format!("{:08x}", n.nbits),
                format!("{:08x}", n.ntime),
                n.clean_jobs,
            ]
        }),
        ServerMessage::SetDifficulty(d) => {
            json!({"id": null, "method": "mining.set_difficulty", "params": [d]})
        }
        ServerMessage::Response { id, result } => match result {
            Ok(r) => json!({"id": id.to_json(), "result": r, "error": null}),
            Err(e) => {
                json!({"id": id.to_json(), "result": null, "error": [e.code, e.message, null]})
            }
        },
        ServerMessage::Other { method } => {
            json!({"id": null, "method": method, "params": []})
        }
    };
    line(&v, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_round_trips_with_the_prevhash_word_swapped_on_the_wire() {
        let mut prev = [0u8; 32];
        for (i, b) in prev.iter_mut().enumerate() {
            *b = i as u8;
        }
        let n = Notify {
            job_id: "1f".into(),
            prev,
            coinb1: vec![1, 2, 3],
            coinb2: vec![4, 5],
            merkle_branch: vec![[7; 32]],
            version: 0x2000_0000,
            nbits: 0x207f_ffff,
            ntime: 0x5f5e_1000,
            clean_jobs: true,
        };
        let mut out = Vec::new();
        encode_server(&ServerMessage::Notify(n.clone()), &mut out);
        let text = String::from_utf8(out.clone()).expect("utf-8");
        assert!(text.contains("\"03020100070605040b0a0908"), "{text}");
        assert!(text.contains("\"20000000\",\"207fffff\",\"5f5e1000\",true"));
        let (l, used) = next_line(&out).expect("ok").expect("a line");
        assert_eq!(used, out.len());
        assert_eq!(decode_server(l), Ok(ServerMessage::Notify(n)));
    }

    #[test]
    fn the_worked_example_of_a_real_pool_decodes() {
        // From a public pool's session (bitcoin.stackexchange question 11318).
        let l = br#"{"params": ["1369818357 489", "56d14795eadabe52464b0c6410f8c1f70c0af2c5444379160000002400000000", "01", "02", [], "00000002", "1a016a7e", "51a5c4f5", true], "id": null, "method": "mining.notify"}"#;
        let ServerMessage::Notify(n) = decode_server(l).expect("decodes") else {
            panic!("not a notify");
        };
        // The block hash as displayed is the header's bytes reversed.
        assert_eq!(
            crate::hash_hex(&n.prev),
            "000000000000002444437916 0c0af2c510f8c1f7464b0c64eadabe5256d14795".replace(' ', "")
        );
        assert_eq!((n.version, n.nbits, n.ntime), (2, 0x1a01_6a7e, 0x51a5_c4f5));
    }

    #[test]
    fn submit_round_trips_and_the_nonce_is_big_endian_hex() {
        let s = Submit {
            worker: "mwabc.rig1".into(),
            job_id: "a".into(),
            extranonce2: vec![0, 0, 0, 1],
            ntime: 0x5f5e_1000,
            nonce: 0x0102_0304,
        };
        let m = ClientMessage::Submit {
            id: Id::Num(4),
            share: s,
        };
        let mut out = Vec::new();
        encode_client(&m, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("\"01020304\""));
        assert_eq!(decode_client(&out[..out.len() - 1]), Ok(m));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for l in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"id\":1,\"method\":\"mining.submit\",\"params\":[\"w\",\"j\",\"zz\",\"00000000\",\"00000000\"]}",
            b"{\"id\":1,\"method\":\"mining.submit\",\"params\":[\"w\",\"j\",\"00\",\"000000\",\"00000000\"]}",
            b"{\"id\":1,\"method\":\"mining.submit\",\"params\":[]}",
            b"{\"id\":1,\"method\":\"mining.authorize\",\"params\":[5]}",
            b"{\"id\":-1,\"method\":\"mining.subscribe\",\"params\":[]}",
            b"{\"id\":1,\"method\":\"mining.fly\",\"params\":[]}",
        ] {
            assert!(decode_client(l).is_err(), "{}", String::from_utf8_lossy(l));
        }
        for l in [
            &b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[-1]}"[..],
            b"{\"id\":null,\"method\":\"mining.notify\",\"params\":[\"j\"]}",
            b"{\"id\":null}",
        ] {
            assert!(decode_server(l).is_err(), "{}", String::from_utf8_lossy(l));
        }
    }

    #[test]
    fn a_line_without_a_newline_is_bounded() {
        let long = vec![b'a'; MAX_LINE];
        assert_eq!(next_line(&long), Err(StratumError::LineTooLong));
        assert_eq!(next_line(&long[..100]), Ok(None));
        assert_eq!(next_line(b"{}\r\nrest"), Ok(Some((&b"{}"[..], 4))));
    }

    #[test]
    fn an_error_response_carries_its_code() {
        let m = ServerMessage::Response {
            id: Id::Num(3),
            result: Err(ErrorTriple {
                code: code::DUPLICATE,
                message: "Duplicate share".into(),
            }),
        };
        let mut out = Vec::new();
        encode_server(&m, &mut out);
        assert_eq!(decode_server(&out[..out.len() - 1]), Ok(m));
    }
}
