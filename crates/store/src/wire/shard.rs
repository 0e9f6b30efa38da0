//! The shard protocol: one request, one response, over TCP. Each message is a frame: a
//! 4-byte big-endian length, then a type byte and the fields. Keys are 32 bytes: the
//! SHA-256 of a shard (content-addressed, checked by the node) or the storage index of a
//! manifest.

use super::{Reader, Truncated};

/// The largest frame (a shard of the largest segment, plus headers).
pub const MAX_FRAME: usize = 16 * 1024 * 1024 + 1024;
/// The most keys in one `Has`.
pub const MAX_HAS: usize = 4096;
/// The longest error message.
pub const MAX_MESSAGE: usize = 512;

/// What is stored under a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kind {
    /// An erasure-coded shard: the key is the SHA-256 of the data.
    Shard,
    /// An encrypted manifest: the key is the storage index of a capability.
    Manifest,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Shard => 0,
            Kind::Manifest => 1,
        }
    }
    /// The kind of a type byte.
    pub fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Shard),
            1 => Some(Kind::Manifest),
            _ => None,
        }
    }
}

/// A client's request to a storage node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Store `data` under `key`. `owner` is SHA-256 of the delete secret.
    Put {
        /// Key.
        key: [u8; 32],
        /// Shard or manifest.
        kind: Kind,
        /// SHA-256 of the secret that may delete it.
        owner: [u8; 32],
        /// The bytes.
        data: Vec<u8>,
    },
    /// The bytes under `key`.
    Get {
        /// Key.
        key: [u8; 32],
    },
    /// Which of `keys` the node holds.
    Has {
        /// Keys.
        keys: Vec<[u8; 32]>,
    },
    /// Delete `key`; `secret` must hash to the owner given at put.
    Delete {
        /// Key.
        key: [u8; 32],
        /// The delete secret.
        secret: [u8; 32],
    },
    /// The node's id, quota and used space.
    Space,
}

/// A node's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// Done.
    Ok,
    /// The bytes asked for.
    Data(Vec<u8>),
    /// One flag per key asked.
    Has(Vec<bool>),
    /// Id, quota and used bytes.
    Space {
        /// The node's DHT id.
        id: [u8; 20],
        /// Quota in bytes.
        quota: u64,
        /// Used bytes.
        used: u64,
    },
    /// Refused.
    Error {
        /// Why.
        code: ErrorCode,
        /// Detail for humans.
        message: String,
    },
}

/// Why a node refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No such key.
    NotFound,
    /// Over quota.
    Quota,
    /// The stored bytes failed their hash (the node dropped them).
    Corrupt,
    /// Wrong delete secret, or data not matching a content-addressed key.
    Forbidden,
    /// A different manifest is already stored under the key.
    Exists,
    /// Malformed request.
    BadRequest,
    /// The node failed (disk).
    Internal,
}

impl ErrorCode {
    fn byte(self) -> u8 {
        match self {
            ErrorCode::NotFound => 1,
            ErrorCode::Quota => 2,
            ErrorCode::Corrupt => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::Exists => 5,
            ErrorCode::BadRequest => 6,
            ErrorCode::Internal => 7,
        }
    }
    fn from_byte(b: u8) -> Option<ErrorCode> {
        Some(match b {
            1 => ErrorCode::NotFound,
            2 => ErrorCode::Quota,
            3 => ErrorCode::Corrupt,
            4 => ErrorCode::Forbidden,
            5 => ErrorCode::Exists,
            6 => ErrorCode::BadRequest,
            7 => ErrorCode::Internal,
            _ => return None,
        })
    }
}

/// A malformed frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Ended early.
    #[error("truncated message")]
    Truncated,
    /// Bigger than the limit.
    #[error("message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Unknown type byte.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A field out of range.
    #[error("bad field: {0}")]
    Bad(&'static str),
}

impl From<Truncated> for WireError {
    fn from(_: Truncated) -> WireError {
        WireError::Truncated
    }
}

/// The length a frame header announces, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, WireError> {
    let n = u32::from_be_bytes(header) as usize;
    if n > MAX_FRAME {
        return Err(WireError::TooLarge(n));
    }
    Ok(n)
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

impl Request {
    /// The frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Request::Put {
                key,
                kind,
                owner,
                data,
            } => {
                b.reserve(data.len() + 70);
                b.push(1);
                b.extend_from_slice(key);
                b.push(kind.byte());
                b.extend_from_slice(owner);
                b.extend_from_slice(data);
            }
            Request::Get { key } => {
                b.push(2);
                b.extend_from_slice(key);
            }
            Request::Has { keys } => {
                b.push(3);
                b.extend_from_slice(&(keys.len() as u32).to_be_bytes());
                for k in keys {
                    b.extend_from_slice(k);
                }
            }
            Request::Delete { key, secret } => {
                b.push(4);
                b.extend_from_slice(key);
                b.extend_from_slice(secret);
            }
            Request::Space => b.push(5),
        }
        frame(b)
    }

    /// Decodes a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Request, WireError> {
        if body.len() > MAX_FRAME {
            return Err(WireError::TooLarge(body.len()));
        }
        let mut r = Reader::new(body);
        let req = match r.u8()? {
            1 => {
                let key = r.array()?;
                let kind = Kind::from_byte(r.u8()?).ok_or(WireError::Bad("kind"))?;
                let owner = r.array()?;
                let data = r.rest().to_vec();
                Request::Put {
                    key,
                    kind,
                    owner,
                    data,
                }
            }
            2 => Request::Get { key: r.array()? },
            3 => {
                let n = r.u32()? as usize;
                if n > MAX_HAS {
                    return Err(WireError::Bad("too many keys"));
                }
                if n * 32 > r.left() {
                    return Err(WireError::Truncated);
                }
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.array()?);
                }
                Request::Has { keys }
            }
            4 => Request::Delete {
                key: r.array()?,
                secret: r.array()?,
            },
            5 => Request::Space,
            t => return Err(WireError::UnknownType(t)),
        };
        if r.left() > 0 {
            return Err(WireError::Trailing(r.left()));
        }
        Ok(req)
    }
}

impl Response {
    /// An error answer.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        let mut message: String = message.into();
        if message.len() > MAX_MESSAGE {
            let mut cut = MAX_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Response::Error { code, message }
    }

    /// The frame (length prefix included).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Response::Ok => b.push(0x81),
            Response::Data(d) => {
                b.reserve(d.len() + 1);
                b.push(0x82);
                b.extend_from_slice(d);
            }
            Response::Has(bits) => {
                b.push(0x83);
                b.extend_from_slice(&(bits.len() as u32).to_be_bytes());
                b.extend(bits.iter().map(|&x| u8::from(x)));
            }
            Response::Space { id, quota, used } => {
                b.push(0x84);
                b.extend_from_slice(id);
                b.extend_from_slice(&quota.to_be_bytes());
                b.extend_from_slice(&used.to_be_bytes());
            }
            Response::Error { code, message } => {
                b.push(0x85);
                b.push(code.byte());
                let m = message.as_bytes();
                let m = m.get(..MAX_MESSAGE.min(m.len())).unwrap_or_default();
                b.extend_from_slice(&(m.len() as u16).to_be_bytes());
                b.extend_from_slice(m);
            }
        }
        frame(b)
    }

    /// Decodes a frame body (without the length prefix).
    pub fn decode(body: &[u8]) -> Result<Response, WireError> {
        if body.len() > MAX_FRAME {
            return Err(WireError::TooLarge(body.len()));
        }
        let mut r = Reader::new(body);
        let resp = match r.u8()? {
            0x81 => Response::Ok,
            0x82 => Response::Data(r.rest().to_vec()),
            0x83 => {
                let n = r.u32()? as usize;
                if n > MAX_HAS {
                    return Err(WireError::Bad("too many flags"));
                }
                let bits = r.take(n)?;
                if bits.iter().any(|&b| b > 1) {
                    return Err(WireError::Bad("flag"));
                }
                Response::Has(bits.iter().map(|&b| b == 1).collect())
            }
            0x84 => Response::Space {
                id: r.array()?,
                quota: r.u64()?,
                used: r.u64()?,
            },
            0x85 => {
                let code = ErrorCode::from_byte(r.u8()?).ok_or(WireError::Bad("error code"))?;
                let n = r.u16()? as usize;
                if n > MAX_MESSAGE {
                    return Err(WireError::Bad("message length"));
                }
                let m = r.take(n)?;
                let message = String::from_utf8_lossy(m).into_owned();
                Response::Error { code, message }
            }
            t => return Err(WireError::UnknownType(t)),
        };
        if r.left() > 0 {
            return Err(WireError::Trailing(r.left()));
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body(f: Vec<u8>) -> Vec<u8> {
        f[4..].to_vec()
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let reqs = [
            Request::Put {
                key: [1; 32],
                kind: Kind::Manifest,
                owner: [2; 32],
                data: b"abc".to_vec(),
            },
            Request::Get { key: [3; 32] },
            Request::Has {
                keys: vec![[4; 32], [5; 32]],
            },
            Request::Delete {
                key: [6; 32],
                secret: [7; 32],
            },
            Request::Space,
        ];
        for q in reqs {
            assert_eq!(Request::decode(&body(q.encode())).unwrap(), q);
        }
        let resps = [
            Response::Ok,
            Response::Data(vec![9; 100]),
            Response::Has(vec![true, false]),
            Response::Space {
                id: [8; 20],
                quota: 10,
                used: 3,
            },
            Response::error(ErrorCode::Quota, "full"),
        ];
        for r in resps {
            assert_eq!(Response::decode(&body(r.encode())).unwrap(), r);
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        assert_eq!(Request::decode(&[]), Err(WireError::Truncated));
        assert_eq!(Request::decode(&[9]), Err(WireError::UnknownType(9)));
        assert_eq!(Request::decode(&[2, 0]), Err(WireError::Truncated));
        assert!(matches!(
            Request::decode(&[5, 0]),
            Err(WireError::Trailing(1))
        ));
        assert!(frame_len((MAX_FRAME as u32 + 1).to_be_bytes()).is_err());
        let mut has = vec![3];
        has.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Request::decode(&has).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Request::decode(&b);
            let _ = Response::decode(&b);
        }
    }
}
