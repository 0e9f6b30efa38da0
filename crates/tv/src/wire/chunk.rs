//! Signed chunks: a run of whole TS packets with the channel's key, a sequence number, the
//! source's wall-clock timestamp, flags, and an ed25519 signature over all of it. The
//! channel id *is* the public key, so a chunk verifies against the channel it claims to be
//! in and no peer can inject or alter video.
//!
//! ```text
//! channel [32] | seq u64 | timestamp_us u64 | flags u8 | payload_len u32 | payload | signature [64]
//! ```
//! The signature covers `b"servent-tv chunk 1\0"` followed by everything before it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use super::ts::TS_PACKET;
use super::{Reader, WireError};

/// The channel id: an ed25519 public key.
pub type ChannelId = [u8; 32];
/// Most payload bytes in one chunk (1394 TS packets, about 1.2 s of a 1.7 Mbit/s stream).
pub const MAX_PAYLOAD: usize = 1394 * TS_PACKET;
/// Bytes around the payload.
pub const CHUNK_OVERHEAD: usize = 32 + 8 + 8 + 1 + 4 + 64;
const DOMAIN: &[u8] = b"servent-tv chunk 1\0";
const FLAG_KEY: u8 = 1;
const FLAG_END: u8 = 2;

/// One chunk of a channel.
#[derive(Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The channel (public key) it belongs to.
    pub channel: ChannelId,
    /// Its number, from 0, one more for each chunk.
    pub seq: u64,
    /// The source's wall clock when it was cut, µs since the Unix epoch.
    pub timestamp_us: u64,
    /// It starts at a random access point (a decoder can start here).
    pub keyframe: bool,
    /// The last chunk of the broadcast.
    pub end: bool,
    /// Whole TS packets.
    pub payload: Vec<u8>,
    /// ed25519 over the domain and all the fields above.
    pub signature: [u8; 64],
}

impl std::fmt::Debug for Chunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunk")
            .field("seq", &self.seq)
            .field("timestamp_us", &self.timestamp_us)
            .field("keyframe", &self.keyframe)
            .field("end", &self.end)
            .field("payload", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// Why a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkError {
    /// It could not be decoded.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The payload is not a whole number of TS packets.
    #[error("chunk payload of {0} bytes is not whole TS packets")]
    NotPackets(usize),
    /// It claims another channel.
    #[error("chunk of another channel")]
    WrongChannel,
    /// The signature does not verify against the channel key.
    #[error("chunk {0} has a bad signature")]
    BadSignature(u64),
}

impl Chunk {
    fn flags(&self) -> u8 {
        (if self.keyframe { FLAG_KEY } else { 0 }) | (if self.end { FLAG_END } else { 0 })
    }

    fn write_unsigned(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.channel);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.push(self.flags());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + CHUNK_OVERHEAD + self.payload.len());
        m.extend_from_slice(DOMAIN);
        self.write_unsigned(&mut m);
        m
    }

    /// A signed chunk of the channel whose secret key is `key`.
    pub fn sign(
        key: &SigningKey,
        seq: u64,
        timestamp_us: u64,
        keyframe: bool,
        end: bool,
        payload: Vec<u8>,
    ) -> Chunk {
        let mut c = Chunk {
            channel: key.verifying_key().to_bytes(),
            seq,
            timestamp_us,
            keyframe,
            end,
            payload,
            signature: [0; 64],
        };
        c.signature = key.sign(&c.signed_bytes()).to_bytes();
        c
    }

    /// Checks that the chunk belongs to `channel` and that its signature verifies.
    pub fn verify(&self, channel: &ChannelId) -> Result<(), ChunkError> {
        if &self.channel != channel {
            return Err(ChunkError::WrongChannel);
        }
        let key =
            VerifyingKey::from_bytes(channel).map_err(|_| ChunkError::BadSignature(self.seq))?;
        key.verify(
            &self.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ChunkError::BadSignature(self.seq))
    }

    /// Appends the encoded chunk.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.write_unsigned(out);
        out.extend_from_slice(&self.signature);
    }

    /// Decodes a chunk (without checking its signature: see [`Chunk::verify`]).
    pub fn decode(b: &[u8]) -> Result<Chunk, ChunkError> {
        let mut r = Reader::new(b);
        let channel = r.array::<32>()?;
        let seq = r.u64()?;
        let timestamp_us = r.u64()?;
        let flags = r.u8()?;
        let len = r.u32()? as usize;
        if len > MAX_PAYLOAD {
            return Err(WireError::TooLong {
                what: "chunk payload",
                len,
                max: MAX_PAYLOAD,
            }
            .into());
        }
        if len % TS_PACKET != 0 {
            return Err(ChunkError::NotPackets(len));
        }
        let payload = r.bytes(len)?.to_vec();
        let signature = r.array::<64>()?;
        r.finish()?;
        Ok(Chunk {
            channel,
            seq,
            timestamp_us,
            keyframe: flags & FLAG_KEY != 0,
            end: flags & FLAG_END != 0,
            payload,
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    #[test]
    fn a_signed_chunk_round_trips_and_verifies() {
        let k = key(1);
        let c = Chunk::sign(&k, 7, 99, true, false, vec![0x47; 2 * TS_PACKET]);
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(b.len(), CHUNK_OVERHEAD + 2 * TS_PACKET);
        let d = Chunk::decode(&b).unwrap();
        assert_eq!(d, c);
        d.verify(&k.verifying_key().to_bytes()).unwrap();
    }

    #[test]
    fn tampered_forged_and_foreign_chunks_are_refused() {
        let k = key(1);
        let ch = k.verifying_key().to_bytes();
        let mut c = Chunk::sign(&k, 7, 99, true, false, vec![0x47; TS_PACKET]);
        c.payload[100] ^= 1;
        assert_eq!(c.verify(&ch), Err(ChunkError::BadSignature(7)));
        // A forger signs with its own key but claims the channel.
        let mut f = Chunk::sign(&key(2), 7, 99, true, false, vec![0x47; TS_PACKET]);
        f.channel = ch;
        assert_eq!(f.verify(&ch), Err(ChunkError::BadSignature(7)));
        let other = Chunk::sign(&key(2), 7, 99, true, false, vec![]);
        assert_eq!(other.verify(&ch), Err(ChunkError::WrongChannel));
    }

    #[test]
    fn partial_packets_and_oversized_payloads_are_errors() {
        let c = Chunk::sign(&key(1), 1, 1, false, false, vec![0x47; 10]);
        let mut b = Vec::new();
        c.encode(&mut b);
        assert_eq!(Chunk::decode(&b), Err(ChunkError::NotPackets(10)));
        let mut b = vec![0; 49];
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Chunk::decode(&b),
            Err(ChunkError::Wire(WireError::TooLong { .. }))
        ));
    }
}
