//! Capability strings, as in Tahoe-LAFS: whoever holds one can do what it names, nobody
//! else can.
//!
//! - `sv1rw:<base32 of the 32-byte write secret>`: read, delete;
//! - `sv1ro:<base32 of the 32-byte read key>`: read only.
//!
//! The read key is derived from the write secret (one way), the storage index from the
//! read key (one way); see [`crate::core::keys`].

use data_encoding::BASE32_NOPAD;

use crate::core::keys;

const RW: &str = "sv1rw:";
const RO: &str = "sv1ro:";

/// A capability.
#[derive(Clone, PartialEq, Eq)]
pub enum Cap {
    /// Read and delete.
    ReadWrite {
        /// The write secret.
        write: [u8; 32],
    },
    /// Read only.
    ReadOnly {
        /// The read key.
        read: [u8; 32],
    },
}

impl std::fmt::Debug for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print secrets in logs
        let kind = match self {
            Cap::ReadWrite { .. } => "rw",
            Cap::ReadOnly { .. } => "ro",
        };
        write!(f, "Cap({kind}, si={})", hex::encode(self.storage_index()))
    }
}

/// A string that is not a capability.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapError {
    /// Neither prefix.
    #[error("not a capability (expected sv1rw:… or sv1ro:…)")]
    Prefix,
    /// Not base32 of 32 bytes.
    #[error("capability body is not base32 of 32 bytes")]
    Body,
}

impl Cap {
    /// The read key.
    pub fn read_key(&self) -> [u8; 32] {
        match self {
            Cap::ReadWrite { write } => keys::read_key(write),
            Cap::ReadOnly { read } => *read,
        }
    }
    /// The storage index: where the manifest lives.
    pub fn storage_index(&self) -> [u8; 32] {
        keys::storage_index(&self.read_key())
    }
    /// The read-only capability of this one.
    pub fn read_only(&self) -> Cap {
        Cap::ReadOnly {
            read: self.read_key(),
        }
    }
    /// The delete secret (read-write capabilities only).
    pub fn delete_secret(&self) -> Option<[u8; 32]> {
        match self {
            Cap::ReadWrite { write } => Some(keys::delete_secret(write)),
            Cap::ReadOnly { .. } => None,
        }
    }
    /// Parses `sv1rw:…` or `sv1ro:…` (surrounding whitespace ignored, base32 case-insensitive).
    pub fn parse(s: &str) -> Result<Cap, CapError> {
        let s = s.trim();
        let (rw, body) = if let Some(b) = s.strip_prefix(RW) {
            (true, b)
        } else if let Some(b) = s.strip_prefix(RO) {
            (false, b)
        } else {
            return Err(CapError::Prefix);
        };
        if body.len() > 64 {
            return Err(CapError::Body);
        }
        let raw = BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| CapError::Body)?;
        let key: [u8; 32] = raw.try_into().map_err(|_| CapError::Body)?;
        Ok(if rw {
            Cap::ReadWrite { write: key }
        } else {
            Cap::ReadOnly { read: key }
        })
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, k) = match self {
            Cap::ReadWrite { write } => (RW, write),
            Cap::ReadOnly { read } => (RO, read),
        };
        write!(f, "{p}{}", BASE32_NOPAD.encode(k).to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn caps_round_trip_and_read_only_cannot_delete() {
        let rw = Cap::ReadWrite { write: [7; 32] };
        let s = rw.to_string();
        assert!(s.starts_with("sv1rw:"));
        assert_eq!(Cap::parse(&s).unwrap(), rw);
        let ro = rw.read_only();
        assert_eq!(Cap::parse(&ro.to_string()).unwrap(), ro);
        assert_eq!(ro.storage_index(), rw.storage_index());
        assert!(ro.delete_secret().is_none());
        assert!(rw.delete_secret().is_some());
        assert_eq!(Cap::parse("http://x"), Err(CapError::Prefix));
        assert_eq!(Cap::parse("sv1ro:abc"), Err(CapError::Body));
        assert!(!format!("{rw:?}").contains(&s[6..]));
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_strings_never_panics(s in ".{0,120}") {
            let _ = Cap::parse(&s);
            let _ = Cap::parse(&format!("sv1rw:{s}"));
        }
    }
}
