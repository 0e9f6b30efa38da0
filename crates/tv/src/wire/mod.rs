//! Codecs: TS packets ([`ts`]), signed chunks ([`chunk`]), and the peer and tracker
//! messages ([`msg`]). Every decoder returns a typed error for malformed, truncated or
//! oversized input and never allocates more than its limits allow.

pub mod chunk;
pub mod msg;
pub mod ts;

/// What is wrong with bytes from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended early.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length is above its limit.
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLong {
        /// What.
        what: &'static str,
        /// How long.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes left over after a message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field that must be one of a few values is not.
    #[error("bad {0}")]
    Bad(&'static str),
}

/// A cursor over borrowed bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Truncated("field"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.b)
    }
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.b.len()))
        }
    }
}
