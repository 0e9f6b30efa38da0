//! Length-bounded framing for stream protocols.
//!
//! Stream transports deliver bytes in arbitrary pieces. A core appends them to its own
//! [`RecvBuf`] and takes whole frames out of it. Every limit is checked on the header, before
//! a byte of the payload is stored: a peer announcing a 4 GiB payload gets
//! [`FrameError::TooLarge`], never an allocation.
//!
//! ```
//! use servent_core::framing::{Endian, FrameSpec, RecvBuf};
//! // BitTorrent-style: 4-byte big-endian length, then the payload.
//! let spec = FrameSpec::length_prefixed(4, Endian::Big, 1 << 16);
//! let mut buf = RecvBuf::new(spec.max_frame_len());
//! buf.extend(&[0, 0, 0, 3, b'a', b'b']).unwrap();
//! assert!(buf.next_frame(&spec).unwrap().is_none()); // needs one more byte
//! buf.extend(b"c").unwrap();
//! let frame = buf.next_frame(&spec).unwrap().unwrap();
//! assert_eq!(frame.payload, b"abc");
//! ```

/// Byte order of a length field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// Most significant byte first (network order).
    Big,
    /// Least significant byte first.
    Little,
}

/// Where a frame's payload length sits in its fixed-size header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSpec {
    /// Bytes of header before the payload.
    pub header_len: usize,
    /// Offset of the length field inside the header.
    pub len_offset: usize,
    /// Width of the length field: 1, 2, 4 or 8 bytes.
    pub len_width: usize,
    /// Byte order of the length field.
    pub endian: Endian,
    /// Largest payload accepted.
    pub max_payload: usize,
}

impl FrameSpec {
    /// A frame that is just a `width`-byte length followed by the payload.
    pub const fn length_prefixed(width: usize, endian: Endian, max_payload: usize) -> FrameSpec {
        FrameSpec {
            header_len: width,
            len_offset: 0,
            len_width: width,
            endian,
            max_payload,
        }
    }

    /// Largest whole frame (header and payload).
    pub const fn max_frame_len(&self) -> usize {
        self.header_len + self.max_payload
    }

    /// Reads the announced payload length from a complete header.
    pub fn payload_len(&self, header: &[u8]) -> Result<usize, FrameError> {
        if self.len_width > 8 {
            return Err(FrameError::BadSpec);
        }
        let field = header
            .get(self.len_offset..self.len_offset + self.len_width)
            .ok_or(FrameError::BadSpec)?;
        let mut v: u64 = 0;
        match self.endian {
            Endian::Big => {
                for &b in field {
                    v = (v << 8) | u64::from(b);
                }
            }
            Endian::Little => {
                for &b in field.iter().rev() {
                    v = (v << 8) | u64::from(b);
                }
            }
        }
        if v > self.max_payload as u64 {
            return Err(FrameError::TooLarge {
                announced: v,
                max: self.max_payload,
            });
        }
        Ok(v as usize)
    }

    /// Splits one frame off the front of `buf`: `Ok(None)` when more bytes are needed.
    pub fn split<'a>(&self, buf: &'a [u8]) -> Result<Option<Frame<'a>>, FrameError> {
        if buf.len() < self.header_len {
            return Ok(None);
        }
        let (header, rest) = buf.split_at(self.header_len);
        let n = self.payload_len(header)?;
        if rest.len() < n {
            return Ok(None);
        }
        Ok(Some(Frame {
            header,
            payload: &rest[..n],
        }))
    }
}

/// One frame, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The fixed-size header.
    pub header: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Header plus payload length: how many bytes this frame took from the stream.
    pub fn len(&self) -> usize {
        self.header.len() + self.payload.len()
    }

    /// Whether the frame is empty (no header, no payload).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a stream could not be framed. Each of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The header announced more payload than the limit.
    #[error("peer announced a {announced}-byte payload, the limit is {max}")]
    TooLarge {
        /// Announced length.
        announced: u64,
        /// The limit.
        max: usize,
    },
    /// More unframed bytes arrived than the buffer holds.
    #[error("receive buffer full: more than {0} bytes without a complete message")]
    BufferFull(usize),
    /// A delimiter was not found within the limit (an over-long line or header block).
    #[error("no delimiter within {0} bytes")]
    NoDelimiter(usize),
    /// The frame spec is inconsistent (a bug in the caller).
    #[error("inconsistent frame spec")]
    BadSpec,
}

/// A bounded receive buffer for one connection: bytes in, frames out.
#[derive(Debug, Clone)]
pub struct RecvBuf {
    buf: Vec<u8>,
    start: usize,
    cap: usize,
}

impl RecvBuf {
    /// A buffer that never holds more than `cap` unconsumed bytes.
    pub fn new(cap: usize) -> RecvBuf {
        RecvBuf {
            buf: Vec::new(),
            start: 0,
            cap,
        }
    }

    /// Unconsumed bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Number of unconsumed bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether no unconsumed bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most unconsumed bytes this buffer holds.
    pub fn capacity_limit(&self) -> usize {
        self.cap
    }

    /// Changes the limit (e.g. after a handshake, when frames may be larger than lines).
    pub fn set_capacity_limit(&mut self, cap: usize) {
        self.cap = cap;
    }

    /// Appends received bytes; fails without storing them when the limit would be passed.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), FrameError> {
        if self.len() + data.len() > self.cap {
            return Err(FrameError::BufferFull(self.cap));
        }
        if self.start > 0
            && (self.start >= self.buf.len() / 2
                || self.buf.len() + data.len() > self.buf.capacity())
        {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Drops `n` bytes from the front (at most what is held).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Takes the next whole frame: `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self, spec: &FrameSpec) -> Result<Option<Frame<'_>>, FrameError> {
        let start = self.start;
        let Some(n) = spec.split(&self.buf[start..])?.map(|f| f.len()) else {
            return Ok(None);
        };
        self.start += n;
        let (header, payload) = self.buf[start..start + n].split_at(spec.header_len);
        Ok(Some(Frame { header, payload }))
    }

    /// Takes everything up to and including `delim` (an HTTP header block, a handshake line),
    /// if it appears within the first `max` bytes; an error when `max` bytes hold no `delim`.
    pub fn take_until(&mut self, delim: &[u8], max: usize) -> Result<Option<&[u8]>, FrameError> {
        let hay = &self.buf[self.start..];
        let window = &hay[..hay.len().min(max)];
        match find(window, delim) {
            Some(pos) => {
                let s = self.start;
                let end = s + pos + delim.len();
                self.start = end;
                Ok(Some(&self.buf[s..end]))
            }
            None if hay.len() >= max => Err(FrameError::NoDelimiter(max)),
            None => Ok(None),
        }
    }

    /// Takes up to `n` bytes (a body being streamed); may return fewer, or none.
    pub fn take_upto(&mut self, n: usize) -> &[u8] {
        let s = self.start;
        let end = s + n.min(self.len());
        self.start = end;
        &self.buf[s..end]
    }
}

/// Position of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Gnutella's header: 23 bytes, length little-endian at offset 19.
    const GNUTELLA: FrameSpec = FrameSpec {
        header_len: 23,
        len_offset: 19,
        len_width: 4,
        endian: Endian::Little,
        max_payload: 64 * 1024,
    };

    #[test]
    fn a_4_gib_announcement_is_refused_before_allocating() {
        let spec = FrameSpec::length_prefixed(4, Endian::Big, 1 << 20);
        let mut buf = RecvBuf::new(spec.max_frame_len());
        buf.extend(&[0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(
            buf.next_frame(&spec),
            Err(FrameError::TooLarge {
                announced: 0xffff_ffff,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn little_endian_header_with_offset() {
        let mut msg = vec![0u8; 23];
        msg[19..23].copy_from_slice(&3u32.to_le_bytes());
        msg.extend_from_slice(b"xyz");
        msg.extend_from_slice(&[9; 5]); // start of the next frame
        let f = GNUTELLA.split(&msg).unwrap().unwrap();
        assert_eq!(f.payload, b"xyz");
        assert_eq!(f.len(), 26);
    }

    #[test]
    fn buffer_limit_holds() {
        let mut buf = RecvBuf::new(8);
        buf.extend(b"12345678").unwrap();
        assert_eq!(buf.extend(b"9"), Err(FrameError::BufferFull(8)));
        buf.consume(4);
        buf.extend(b"9abc").unwrap();
        assert_eq!(buf.as_slice(), b"56789abc");
    }

    #[test]
    fn lines_are_taken_within_a_limit() {
        let mut buf = RecvBuf::new(1024);
        buf.extend(b"GNUTELLA CONNECT/0.4\n\nrest").unwrap();
        assert_eq!(
            buf.take_until(b"\n\n", 64).unwrap(),
            Some(&b"GNUTELLA CONNECT/0.4\n\n"[..])
        );
        assert_eq!(buf.as_slice(), b"rest");
        assert_eq!(buf.take_until(b"\n\n", 64).unwrap(), None);
        assert_eq!(buf.take_until(b"\n\n", 3), Err(FrameError::NoDelimiter(3)));
        assert_eq!(buf.take_upto(2), b"re");
        assert_eq!(buf.take_upto(10), b"st");
        assert!(buf.is_empty());
    }

    proptest! {
        #[test]
        fn arbitrary_streams_frame_or_fail_cleanly(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..32),
            width in prop::sample::select(vec![1usize, 2, 4, 8]),
            big in any::<bool>(),
            max in 0usize..200,
        ) {
            let spec = FrameSpec::length_prefixed(width, if big { Endian::Big } else { Endian::Little }, max);
            let mut buf = RecvBuf::new(spec.max_frame_len());
            'outer: for c in chunks {
                if buf.extend(&c).is_err() { break; }
                loop {
                    match buf.next_frame(&spec) {
                        Ok(Some(f)) => prop_assert!(f.payload.len() <= max),
                        Ok(None) => break,
                        Err(FrameError::TooLarge { announced, .. }) => {
                            prop_assert!(announced > max as u64);
                            break 'outer;
                        }
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                prop_assert!(buf.len() <= spec.max_frame_len());
            }
        }

        #[test]
        fn frames_survive_any_split(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..10), cut in any::<prop::sample::Index>()) {
            let spec = FrameSpec::length_prefixed(2, Endian::Little, 100);
            let mut stream = Vec::new();
            for p in &payloads {
                stream.extend_from_slice(&(p.len() as u16).to_le_bytes());
                stream.extend_from_slice(p);
            }
            let at = cut.index(stream.len() + 1);
            let mut buf = RecvBuf::new(4096);
            let mut got = Vec::new();
            for part in [&stream[..at], &stream[at..]] {
                buf.extend(part).unwrap();
                while let Some(f) = buf.next_frame(&spec).unwrap() { got.push(f.payload.to_vec()); }
            }
            prop_assert_eq!(got, payloads);
        }
    }
}
