//! The OpenNap client–server wire format, byte for byte.
//!
//! Every message is a 4-byte header, the payload length and the message type, both 16-bit
//! little-endian, followed by an ASCII payload of exactly that length (no line terminator).
//! Fields are separated by one space; file names, client strings and compare operators are
//! double-quoted and never escaped (a quote ends a quoted field when a space or the end of the
//! payload follows it). IPv4 addresses travel as the decimal value of the address read as a
//! little-endian 32-bit number: 127.0.0.1 is `16777343`.
//!
//! The same type number can mean different things in the two directions (205 is a private
//! message either way but carries the recipient one way and the sender the other), so there
//! are two message enums: [`ClientMsg`] (client to server) and [`ServerMsg`] (server to
//! client). Each has `encode` (into a caller-owned buffer) and `decode(kind, payload)`.
//! Decoders never panic and never allocate more than the payload they were given.

mod client_msg;
mod server_msg;
pub mod transfer;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use servent_core::framing::{Endian, FrameSpec};

/// Bytes of header before each payload.
pub const HEADER_LEN: usize = 4;
/// The largest payload the 16-bit length field can announce.
pub const MAX_WIRE_PAYLOAD: usize = u16::MAX as usize;
/// The payload limit servers traditionally enforce (and ours by default).
pub const DEFAULT_MAX_PAYLOAD: usize = 2048;

/// The framing of the client–server stream with a payload limit of `max_payload` bytes.
pub const fn frame_spec(max_payload: usize) -> FrameSpec {
    FrameSpec {
        header_len: HEADER_LEN,
        len_offset: 0,
        len_width: 2,
        endian: Endian::Little,
        max_payload,
    }
}

/// Message type numbers used by this implementation.
pub mod kind {
    #![allow(missing_docs)]
    pub const ERROR: u16 = 0;
    pub const LOGIN: u16 = 2;
    pub const LOGIN_ACK: u16 = 3;
    pub const REGISTER: u16 = 6;
    pub const NICK_CHECK: u16 = 7;
    pub const NICK_FREE: u16 = 8;
    pub const NICK_TAKEN: u16 = 9;
    pub const NICK_INVALID: u16 = 10;
    pub const SHARE: u16 = 100;
    pub const UNSHARE: u16 = 102;
    pub const UNSHARE_ALL: u16 = 110;
    pub const SEARCH: u16 = 200;
    pub const SEARCH_RESULT: u16 = 201;
    pub const SEARCH_END: u16 = 202;
    pub const DOWNLOAD_REQUEST: u16 = 203;
    pub const DOWNLOAD_ACK: u16 = 204;
    pub const PRIVATE_MESSAGE: u16 = 205;
    pub const GET_ERROR: u16 = 206;
    pub const HOTLIST_ADD: u16 = 207;
    pub const HOTLIST_INIT: u16 = 208;
    pub const HOTLIST_SIGNON: u16 = 209;
    pub const HOTLIST_SIGNOFF: u16 = 210;
    pub const BROWSE: u16 = 211;
    pub const BROWSE_ENTRY: u16 = 212;
    pub const BROWSE_END: u16 = 213;
    pub const STATS: u16 = 214;
    pub const DOWNLOADING: u16 = 218;
    pub const DOWNLOAD_DONE: u16 = 219;
    pub const UPLOADING: u16 = 220;
    pub const UPLOAD_DONE: u16 = 221;
    pub const HOTLIST_ACK: u16 = 301;
    pub const HOTLIST_ERROR: u16 = 302;
    pub const HOTLIST_REMOVE: u16 = 303;
    pub const JOIN: u16 = 400;
    pub const PART: u16 = 401;
    pub const SAY: u16 = 402;
    pub const CHANNEL_MESSAGE: u16 = 403;
    pub const ERROR_MESSAGE: u16 = 404;
    pub const JOIN_ACK: u16 = 405;
    pub const USER_JOINED: u16 = 406;
    pub const USER_PARTED: u16 = 407;
    pub const CHANNEL_USER: u16 = 408;
    pub const CHANNEL_USERS_END: u16 = 409;
    pub const TOPIC: u16 = 410;
    pub const ALT_DOWNLOAD_REQUEST: u16 = 500;
    pub const ALT_DOWNLOAD_ACK: u16 = 501;
    pub const UPLOAD_REQUEST: u16 = 607;
    pub const UPLOAD_ACCEPT: u16 = 608;
    pub const ACCEPT_FAILED: u16 = 609;
    pub const BAN: u16 = 612;
    pub const UNBAN: u16 = 614;
    pub const LIST_CHANNELS: u16 = 617;
    pub const CHANNEL_ENTRY: u16 = 618;
    pub const MOTD: u16 = 621;
    pub const DATA_PORT_ERROR: u16 = 626;
    pub const DIRECT_BROWSE: u16 = 640;
    pub const DIRECT_BROWSE_ACCEPT: u16 = 641;
    pub const DIRECT_BROWSE_ERROR: u16 = 642;
    pub const CHANGE_DATA_PORT: u16 = 703;
    pub const SERVER_PING: u16 = 750;
    pub const PING_USER: u16 = 751;
    pub const PONG_USER: u16 = 752;
}

/// Why a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type number is not one this side understands.
    #[error("unknown message type {0}")]
    Unknown(u16),
    /// A field is missing.
    #[error("message {kind}: missing field <{field}>")]
    Missing {
        /// Message type.
        kind: u16,
        /// Field name, as the spec names it.
        field: &'static str,
    },
    /// A field is present but not valid (a bad number, an unterminated quote, …).
    #[error("message {kind}: invalid field <{field}>")]
    Invalid {
        /// Message type.
        kind: u16,
        /// Field name.
        field: &'static str,
    },
    /// Something follows the last field.
    #[error("message {kind}: unexpected data after the last field")]
    Trailing {
        /// Message type.
        kind: u16,
    },
}

/// Why a message could not be encoded (a value the wire format cannot carry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field holds a character the format cannot carry there (a space in a nick, a quote
    /// in a file name, …) or is empty.
    #[error("message {kind}: field <{field}> cannot be encoded")]
    Field {
        /// Message type.
        kind: u16,
        /// Field name.
        field: &'static str,
    },
    /// The payload is longer than the 16-bit length field allows.
    #[error("message {kind}: payload of {len} bytes exceeds 65535")]
    TooLong {
        /// Message type.
        kind: u16,
        /// Payload length.
        len: usize,
    },
}

/// A client's declared bandwidth, 0 (unknown) to 10 (T3 or better).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LinkType(u8);

impl LinkType {
    /// The largest link type.
    pub const MAX: u8 = 10;
    /// Unknown link.
    pub const UNKNOWN: LinkType = LinkType(0);
    /// Cable modem.
    pub const CABLE: LinkType = LinkType(7);
    /// A link type, `None` above 10.
    pub const fn new(v: u8) -> Option<LinkType> {
        if v <= Self::MAX {
            Some(LinkType(v))
        } else {
            None
        }
    }
    /// The number on the wire.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// The wire form of an IPv4 address: the address read as a little-endian `u32`.
pub fn ip_to_wire(ip: Ipv4Addr) -> u32 {
    u32::from_le_bytes(ip.octets())
}

/// The address a wire number names.
pub fn ip_from_wire(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(n.to_le_bytes())
}

/// A shared file as clients announce it (100) and browse lists show it (212).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileInfo {
    /// The name as the sharer spells it (may include a path).
    pub name: String,
    /// The checksum field (32 hex digits, optionally `-size`, or `WMA-FILE`).
    pub md5: String,
    /// Bytes.
    pub size: u64,
    /// kbit/s.
    pub bitrate: u32,
    /// Hz.
    pub freq: u32,
    /// Seconds.
    pub secs: u32,
}

/// How a search constraint compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compare {
    /// `"AT LEAST"`: value ≥ limit.
    AtLeast,
    /// `"AT BEST"`: value ≤ limit.
    AtBest,
    /// `"EQUAL TO"`: value = limit.
    EqualTo,
}

impl Compare {
    fn wire(self) -> &'static str {
        match self {
            Compare::AtLeast => "AT LEAST",
            Compare::AtBest => "AT BEST",
            Compare::EqualTo => "EQUAL TO",
        }
    }
    fn parse(s: &str) -> Option<Compare> {
        match s {
            "AT LEAST" => Some(Compare::AtLeast),
            "AT BEST" => Some(Compare::AtBest),
            "EQUAL TO" => Some(Compare::EqualTo),
            _ => None,
        }
    }
    /// Whether `value` satisfies this comparison against `limit`.
    pub fn holds(self, value: u64, limit: u64) -> bool {
        match self {
            Compare::AtLeast => value >= limit,
            Compare::AtBest => value <= limit,
            Compare::EqualTo => value == limit,
        }
    }
}

/// Which attribute a search constraint is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attr {
    /// `LINESPEED <compare> <link-type>`
    LineSpeed,
    /// `BITRATE <compare> "<kbps>"`
    Bitrate,
    /// `FREQ <compare> "<hz>"`
    Freq,
    /// `SIZE <compare> <bytes>` (OpenNap)
    Size,
    /// `DURATION <compare> <seconds>` (OpenNap)
    Duration,
}

impl Attr {
    fn keyword(self) -> &'static str {
        match self {
            Attr::LineSpeed => "LINESPEED",
            Attr::Bitrate => "BITRATE",
            Attr::Freq => "FREQ",
            Attr::Size => "SIZE",
            Attr::Duration => "DURATION",
        }
    }
    fn quoted_value(self) -> bool {
        matches!(self, Attr::Bitrate | Attr::Freq)
    }
}

/// One numeric search constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Constraint {
    /// What is compared.
    pub attr: Attr,
    /// How.
    pub cmp: Compare,
    /// Against what.
    pub value: u64,
}

/// A search request (200): the query syntax of the Napster and OpenNap servers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SearchQuery {
    /// `FILENAME CONTAINS "..."` phrases: every word of every phrase must match.
    pub contains: Vec<String>,
    /// `FILENAME EXCLUDES "..."` phrases: no word of these may match.
    pub excludes: Vec<String>,
    /// `MAX_RESULTS <n>`.
    pub max_results: Option<u32>,
    /// Numeric constraints, in order.
    pub constraints: Vec<Constraint>,
    /// `LOCAL_ONLY` (meaningful between linked servers only).
    pub local_only: bool,
}

/// One search result (201).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SearchHit {
    /// The file.
    pub file: FileInfo,
    /// Who shares it.
    pub nick: String,
    /// The sharer's address.
    pub ip: Ipv4Addr,
    /// The sharer's link type.
    pub link: LinkType,
}

/// Where a transfer partner is (204 and 501 carry the same fields).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerFile {
    /// The other user.
    pub nick: String,
    /// Their address.
    pub ip: Ipv4Addr,
    /// Their data port, 0 when they are firewalled.
    pub port: u16,
    /// The file.
    pub file: String,
    /// Its checksum field.
    pub md5: String,
    /// Their link type.
    pub link: LinkType,
}

/// A user in a channel (406, 407, 408, 825).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChannelUser {
    /// The channel.
    pub channel: String,
    /// The user.
    pub nick: String,
    /// How many files they share.
    pub shared: u32,
    /// Their link type.
    pub link: LinkType,
}

/// A message from a client to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientMsg {
    /// 2: log in (`port` 0 means firewalled).
    Login {
        /// Nickname.
        nick: String,
        /// Password.
        password: String,
        /// Data port.
        port: u16,
        /// Client name and version.
        client: String,
        /// Bandwidth.
        link: LinkType,
    },
    /// 6: register a new nick and log in.
    Register {
        /// Nickname.
        nick: String,
        /// Password.
        password: String,
        /// Data port.
        port: u16,
        /// Client name and version.
        client: String,
        /// Bandwidth.
        link: LinkType,
        /// E-mail address.
        email: String,
    },
    /// 7: is this nick free?
    NickCheck {
        /// Nickname.
        nick: String,
    },
    /// 100: share a file.
    Share(FileInfo),
    /// 102: stop sharing a file.
    Unshare {
        /// File name.
        name: String,
    },
    /// 110: stop sharing everything.
    UnshareAll,
    /// 200: search.
    Search(SearchQuery),
    /// 203: ask to download a file from a user.
    DownloadRequest {
        /// The holder.
        nick: String,
        /// The file.
        file: String,
    },
    /// 205: private message.
    PrivateMessage {
        /// Recipient.
        to: String,
        /// Text.
        text: String,
    },
    /// 207: add to the hotlist.
    HotlistAdd {
        /// The friend.
        nick: String,
    },
    /// 208: initial hotlist entry (sent at login).
    HotlistInit {
        /// The friend.
        nick: String,
    },
    /// 211: browse a user's files.
    Browse {
        /// Whose.
        nick: String,
    },
    /// 214: server statistics.
    Stats,
    /// 218: a download started.
    Downloading,
    /// 219: a download ended.
    DownloadDone,
    /// 220: an upload started.
    Uploading,
    /// 221: an upload ended.
    UploadDone,
    /// 303: remove from the hotlist.
    HotlistRemove {
        /// The friend.
        nick: String,
    },
    /// 400: join a channel.
    Join {
        /// Channel.
        channel: String,
    },
    /// 401: leave a channel.
    Part {
        /// Channel.
        channel: String,
    },
    /// 402: say something in a channel.
    Say {
        /// Channel.
        channel: String,
        /// Text.
        text: String,
    },
    /// 410: set a channel's topic.
    SetTopic {
        /// Channel.
        channel: String,
        /// Topic.
        topic: String,
    },
    /// 500: ask a firewalled holder to push a file to us.
    AltDownloadRequest {
        /// The holder.
        nick: String,
        /// The file.
        file: String,
    },
    /// 608: the holder accepts an upload request.
    UploadAccept {
        /// The requester.
        nick: String,
        /// The file.
        file: String,
    },
    /// 612: ban a nick or an address (administrators).
    Ban {
        /// Nick or dotted IP.
        target: String,
        /// Why.
        reason: Option<String>,
    },
    /// 614: lift a ban (administrators).
    Unban {
        /// Nick or dotted IP.
        target: String,
    },
    /// 617: list channels.
    ListChannels,
    /// 626: the holder's data port was unreachable.
    DataPortError {
        /// The holder.
        nick: String,
    },
    /// 703: our data port changed.
    ChangeDataPort {
        /// New port (0: firewalled).
        port: u16,
    },
    /// 621: send the message of the day again.
    Motd,
    /// 640: ask to browse `nick`'s files directly (napster.txt §5.3); answered by 641 or
    /// 642.
    DirectBrowse {
        /// Whose files.
        nick: String,
    },
    /// 641: we accept the direct browse `nick` asked for (after a 640 from the server).
    DirectBrowseAccept {
        /// The requester.
        nick: String,
    },
    /// 750: server ping; answered by 750 with the server's name.
    ServerPing {
        /// The server pinged (`None`: the one we are connected to). Napster 2.0b5a puts
        /// its own nick here to answer a ping from the server.
        server: Option<String>,
        /// Anything after it, echoed back in the answer.
        args: Option<String>,
    },
    /// 751: ping a user.
    PingUser {
        /// Whom.
        nick: String,
    },
    /// 752: answer a user's ping.
    PongUser {
        /// Whom.
        nick: String,
    },
}

/// A message from the server to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMsg {
    /// 0: error (during login; the connection is closed after it).
    Error {
        /// Text.
        text: String,
    },
    /// 3: logged in.
    LoginAck {
        /// The registered e-mail address.
        email: String,
    },
    /// 8: the nick is free.
    NickFree,
    /// 9: the nick is registered.
    NickTaken,
    /// 10: the nick is not valid.
    NickInvalid,
    /// 201: one search result.
    SearchResult(SearchHit),
    /// 202: end of the search results.
    SearchEnd,
    /// 204: where to fetch a file.
    DownloadAck(PeerFile),
    /// 205: a private message.
    PrivateMessage {
        /// Sender.
        from: String,
        /// Text.
        text: String,
    },
    /// 206: the file cannot be had.
    GetError {
        /// The holder.
        nick: String,
        /// The file.
        file: String,
    },
    /// 209: a hotlist friend logged on.
    HotlistSignon {
        /// The friend.
        nick: String,
        /// Their link type.
        link: LinkType,
    },
    /// 210: a hotlist friend logged off (also: browse of an unknown user).
    HotlistSignoff {
        /// The friend.
        nick: String,
    },
    /// 212: one file of a browse list.
    BrowseEntry {
        /// Whose.
        nick: String,
        /// The file.
        file: FileInfo,
    },
    /// 213: end of a browse list.
    BrowseEnd {
        /// Whose.
        nick: String,
        /// Their address.
        ip: Option<Ipv4Addr>,
    },
    /// 214: server statistics.
    Stats {
        /// Users online.
        users: u64,
        /// Files shared.
        files: u64,
        /// Library size in GB.
        gigabytes: u64,
    },
    /// 301: added to the hotlist.
    HotlistAck {
        /// The friend.
        nick: String,
    },
    /// 302: could not add to the hotlist.
    HotlistError {
        /// The friend.
        nick: String,
    },
    /// 401: we left a channel.
    Parted {
        /// Channel.
        channel: String,
    },
    /// 403: a public message.
    ChannelMessage {
        /// Channel.
        channel: String,
        /// Sender.
        nick: String,
        /// Text.
        text: String,
    },
    /// 404: an error for a logged-in client.
    ErrorMessage {
        /// Text.
        text: String,
    },
    /// 405: joined.
    JoinAck {
        /// Channel.
        channel: String,
    },
    /// 406: someone joined a channel we are in.
    UserJoined(ChannelUser),
    /// 407: someone left a channel we are in.
    UserParted(ChannelUser),
    /// 408: a member of the channel we just joined.
    ChannelUser(ChannelUser),
    /// 409: end of the member list.
    ChannelUsersEnd {
        /// Channel.
        channel: String,
    },
    /// 410: a channel's topic.
    Topic {
        /// Channel.
        channel: String,
        /// Topic.
        topic: String,
    },
    /// 501: push a file to a requester (we are firewalled).
    AltDownloadAck(PeerFile),
    /// 607: someone wants a file of ours.
    UploadRequest {
        /// The requester.
        nick: String,
        /// The file.
        file: String,
        /// The requester's link type (absent in older servers).
        link: Option<LinkType>,
    },
    /// 609: the holder did not accept.
    AcceptFailed {
        /// The holder.
        nick: String,
        /// The file.
        file: String,
    },
    /// 617: end of the channel list.
    ChannelListEnd,
    /// 618: one channel.
    ChannelEntry {
        /// Channel.
        channel: String,
        /// Members.
        users: u32,
        /// Topic.
        topic: String,
    },
    /// 626: a downloader could not reach our data port.
    DataPortError {
        /// The downloader.
        nick: String,
    },
    /// 621: one line of the message of the day (may be empty).
    Motd {
        /// The line.
        text: String,
    },
    /// 640: `nick` wants to browse our files directly. `addr` is theirs, given when we
    /// are firewalled: we connect to it and push the list (`SENDLIST`).
    DirectBrowseRequest {
        /// The requester.
        nick: String,
        /// The requester's address and data port, when we must push.
        addr: Option<(Ipv4Addr, u16)>,
    },
    /// 641: `nick` accepted our direct browse; connect to `ip:port` and `GETLIST`.
    DirectBrowseAccept {
        /// The browsee.
        nick: String,
        /// Their address.
        ip: Ipv4Addr,
        /// Their data port.
        port: u16,
    },
    /// 642: the direct browse of `nick` is not possible.
    DirectBrowseError {
        /// The browsee.
        nick: String,
        /// Why.
        text: String,
    },
    /// 750: server ping. From the server with no fields, it asks for an answer; with the
    /// server's name (and our `args`), it answers ours.
    ServerPing {
        /// The server's name.
        server: Option<String>,
        /// What our ping carried after the server name.
        args: Option<String>,
    },
    /// 751: a user pings us (answer with 752).
    PingUser {
        /// Who.
        nick: String,
    },
    /// 752: a user answered our ping.
    PongUser {
        /// Who.
        nick: String,
    },
}

// ---------------------------------------------------------------------------------------
// Decoding helpers

/// Payload bytes as text: UTF-8 when valid, else Latin-1 (what old clients sent).
pub fn payload_text(payload: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(payload) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => std::borrow::Cow::Owned(payload.iter().map(|&b| char::from(b)).collect()),
    }
}

/// A cursor over the space-separated fields of one payload.
struct Fields<'a> {
    s: &'a str,
    kind: u16,
    /// The payload's length: nothing has been consumed while `s` is still this long.
    full: usize,
}

impl<'a> Fields<'a> {
    fn new(kind: u16, s: &'a str) -> Self {
        Fields {
            s,
            kind,
            full: s.len(),
        }
    }

    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::Missing {
            kind: self.kind,
            field,
        }
    }

    fn invalid(&self, field: &'static str) -> DecodeError {
        DecodeError::Invalid {
            kind: self.kind,
            field,
        }
    }

    fn skip_spaces(&mut self) {
        self.s = self.s.trim_start_matches(' ');
    }

    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.s.is_empty()
    }

    /// One unquoted word.
    fn word(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        self.skip_spaces();
        if self.s.is_empty() {
            return Err(self.missing(field));
        }
        let end = self.s.find(' ').unwrap_or(self.s.len());
        let (w, rest) = self.s.split_at(end);
        self.s = rest;
        Ok(w)
    }

    /// A quoted field; an unquoted single word is accepted too (lenient to old clients).
    fn quoted(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        self.skip_spaces();
        let Some(body) = self.s.strip_prefix('"') else {
            return self.word(field);
        };
        // The closing quote is the first one followed by a space or the end.
        let bytes = body.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'"' && (i + 1 == bytes.len() || bytes[i + 1] == b' ') {
                let v = &body[..i];
                self.s = &body[i + 1..];
                return Ok(v);
            }
            i += 1;
        }
        Err(self.invalid(field))
    }

    fn num<T: FromStr>(&mut self, field: &'static str) -> Result<T, DecodeError> {
        let w = self.word(field)?;
        // `u64::from_str` accepts a leading '+', the wire never carries one.
        if !w.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.invalid(field));
        }
        w.parse().map_err(|_| self.invalid(field))
    }

    fn link(&mut self, field: &'static str) -> Result<LinkType, DecodeError> {
        let v: u8 = self.num(field)?;
        LinkType::new(v).ok_or_else(|| self.invalid(field))
    }

    fn ip(&mut self, field: &'static str) -> Result<Ipv4Addr, DecodeError> {
        Ok(ip_from_wire(self.num(field)?))
    }

    /// Everything left (a message text); must not be empty.
    fn rest(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        // After a field, exactly one separator space precedes the text; the text keeps any
        // further leading spaces the sender typed. As the first field (an error message)
        // there is no separator: every space is text.
        let r = if self.s.len() == self.full {
            self.s
        } else {
            self.s.strip_prefix(' ').unwrap_or(self.s)
        };
        self.s = "";
        if r.is_empty() {
            return Err(self.missing(field));
        }
        Ok(r)
    }

    /// A 750's fields: an optional server name (or nick), then optional text.
    fn ping(&mut self) -> Result<(Option<String>, Option<String>), DecodeError> {
        if self.at_end() {
            return Ok((None, None));
        }
        let server = self.word("server")?.to_string();
        let r = self.s.strip_prefix(' ').unwrap_or(self.s);
        self.s = "";
        Ok((Some(server), (!r.is_empty()).then(|| r.to_string())))
    }

    fn end(&mut self) -> Result<(), DecodeError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(DecodeError::Trailing { kind: self.kind })
        }
    }

    fn file_info(&mut self) -> Result<FileInfo, DecodeError> {
        Ok(FileInfo {
            name: self.quoted("filename")?.to_string(),
            md5: self.word("md5")?.to_string(),
            size: self.num("size")?,
            bitrate: self.num("bitrate")?,
            freq: self.num("frequency")?,
            secs: self.num("time")?,
        })
    }

    fn peer_file(&mut self) -> Result<PeerFile, DecodeError> {
        Ok(PeerFile {
            nick: self.word("nick")?.to_string(),
            ip: self.ip("ip")?,
            port: self.num("port")?,
            file: self.quoted("filename")?.to_string(),
            md5: self.word("md5")?.to_string(),
            link: self.link("linespeed")?,
        })
    }

    fn channel_user(&mut self) -> Result<ChannelUser, DecodeError> {
        Ok(ChannelUser {
            channel: self.word("channel")?.to_string(),
            nick: self.word("user")?.to_string(),
            shared: self.num("sharing")?,
            link: self.link("link-type")?,
        })
    }
}

fn empty(kind: u16, payload: &str) -> Result<(), DecodeError> {
    // Some clients send a stray space or NUL in "no data" messages; anything else is wrong.
    if payload.trim_matches(|c| c == ' ' || c == '\0').is_empty() {
        Ok(())
    } else {
        Err(DecodeError::Trailing { kind })
    }
}

// ---------------------------------------------------------------------------------------
// Encoding helpers

struct Out<'a> {
    buf: &'a mut Vec<u8>,
    start: usize,
    kind: u16,
}

impl<'a> Out<'a> {
    fn new(buf: &'a mut Vec<u8>, kind: u16) -> Self {
        let start = buf.len();
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&kind.to_le_bytes());
        Out { buf, start, kind }
    }

    fn bad(&self, field: &'static str) -> EncodeError {
        EncodeError::Field {
            kind: self.kind,
            field,
        }
    }

    fn sep(&mut self) {
        if self.buf.len() > self.start + HEADER_LEN {
            self.buf.push(b' ');
        }
    }

    fn word(&mut self, field: &'static str, w: &str) -> Result<&mut Self, EncodeError> {
        if w.is_empty() || w.contains([' ', '"']) {
            return Err(self.bad(field));
        }
        self.sep();
        self.buf.extend_from_slice(w.as_bytes());
        Ok(self)
    }

    fn quoted(&mut self, field: &'static str, w: &str) -> Result<&mut Self, EncodeError> {
        if w.contains('"') {
            return Err(self.bad(field));
        }
        self.sep();
        self.buf.push(b'"');
        self.buf.extend_from_slice(w.as_bytes());
        self.buf.push(b'"');
        Ok(self)
    }

    fn num(&mut self, n: impl fmt::Display) -> &mut Self {
        self.sep();
        self.buf.extend_from_slice(n.to_string().as_bytes());
        self
    }

    fn rest(&mut self, field: &'static str, text: &str) -> Result<&mut Self, EncodeError> {
        if text.is_empty() {
            return Err(self.bad(field));
        }
        self.sep();
        self.buf.extend_from_slice(text.as_bytes());
        Ok(self)
    }

    fn file_info(&mut self, f: &FileInfo) -> Result<&mut Self, EncodeError> {
        self.quoted("filename", &f.name)?
            .word("md5", &f.md5)?
            .num(f.size)
            .num(f.bitrate)
            .num(f.freq)
            .num(f.secs);
        Ok(self)
    }

    fn peer_file(&mut self, p: &PeerFile) -> Result<&mut Self, EncodeError> {
        self.word("nick", &p.nick)?
            .num(ip_to_wire(p.ip))
            .num(p.port)
            .quoted("filename", &p.file)?
            .word("md5", &p.md5)?
            .num(p.link.get());
        Ok(self)
    }

    fn channel_user(&mut self, u: &ChannelUser) -> Result<&mut Self, EncodeError> {
        self.word("channel", &u.channel)?
            .word("user", &u.nick)?
            .num(u.shared)
            .num(u.link.get());
        Ok(self)
    }

    fn ping(
        &mut self,
        server: &Option<String>,
        args: &Option<String>,
    ) -> Result<&mut Self, EncodeError> {
        match (server, args) {
            (Some(s), a) => {
                self.word("server", s)?;
                if let Some(a) = a {
                    self.rest("args", a)?;
                }
            }
            (None, Some(_)) => return Err(self.bad("server")),
            (None, None) => {}
        }
        Ok(self)
    }

    fn finish(self) -> Result<(), EncodeError> {
        let len = self.buf.len() - self.start - HEADER_LEN;
        let Ok(l16) = u16::try_from(len) else {
            self.buf.truncate(self.start);
            return Err(EncodeError::TooLong {
                kind: self.kind,
                len,
            });
        };
        self.buf[self.start..self.start + 2].copy_from_slice(&l16.to_le_bytes());
        Ok(())
    }
}

/// Runs an encoder body, restoring the buffer when it fails half-way.
fn encode_with(
    buf: &mut Vec<u8>,
    kind: u16,
    body: impl FnOnce(&mut Out<'_>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = buf.len();
    let mut out = Out::new(buf, kind);
    match body(&mut out) {
        Ok(()) => out.finish(),
        Err(e) => {
            buf.truncate(start);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Share fields outside a message (direct-browse lists)

impl FileInfo {
    /// Parses the fields of a share (100) message, `"<filename>" <md5> <size> <bitrate>
    /// <freq> <secs>`: one line of a direct-browse list (napster.txt §5.3).
    pub fn parse_share_fields(line: &str) -> Result<FileInfo, DecodeError> {
        let mut f = Fields::new(kind::SHARE, line);
        let info = f.file_info()?;
        f.end()?;
        Ok(info)
    }

    /// The fields of a share (100) message, as one line of a direct-browse list carries
    /// them (without the line feed); refused if the name holds a quote or a line break.
    pub fn share_fields(&self) -> Result<Vec<u8>, EncodeError> {
        if self.name.contains(['\n', '\r']) {
            return Err(EncodeError::Field {
                kind: kind::SHARE,
                field: "filename",
            });
        }
        let mut buf = Vec::new();
        {
            let mut o = Out::new(&mut buf, kind::SHARE);
            o.file_info(self)?;
        }
        buf.drain(..HEADER_LEN);
        Ok(buf)
    }
}

// ---------------------------------------------------------------------------------------
// The search query

impl SearchQuery {
    /// Parses the payload of a 200 message.
    pub fn parse(s: &str) -> Result<SearchQuery, DecodeError> {
        const K: u16 = kind::SEARCH;
        let mut q = SearchQuery::default();
        let mut f = Fields::new(K, s);
        while !f.at_end() {
            match f.word("keyword")? {
                "FILENAME" => {
                    let op = f.word("CONTAINS|EXCLUDES")?;
                    let phrase = f.quoted("phrase")?.to_string();
                    match op {
                        "CONTAINS" => q.contains.push(phrase),
                        "EXCLUDES" => q.excludes.push(phrase),
                        _ => return Err(f.invalid("CONTAINS|EXCLUDES")),
                    }
                }
                "MAX_RESULTS" => q.max_results = Some(f.num("max")?),
                "LOCAL_ONLY" => q.local_only = true,
                kw => {
                    let attr = match kw {
                        "LINESPEED" => Attr::LineSpeed,
                        "BITRATE" => Attr::Bitrate,
                        "FREQ" => Attr::Freq,
                        "SIZE" => Attr::Size,
                        "DURATION" => Attr::Duration,
                        _ => return Err(f.invalid("keyword")),
                    };
                    let cmp =
                        Compare::parse(f.quoted("compare")?).ok_or_else(|| f.invalid("compare"))?;
                    let v = f.quoted("value")?;
                    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(f.invalid("value"));
                    }
                    let value = v.parse().map_err(|_| f.invalid("value"))?;
                    q.constraints.push(Constraint { attr, cmp, value });
                }
            }
        }
        Ok(q)
    }

    fn encode_into(&self, o: &mut Out<'_>) -> Result<(), EncodeError> {
        for (op, list) in [("CONTAINS", &self.contains), ("EXCLUDES", &self.excludes)] {
            for p in list {
                o.rest("FILENAME", "FILENAME")?.rest("op", op)?;
                o.quoted("phrase", p)?;
            }
        }
        if let Some(m) = self.max_results {
            o.rest("MAX_RESULTS", "MAX_RESULTS")?.num(m);
        }
        for c in &self.constraints {
            o.rest("keyword", c.attr.keyword())?
                .quoted("compare", c.cmp.wire())?;
            if c.attr.quoted_value() {
                o.quoted("value", &c.value.to_string())?;
            } else {
                o.num(c.value);
            }
        }
        if self.local_only {
            o.rest("LOCAL_ONLY", "LOCAL_ONLY")?;
        }
        Ok(())
    }
}

impl fmt::Display for SearchQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = Vec::new();
        let mut o = Out::new(&mut buf, kind::SEARCH);
        self.encode_into(&mut o).map_err(|_| fmt::Error)?;
        f.write_str(&String::from_utf8_lossy(&buf[HEADER_LEN..]))
    }
}

/// Splits the header: `(payload length, type)` from the first 4 bytes, `None` if shorter.
pub fn parse_header(h: &[u8]) -> Option<(u16, u16)> {
    match h {
        [l0, l1, t0, t1, ..] => Some((
            u16::from_le_bytes([*l0, *l1]),
            u16::from_le_bytes([*t0, *t1]),
        )),
        _ => None,
    }
}

/// A nick the server accepts: 1 to 32 characters from Napster's set
/// (letters, digits and `_[]{}-@^!$`).
pub fn valid_nick(nick: &str) -> bool {
    !nick.is_empty()
        && nick.len() <= 32
        && nick
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_[]{}-@^!$".contains(&b))
}

/// A channel name the server accepts: 1 to 32 printable ASCII characters without spaces
/// or quotes.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
}
