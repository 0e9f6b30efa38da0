//! HUGE's `urn:sha1:` names: the base32 (RFC 4648, no padding) of a file's SHA-1.

/// RFC 4648 base32 (uppercase, no padding) of `bytes`.
pub fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// `urn:sha1:` and the base32 of a SHA-1 (32 characters).
pub fn sha1_urn(h: &[u8; 20]) -> String {
    format!("urn:sha1:{}", base32(h))
}

/// The SHA-1 named by `urn:sha1:<32 base32 characters>` (prefix and letters in any case);
/// `None` for anything else.
pub fn parse_sha1_urn(s: &str) -> Option<[u8; 20]> {
    let prefix = s.get(..9)?;
    if !prefix.eq_ignore_ascii_case("urn:sha1:") {
        return None;
    }
    let b32 = s.get(9..)?;
    if b32.len() != 32 {
        return None;
    }
    let upper = b32.to_ascii_uppercase();
    let bytes = data_encoding::BASE32_NOPAD.decode(upper.as_bytes()).ok()?;
    bytes.try_into().ok()
}
