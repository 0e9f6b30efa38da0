//! The client-to-client data-port exchange (napster.txt §5), as byte-level codecs.
//!
//! Normal download: the downloader connects to the holder's data port; the holder sends one
//! ASCII `1`; the downloader sends `GET`, then `<mynick> "<filename>" <offset>`; the holder
//! answers with the file size in ASCII digits (no terminator) and streams the bytes from
//! `offset`, or answers an error text such as `FILE NOT SHARED`.
//!
//! Firewalled (push) direction: the holder connects to the downloader's data port; the
//! downloader sends `1`; the holder sends `SEND`, then `<mynick> "<filename>" <size>`; the
//! downloader answers the offset in ASCII digits and the holder streams from there.
//!
//! Direct browse (§5.3): the browser connects to the browsee's data port, reads `1` and
//! sends `GETLIST`; the browsee answers `<nick>\n`, then one line per file in the fields of
//! a share (100) message, each ended by `\n`, then an empty line, and closes. A firewalled
//! browsee connects to the browser's data port instead, reads `1` and sends
//! `SENDLIST <nick>\n` followed by the same lines.
//!
//! The request lines carry no terminator: a request is complete when its last number has
//! been read. The parsers here return `Ok(None)` until a number is present and leave the
//! choice of waiting for more digits to the driver (ours writes each line in one write and
//! reads it with one read, as the classic clients do).

/// The byte a data port sends first.
pub const HELLO: u8 = b'1';
/// Longest request line accepted (nick, quoted name and a number).
pub const MAX_LINE: usize = 1024;

/// What a transfer parser refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The first bytes are not `GET` / `SEND` / `1`.
    #[error("unexpected greeting")]
    BadGreeting,
    /// The request line does not parse.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The request line is longer than [`MAX_LINE`].
    #[error("request longer than {MAX_LINE} bytes")]
    TooLong,
    /// The peer answered an error text instead of a number.
    #[error("peer refused: {0}")]
    Refused(String),
    /// A number does not fit in 64 bits.
    #[error("number out of range")]
    Overflow,
}

/// A request line: `<nick> "<filename>" <number>` (offset for `GET`, size for `SEND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The sender's nick.
    pub nick: String,
    /// The file.
    pub file: String,
    /// The offset (`GET`) or the file size (`SEND`).
    pub number: u64,
}

impl Request {
    /// The line as sent (without the `GET`/`SEND` command); `None` if a field cannot be
    /// carried (a space or quote in the nick, a quote in the name) or the line would be
    /// longer than [`MAX_LINE`] (a Latin-1 name grows when sent as UTF-8).
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.nick.is_empty() || self.nick.contains([' ', '"']) || self.file.contains('"') {
            return None;
        }
        let line = format!("{} \"{}\" {}", self.nick, self.file, self.number).into_bytes();
        (line.len() <= MAX_LINE).then_some(line)
    }

    /// Parses a request line from the front of `buf`: `Ok(None)` while incomplete,
    /// `Ok(Some((request, consumed)))` once the number has started. More digits may still
    /// be on the way; see the module documentation.
    pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, TransferError> {
        let nick_end = match buf.iter().position(|&b| b == b' ') {
            Some(i) => i,
            None if buf.len() > MAX_LINE => return Err(TransferError::TooLong),
            None => return Ok(None),
        };
        if nick_end == 0 {
            return Err(TransferError::Malformed("empty nick"));
        }
        let rest = &buf[nick_end + 1..];
        let Some(body) = rest.strip_prefix(b"\"") else {
            return if rest.is_empty() {
                Ok(None)
            } else {
                Err(TransferError::Malformed("file name not quoted"))
            };
        };
        // The name ends at the first quote followed by a space.
        let Some(close) = body.windows(2).position(|w| w == b"\" ") else {
            return if buf.len() > MAX_LINE {
                Err(TransferError::TooLong)
            } else {
                Ok(None)
            };
        };
        let after = &body[close + 2..];
        let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return if after.is_empty() {
                Ok(None)
            } else {
                Err(TransferError::Malformed("number expected"))
            };
        }
        let consumed = nick_end + 2 + close + 2 + digits;
        if consumed > MAX_LINE {
            return Err(TransferError::TooLong);
        }
        let text = |b: &[u8]| crate::wire::payload_text(b).into_owned();
        Ok(Some((
            Request {
                nick: text(&buf[..nick_end]),
                file: text(&body[..close]),
                number: parse_u64(&after[..digits])?,
            },
            consumed,
        )))
    }
}

fn parse_u64(d: &[u8]) -> Result<u64, TransferError> {
    let mut v: u64 = 0;
    for &b in d {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(TransferError::Overflow)?;
    }
    Ok(v)
}

/// Which command opened a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `GET`: a downloader wants a file from us.
    Get,
    /// `SEND`: a firewalled holder pushes a file to us.
    Send,
    /// `GETLIST`: a direct browse; we answer our list.
    GetList,
    /// `SENDLIST `: a firewalled browsee pushes its list to us (its nick line follows).
    SendList,
}

/// Reads the command word at the front of `buf`: `Ok(None)` while it could still become
/// one, `Ok(Some((command, consumed)))` once known.
pub fn parse_command(buf: &[u8]) -> Result<Option<(Command, usize)>, TransferError> {
    // `GET` is a prefix of `GETLIST`, and a nick may start with `L`: decide once the bytes
    // can no longer become `GETLIST`.
    if buf.starts_with(b"GETLIST") {
        return Ok(Some((Command::GetList, 7)));
    }
    // `SEND` is a prefix of `SENDLIST ` too: decide once the bytes can no longer become it.
    if buf.starts_with(b"SENDLIST ") {
        return Ok(Some((Command::SendList, 9)));
    }
    if b"GETLIST".starts_with(buf) || b"SENDLIST ".starts_with(buf) {
        return Ok(None);
    }
    if buf.starts_with(b"SEND") {
        return Ok(Some((Command::Send, 4)));
    }
    if buf.starts_with(b"GET") {
        return Ok(Some((Command::Get, 3)));
    }
    Err(TransferError::BadGreeting)
}

/// Longest line of a direct-browse list (a nick, or a file's share fields).
pub const MAX_LIST_LINE: usize = 2048;

/// Takes one `\n`-terminated line of a direct-browse list from the front of `buf`:
/// `Ok(None)` while incomplete, `Ok(Some((line, consumed)))` with the line without its
/// `\n` (and without a `\r` before it), an error past [`MAX_LIST_LINE`].
pub fn parse_list_line(buf: &[u8]) -> Result<Option<(String, usize)>, TransferError> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(i) if i > MAX_LIST_LINE => Err(TransferError::TooLong),
        Some(i) => {
            let line = buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]);
            Ok(Some((crate::wire::payload_text(line).into_owned(), i + 1)))
        }
        None if buf.len() > MAX_LIST_LINE => Err(TransferError::TooLong),
        None => Ok(None),
    }
}

/// Our answer to `GETLIST` (and what follows `SENDLIST `): our nick line, one line per
/// file, the closing empty line. Files whose fields cannot be carried are left out.
pub fn encode_list(nick: &str, files: &[crate::wire::FileInfo]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * (files.len() + 1));
    out.extend_from_slice(nick.as_bytes());
    out.push(b'\n');
    for f in files {
        if let Ok(line) = f.share_fields() {
            out.extend_from_slice(&line);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    out
}

/// Reads a bare ASCII number at the front of `buf` (the size a holder answers, the offset a
/// downloader answers): `Ok(None)` while no digit has arrived, an error carrying the text
/// when the peer answered a message instead.
///
/// When the number is immediately followed by file data that may start with digits, pass
/// `expect_digits` (the length of the number the caller expects, known from the search
/// result): exactly that many digits are taken.
pub fn parse_number(
    buf: &[u8],
    expect_digits: Option<usize>,
) -> Result<Option<(u64, usize)>, TransferError> {
    if let Some(&b) = buf.first() {
        if !b.is_ascii_digit() {
            let end = buf.len().min(256);
            return Err(TransferError::Refused(
                crate::wire::payload_text(&buf[..end]).trim().to_string(),
            ));
        }
    } else {
        return Ok(None);
    }
    let n = match expect_digits {
        Some(n) => {
            if buf.len() < n {
                return Ok(None);
            }
            if !buf[..n].iter().all(u8::is_ascii_digit) {
                return Err(TransferError::Malformed("size digits"));
            }
            n
        }
        None => buf.iter().take_while(|b| b.is_ascii_digit()).count(),
    };
    if n > 20 {
        return Err(TransferError::Overflow);
    }
    Ok(Some((parse_u64(&buf[..n])?, n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_latin1_request_that_grows_past_the_limit_is_not_encoded() {
        // 600 Latin-1 bytes parse (one char each) but are 1 200 bytes as UTF-8: sending
        // that line back would exceed MAX_LINE, so encode refuses it.
        let mut line = b"nick \"".to_vec();
        line.extend(std::iter::repeat_n(0xb5u8, 600));
        line.extend_from_slice(b"\" 0");
        let (req, _) = Request::parse(&line).unwrap().unwrap();
        assert_eq!(req.file.chars().count(), 600);
        assert_eq!(req.encode(), None);
    }

    #[test]
    fn get_request_golden_bytes() {
        let r = Request {
            nick: "mred".into(),
            file: "C:\\Music\\generic cowboy song.mp3".into(),
            number: 4096,
        };
        let b = r.encode().unwrap();
        assert_eq!(
            b,
            b"mred \"C:\\Music\\generic cowboy song.mp3\" 4096".to_vec()
        );
        assert_eq!(Request::parse(&b).unwrap(), Some((r, b.len())));
    }

    #[test]
    fn partial_request_lines_wait_for_more() {
        let full = b"lefty \"a b.mp3\" 12";
        for cut in 0..full.len() - 2 {
            assert_eq!(Request::parse(&full[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(Request::parse(full).unwrap().is_some());
    }

    #[test]
    fn command_words_are_recognised_across_splits() {
        assert_eq!(parse_command(b"G").unwrap(), None);
        assert_eq!(parse_command(b"GET").unwrap(), None);
        assert_eq!(parse_command(b"GETx").unwrap(), Some((Command::Get, 3)));
        assert_eq!(parse_command(b"GETL").unwrap(), None);
        assert_eq!(
            parse_command(b"GETLIST").unwrap(),
            Some((Command::GetList, 7))
        );
        assert_eq!(parse_command(b"SEND").unwrap(), None);
        assert_eq!(parse_command(b"SENDx").unwrap(), Some((Command::Send, 4)));
        assert_eq!(parse_command(b"SENDLIS").unwrap(), None);
        assert_eq!(
            parse_command(b"SENDLIST bob\n").unwrap(),
            Some((Command::SendList, 9))
        );
        // A push from a nick starting with "LIST" is still a push.
        assert_eq!(
            parse_command(b"SENDLISTER").unwrap(),
            Some((Command::Send, 4))
        );
        assert_eq!(parse_command(b"PUT"), Err(TransferError::BadGreeting));
    }

    #[test]
    fn size_followed_by_digit_data_is_split_by_expected_length() {
        assert_eq!(parse_number(b"1234567", Some(4)).unwrap(), Some((1234, 4)));
        assert_eq!(parse_number(b"12", Some(4)).unwrap(), None);
        assert_eq!(parse_number(b"77\xff\xfb", None).unwrap(), Some((77, 2)));
        assert_eq!(
            parse_number(b"FILE NOT SHARED", None),
            Err(TransferError::Refused("FILE NOT SHARED".into()))
        );
        assert_eq!(
            parse_number(b"99999999999999999999999", None),
            Err(TransferError::Overflow)
        );
    }

    #[test]
    fn a_list_encodes_as_nick_line_file_lines_and_an_empty_line() {
        let f = crate::wire::FileInfo {
            name: "dir/a b.mp3".into(),
            md5: "00112233445566778899aabbccddeeff".into(),
            size: 1234,
            bitrate: 128,
            freq: 44100,
            secs: 60,
        };
        let b = encode_list("alice", std::slice::from_ref(&f));
        assert_eq!(
            b,
            b"alice\n\"dir/a b.mp3\" 00112233445566778899aabbccddeeff 1234 128 44100 60\n\n"
                .to_vec()
        );
        let (nick, used) = parse_list_line(&b).unwrap().unwrap();
        assert_eq!((nick.as_str(), used), ("alice", 6));
        let (line, n) = parse_list_line(&b[used..]).unwrap().unwrap();
        assert_eq!(crate::wire::FileInfo::parse_share_fields(&line).unwrap(), f);
        assert_eq!(
            parse_list_line(&b[used + n..]).unwrap(),
            Some((String::new(), 1))
        );
        assert_eq!(parse_list_line(b"no end yet").unwrap(), None);
        assert_eq!(
            parse_list_line(&vec![b'x'; MAX_LIST_LINE + 1]),
            Err(TransferError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_transfer_parsers(b in proptest::collection::vec(any::<u8>(), 0..2048), n in proptest::option::of(0usize..30)) {
            let _ = Request::parse(&b);
            let _ = parse_command(&b);
            let _ = parse_number(&b, n);
            let _ = parse_list_line(&b);
        }

        #[test]
        fn request_lines_round_trip(nick in "[A-Za-z0-9_]{1,16}", file in "[^\"\\x00]{0,64}", number in any::<u64>()) {
            let r = Request { nick, file, number };
            let b = r.encode().unwrap();
            let (got, used) = Request::parse(&b).unwrap().unwrap();
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(got, r);
        }
    }
}
