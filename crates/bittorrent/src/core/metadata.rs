//! BEP 9 `ut_metadata`: fetching a torrent's info dictionary from peers, and serving ours.
//!
//! The info dictionary (its exact bytes, whose SHA-1 is the info-hash) is exchanged in pieces
//! of 16 KiB ([`PIECE_SIZE`]; the last one shorter) over the extension protocol (BEP 10). A
//! peer announces the size in its extension handshake (`metadata_size`) and its message id for
//! `ut_metadata`; each message is a bencoded dictionary, and a `data` message carries the raw
//! piece right after it ([`MetadataMsg`]). Sizes of 0 or above [`MAX_METADATA_SIZE`] (8 MiB)
//! are refused.
//!
//! # How a core uses it
//! Fetching (starting from a [`crate::magnet::Magnet`]): one [`MetadataFetch`] per torrent,
//! keyed by the core's own peer handle `P`.
//! 1. When a peer's extension handshake has `ut_metadata` and `metadata_size`, call
//!    [`MetadataFetch::add_peer`]; when the peer goes away, [`MetadataFetch::remove_peer`].
//! 2. After every input, drain [`MetadataFetch::poll_request`]: each `(peer, piece)` is sent
//!    as an extended message (the peer's `ut_metadata` id, then
//!    `MetadataMsg::Request { piece }.encode()`).
//! 3. Hand every `ut_metadata` payload a peer sends to [`MetadataFetch::handle_message`]
//!    (requests in it are ignored there: answer them with [`serve`]).
//! 4. Arm a timer for [`MetadataFetch::poll_timeout`] and call
//!    [`MetadataFetch::handle_timeout`] when it fires (a timed-out request goes to another
//!    peer).
//! 5. Drain [`MetadataFetch::poll_event`]: [`FetchEvent::BadPeer`] (disconnect it: it sent a
//!    size or piece a correct peer never sends), [`FetchEvent::HashMismatch`] (the assembled
//!    bytes did not hash to the info-hash: everything was discarded, the listed peers — all
//!    that contributed — are no longer asked, and the fetch starts over with the others; the
//!    core should drop them), and finally [`FetchEvent::Complete`] with the verified info
//!    bytes for `Metainfo::from_info_bytes`.
//!
//! `now` is passed in and never goes backwards; nothing here reads a clock or allocates
//! without bound (at most [`FetchConfig::max_peers`] peers, one buffer of the metadata size).
//!
//! Serving: when a peer requests piece `i`, answer with `serve(&info_bytes, i).encode()`
//! (a `data` message, or `reject` for a piece that does not exist).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::time::Duration;

use servent_core::Instant;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, Limits, OwnedValue};
use crate::metainfo::InfoHash;

/// Bytes per metadata piece (the last piece may be shorter).
pub const PIECE_SIZE: usize = 16 * 1024;
/// The largest metadata accepted (8 MiB: 512 pieces).
pub const MAX_METADATA_SIZE: u32 = 8 << 20;

/// `msg_type` of a request.
pub const MSG_REQUEST: i64 = 0;
/// `msg_type` of a data message.
pub const MSG_DATA: i64 = 1;
/// `msg_type` of a reject.
pub const MSG_REJECT: i64 = 2;

/// Why a `ut_metadata` message or size is refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// The payload does not start with a bencoded dictionary.
    #[error("ut_metadata: not a bencoded dictionary")]
    NotDict,
    /// `msg_type` or `piece` is missing or out of range.
    #[error("ut_metadata: missing or invalid `{0}`")]
    Field(&'static str),
    /// A `msg_type` this implementation does not know; BEP 9 says to ignore the message.
    #[error("ut_metadata: unknown msg_type {0} (ignore the message)")]
    UnknownType(i64),
    /// Bytes after the dictionary of a request or reject.
    #[error("ut_metadata: {0} bytes after a request or reject")]
    Trailing(usize),
    /// A metadata size of 0 or above [`MAX_METADATA_SIZE`].
    #[error("ut_metadata: metadata size {0} out of range")]
    Size(i64),
    /// A data message carrying more than [`PIECE_SIZE`] bytes.
    #[error("ut_metadata: piece of {0} bytes")]
    PieceTooLong(usize),
}

impl MetadataError {
    /// Whether BEP 9 asks to ignore the message rather than treat the peer as broken.
    pub fn is_ignorable(&self) -> bool {
        matches!(self, MetadataError::UnknownType(_))
    }
}

/// One `ut_metadata` message (the extended message's payload, after its id byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMsg<'a> {
    /// `{msg_type: 0, piece}`: please send piece `piece`.
    Request {
        /// Piece index.
        piece: u32,
    },
    /// `{msg_type: 1, piece, total_size}` followed by the piece's bytes.
    Data {
        /// Piece index.
        piece: u32,
        /// The whole metadata's size.
        total_size: u32,
        /// The piece's bytes (at most [`PIECE_SIZE`]).
        data: &'a [u8],
    },
    /// `{msg_type: 2, piece}`: the sender will not send piece `piece`.
    Reject {
        /// Piece index.
        piece: u32,
    },
}

impl<'a> MetadataMsg<'a> {
    /// Decodes a payload. Unknown keys are ignored; an unknown `msg_type` is
    /// [`MetadataError::UnknownType`] (see [`MetadataError::is_ignorable`]).
    pub fn decode(payload: &'a [u8]) -> Result<MetadataMsg<'a>, MetadataError> {
        let (v, used) = bencode::decode_prefix(payload, &Limits::lenient_order())
            .map_err(|_| MetadataError::NotDict)?;
        let d = v.as_dict().ok_or(MetadataError::NotDict)?;
        let msg_type = d.int(b"msg_type").ok_or(MetadataError::Field("msg_type"))?;
        let piece = d
            .int(b"piece")
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| (p as usize) < max_pieces())
            .ok_or(MetadataError::Field("piece"))?;
        let rest = payload.get(used..).unwrap_or_default();
        match msg_type {
            MSG_REQUEST | MSG_REJECT => {
                if !rest.is_empty() {
                    return Err(MetadataError::Trailing(rest.len()));
                }
                Ok(if msg_type == MSG_REQUEST {
                    MetadataMsg::Request { piece }
                } else {
                    MetadataMsg::Reject { piece }
                })
            }
            MSG_DATA => {
                let size = d
                    .int(b"total_size")
                    .ok_or(MetadataError::Field("total_size"))?;
                let total_size = check_size(size)?;
                if rest.len() > PIECE_SIZE {
                    return Err(MetadataError::PieceTooLong(rest.len()));
                }
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data: rest,
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }

    /// Appends the payload's bytes.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let (t, piece) = match *self {
            MetadataMsg::Request { piece } => (MSG_REQUEST, piece),
            MetadataMsg::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMsg::Reject { piece } => (MSG_REJECT, piece),
        };
        let mut d = OwnedValue::dict()
            .with("msg_type", OwnedValue::Int(t))
            .with("piece", OwnedValue::Int(i64::from(piece)));
        if let MetadataMsg::Data {
            total_size, data, ..
        } = *self
        {
            d = d.with("total_size", OwnedValue::Int(i64::from(total_size)));
            d.encode_into(out);
            out.extend_from_slice(data);
        } else {
            d.encode_into(out);
        }
    }

    /// The payload's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

fn max_pieces() -> usize {
    MAX_METADATA_SIZE as usize / PIECE_SIZE
}

/// Checks a metadata size (from `metadata_size` or `total_size`): 1 ..= [`MAX_METADATA_SIZE`].
pub fn check_size(size: i64) -> Result<u32, MetadataError> {
    u32::try_from(size)
        .ok()
        .filter(|&s| s > 0 && s <= MAX_METADATA_SIZE)
        .ok_or(MetadataError::Size(size))
}

/// How many pieces metadata of `size` bytes has.
pub fn piece_count(size: u32) -> u32 {
    (size as usize).div_ceil(PIECE_SIZE) as u32
}

/// The length of piece `piece` of metadata of `size` bytes, `None` past the end.
pub fn piece_len(size: u32, piece: u32) -> Option<usize> {
    let start = (piece as usize).checked_mul(PIECE_SIZE)?;
    let size = size as usize;
    (start < size).then(|| (size - start).min(PIECE_SIZE))
}

/// The answer to a peer's request for `piece` of our info dictionary `info`: the piece as a
/// `data` message, or a `reject` when there is no such piece.
pub fn serve(info: &[u8], piece: u32) -> MetadataMsg<'_> {
    let total_size = u32::try_from(info.len())
        .ok()
        .filter(|&s| s > 0 && s <= MAX_METADATA_SIZE);
    let start = (piece as usize).saturating_mul(PIECE_SIZE);
    match (total_size, info.get(start..)) {
        (Some(total_size), Some(rest)) if !rest.is_empty() => MetadataMsg::Data {
            piece,
            total_size,
            data: rest.get(..PIECE_SIZE.min(rest.len())).unwrap_or(rest),
        },
        _ => MetadataMsg::Reject { piece },
    }
}

/// Tuning of a [`MetadataFetch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchConfig {
    /// How long a request may stay unanswered before the piece is asked of another peer.
    pub request_timeout: Duration,
    /// Requests outstanding per peer.
    pub per_peer: usize,
    /// Peers tracked at most (more are refused by `add_peer`).
    pub max_peers: usize,
}

impl Default for FetchConfig {
    fn default() -> FetchConfig {
        FetchConfig {
            request_timeout: Duration::from_secs(10),
            per_peer: 2,
            max_peers: 64,
        }
    }
}

/// Why a peer should be disconnected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadReason {
    /// A `data` message whose `total_size` differs from the peer's `metadata_size`.
    SizeMismatch,
    /// A piece index past the end of the metadata.
    NoSuchPiece,
    /// A piece of the wrong length.
    WrongLength,
    /// A message that is not valid `ut_metadata`.
    Malformed,
}

/// What a [`MetadataFetch`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchEvent<P> {
    /// Disconnect `peer`: it sent something a correct peer never sends. It is removed.
    BadPeer {
        /// The peer.
        peer: P,
        /// What it did.
        reason: BadReason,
    },
    /// The assembled metadata did not hash to the info-hash. Everything was discarded; these
    /// peers (every one that sent a piece of it) are removed, and the fetch goes on with the
    /// others.
    HashMismatch {
        /// The peers that contributed, in order.
        peers: Vec<P>,
    },
    /// The verified info dictionary. The fetch is finished.
    Complete(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot<P> {
    Missing,
    Requested { peer: P, deadline: Instant },
    Have,
}

#[derive(Debug)]
struct PeerState {
    size: u32,
    /// Pieces this peer rejected or let time out in the current attempt: not asked again.
    avoid: BTreeSet<u32>,
}

#[derive(Debug)]
struct Attempt<P> {
    size: u32,
    slots: Vec<Slot<P>>,
    buf: Vec<u8>,
    contributors: Vec<P>,
}

/// Fetches one torrent's metadata from several peers (see the module docs for the run loop).
#[derive(Debug)]
pub struct MetadataFetch<P> {
    info_hash: InfoHash,
    cfg: FetchConfig,
    /// Peers offering the metadata; an ordered map: peer-chosen keys cannot flood it into hash collisions (O(log n) whatever the keys).
    peers: BTreeMap<P, PeerState>,
    attempt: Option<Attempt<P>>,
    events: VecDeque<FetchEvent<P>>,
    /// When pieces every peer refused are asked again.
    retry_at: Option<Instant>,
    done: bool,
}

impl<P: Copy + Ord + Debug> MetadataFetch<P> {
    /// A fetch for the torrent `info_hash`.
    pub fn new(info_hash: InfoHash, cfg: FetchConfig) -> MetadataFetch<P> {
        MetadataFetch {
            info_hash,
            cfg,
            peers: BTreeMap::new(),
            attempt: None,
            events: VecDeque::new(),
            retry_at: None,
            done: false,
        }
    }

    /// Adds a peer that announced `metadata_size` (its extension handshake's value). A size of
    /// 0 or above 8 MiB is an error (do not ask that peer); so is a full peer table.
    pub fn add_peer(&mut self, peer: P, metadata_size: i64) -> Result<(), MetadataError> {
        let size = check_size(metadata_size)?;
        if self.done {
            return Ok(());
        }
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.cfg.max_peers {
            return Err(MetadataError::Field("too many peers"));
        }
        self.release(peer);
        self.peers.insert(
            peer,
            PeerState {
                size,
                avoid: BTreeSet::new(),
            },
        );
        if self.attempt.is_none() {
            self.start_attempt();
        }
        Ok(())
    }

    /// Forgets a peer; its outstanding requests go to others.
    pub fn remove_peer(&mut self, peer: P) {
        self.release(peer);
        self.peers.remove(&peer);
        if self.attempt.as_ref().is_some_and(|a| {
            a.contributors.is_empty() && !self.peers.values().any(|p| p.size == a.size)
        }) {
            // Nobody left who agrees with this attempt's size, and nothing received yet.
            self.start_attempt();
        }
    }

    /// Whether the metadata has been fetched and verified.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Pieces received and the number of pieces in the current attempt (`(0, 0)` before any
    /// peer told a size).
    pub fn progress(&self) -> (usize, usize) {
        self.attempt.as_ref().map_or((0, 0), |a| {
            let have = a.slots.iter().filter(|s| matches!(s, Slot::Have)).count();
            (have, a.slots.len())
        })
    }

    /// The next request to send: ask `peer` for piece `piece`. Call until `None`.
    pub fn poll_request(&mut self, now: Instant) -> Option<(P, u32)> {
        if self.done {
            return None;
        }
        let deadline = now.saturating_add(self.cfg.request_timeout);
        let a = self.attempt.as_mut()?;
        let mut load: BTreeMap<P, usize> = BTreeMap::new();
        for s in &a.slots {
            if let Slot::Requested { peer, .. } = s {
                *load.entry(*peer).or_default() += 1;
            }
        }
        for (i, slot) in a.slots.iter_mut().enumerate() {
            if !matches!(slot, Slot::Missing) {
                continue;
            }
            let piece = i as u32;
            let best = self
                .peers
                .iter()
                .filter(|(_, st)| st.size == a.size && !st.avoid.contains(&piece))
                .map(|(p, _)| (load.get(p).copied().unwrap_or(0), *p))
                .filter(|&(l, _)| l < self.cfg.per_peer)
                .min();
            if let Some((_, peer)) = best {
                *slot = Slot::Requested { peer, deadline };
                return Some((peer, piece));
            }
        }
        None
    }

    /// Handles a `ut_metadata` payload from `peer`. Requests are ignored here (answer them
    /// with [`serve`]); so are messages with an unknown `msg_type`, as BEP 9 asks.
    pub fn handle_message(&mut self, now: Instant, peer: P, payload: &[u8]) {
        match MetadataMsg::decode(payload) {
            Ok(MetadataMsg::Data {
                piece,
                total_size,
                data,
            }) => self.on_data(now, peer, piece, total_size, data),
            Ok(MetadataMsg::Reject { piece }) => self.on_reject(now, peer, piece),
            Ok(MetadataMsg::Request { .. }) => {}
            Err(e) if e.is_ignorable() => {}
            Err(_) => {
                if self.peers.contains_key(&peer) {
                    self.bad(peer, BadReason::Malformed);
                }
            }
        }
    }

    /// Handles a decoded `data` message.
    pub fn on_data(&mut self, _now: Instant, peer: P, piece: u32, total_size: u32, data: &[u8]) {
        if self.done {
            return;
        }
        let Some(st) = self.peers.get(&peer) else {
            return; // not (or no longer) a peer we ask
        };
        if st.size != total_size {
            return self.bad(peer, BadReason::SizeMismatch);
        }
        let Some(a) = self.attempt.as_mut().filter(|a| a.size == total_size) else {
            return; // a size we are not fetching now: nothing to do with it
        };
        let Some(want) = piece_len(a.size, piece) else {
            return self.bad(peer, BadReason::NoSuchPiece);
        };
        if data.len() != want {
            return self.bad(peer, BadReason::WrongLength);
        }
        let Some(slot) = a.slots.get_mut(piece as usize) else {
            return self.bad(peer, BadReason::NoSuchPiece);
        };
        if matches!(slot, Slot::Have) {
            return; // a duplicate (late answer after a timeout)
        }
        *slot = Slot::Have;
        let start = piece as usize * PIECE_SIZE;
        if let Some(dst) = a.buf.get_mut(start..start + want) {
            dst.copy_from_slice(data);
        }
        if !a.contributors.contains(&peer) {
            a.contributors.push(peer);
        }
        if a.slots.iter().all(|s| matches!(s, Slot::Have)) {
            self.finish();
        }
    }

    /// Handles a `reject`: that peer is not asked for that piece again in this attempt (when
    /// every peer has refused it, everyone is asked again after the request timeout).
    pub fn on_reject(&mut self, now: Instant, peer: P, piece: u32) {
        if let Some(st) = self.peers.get_mut(&peer) {
            st.avoid.insert(piece);
        }
        if let Some(a) = self.attempt.as_mut() {
            if let Some(slot) = a.slots.get_mut(piece as usize) {
                if matches!(slot, Slot::Requested { peer: p, .. } if *p == peer) {
                    *slot = Slot::Missing;
                }
            }
        }
        if self.retry_at.is_none() {
            self.retry_at = Some(now.saturating_add(self.cfg.request_timeout));
        }
    }

    /// When [`MetadataFetch::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let a = self.attempt.as_ref()?;
        a.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Requested { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .chain(self.retry_at)
            .min()
    }

    /// Expires requests whose deadline has passed: the piece is asked of another peer (the
    /// slow peer is not asked for it again in this attempt, unless every peer refused it).
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(a) = self.attempt.as_mut() else {
            return;
        };
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
        }
        for (i, slot) in a.slots.iter_mut().enumerate() {
            if let Slot::Requested { peer, deadline } = *slot {
                if deadline <= now {
                    *slot = Slot::Missing;
                    if let Some(st) = self.peers.get_mut(&peer) {
                        st.avoid.insert(i as u32);
                    }
                }
            }
        }
        // A piece every peer timed out on or rejected is tried again with everyone.
        let stuck: Vec<u32> = (0..a.slots.len() as u32)
            .filter(|&i| {
                matches!(a.slots.get(i as usize), Some(Slot::Missing))
                    && self
                        .peers
                        .values()
                        .filter(|st| st.size == a.size)
                        .all(|st| st.avoid.contains(&i))
            })
            .collect();
        // (while `retry_at` is pending, they wait for it)
        if self.retry_at.is_none() {
            for st in self.peers.values_mut() {
                for i in &stuck {
                    st.avoid.remove(i);
                }
            }
        }
    }

    /// The next event (see [`FetchEvent`]).
    pub fn poll_event(&mut self) -> Option<FetchEvent<P>> {
        self.events.pop_front()
    }

    fn bad(&mut self, peer: P, reason: BadReason) {
        self.release(peer);
        if self.peers.remove(&peer).is_some() {
            self.push_event(FetchEvent::BadPeer { peer, reason });
        }
    }

    fn push_event(&mut self, e: FetchEvent<P>) {
        // Bounded: one event per peer removal plus one per attempt; drop the oldest if a
        // core never drains (it then misses only stale reports).
        if self.events.len() >= self.cfg.max_peers.saturating_mul(2).max(16) {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Frees `peer`'s outstanding requests.
    fn release(&mut self, peer: P) {
        if let Some(a) = self.attempt.as_mut() {
            for s in &mut a.slots {
                if matches!(s, Slot::Requested { peer: p, .. } if *p == peer) {
                    *s = Slot::Missing;
                }
            }
        }
    }

    fn finish(&mut self) {
        let Some(a) = self.attempt.take() else {
            return;
        };
        let hash: [u8; 20] = Sha1::digest(&a.buf).into();
        if hash == self.info_hash.0 {
            self.done = true;
            self.peers.clear();
            self.push_event(FetchEvent::Complete(a.buf));
            return;
        }
        for p in &a.contributors {
            self.peers.remove(p);
        }
        self.push_event(FetchEvent::HashMismatch {
            peers: a.contributors,
        });
        self.start_attempt();
    }

    /// Starts over with the size most remaining peers announced (ties: the smallest).
    fn start_attempt(&mut self) {
        let mut votes: BTreeMap<u32, usize> = BTreeMap::new();
        for st in self.peers.values_mut() {
            st.avoid.clear();
            *votes.entry(st.size).or_default() += 1;
        }
        let size = votes
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(s, _)| *s);
        self.attempt = size.map(|size| Attempt {
            size,
            slots: vec![Slot::Missing; piece_count(size) as usize],
            buf: vec![0; size as usize],
            contributors: Vec::new(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_lengths_cover_the_size_exactly() {
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(16384), 1);
        assert_eq!(piece_count(16385), 2);
        assert_eq!(piece_len(16385, 1), Some(1));
        assert_eq!(piece_len(16385, 2), None);
        assert_eq!(piece_count(MAX_METADATA_SIZE), 512);
    }
}
