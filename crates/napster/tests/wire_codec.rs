#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! The OpenNap codec: golden bytes from the protocol document, round trips of every
//! message, and hostile input that must give errors, never panics.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use servent_napster::wire::*;

fn frame(kind: u16, payload: &str) -> Vec<u8> {
    let mut v = (payload.len() as u16).to_le_bytes().to_vec();
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(payload.as_bytes());
    v
}

fn enc_c(m: &ClientMsg) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    b
}

fn enc_s(m: &ServerMsg) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(&mut b).unwrap();
    b
}

fn dec_c(b: &[u8]) -> ClientMsg {
    let (len, kind) = parse_header(b).unwrap();
    assert_eq!(len as usize, b.len() - 4);
    ClientMsg::decode(kind, &b[4..]).unwrap()
}

fn dec_s(b: &[u8]) -> ServerMsg {
    let (len, kind) = parse_header(b).unwrap();
    assert_eq!(len as usize, b.len() - 4);
    ServerMsg::decode(kind, &b[4..]).unwrap()
}

fn golden_c(m: ClientMsg, kind: u16, payload: &str) {
    let b = enc_c(&m);
    assert_eq!(b, frame(kind, payload), "{m:?}");
    assert_eq!(dec_c(&b), m);
}

fn golden_s(m: ServerMsg, kind: u16, payload: &str) {
    let b = enc_s(&m);
    assert_eq!(b, frame(kind, payload), "{m:?}");
    assert_eq!(dec_s(&b), m);
}

fn song() -> FileInfo {
    FileInfo {
        name: "generic band - generic song.mp3".into(),
        md5: "b92870e0d41bc8e698cf2f0a1ddfeac7".into(),
        size: 443332,
        bitrate: 128,
        freq: 44100,
        secs: 60,
    }
}

#[test]
fn login_header_is_little_endian_length_then_type() {
    let m = ClientMsg::Login {
        nick: "foo".into(),
        password: "badpass".into(),
        port: 6699,
        client: "nap v0.8".into(),
        link: LinkType::new(3).unwrap(),
    };
    let b = enc_c(&m);
    assert_eq!(&b[..4], &[0x1d, 0x00, 0x02, 0x00]);
    assert_eq!(&b[4..], b"foo badpass 6699 \"nap v0.8\" 3");
    // The Windows client's trailing build number is accepted.
    assert_eq!(
        ClientMsg::decode(2, b"foo badpass 6699 \"nap v0.8\" 3 1234").unwrap(),
        m
    );
}

#[test]
fn ip_addresses_travel_as_little_endian_decimal() {
    assert_eq!(ip_to_wire(Ipv4Addr::new(127, 0, 0, 1)), 16777343);
    assert_eq!(ip_from_wire(3437166285), Ipv4Addr::new(205, 254, 222, 204));
}

#[test]
fn client_messages_match_the_documented_bytes() {
    golden_c(
        ClientMsg::Register {
            nick: "foo".into(),
            password: "foo".into(),
            port: 6699,
            client: "nap v0.8".into(),
            link: LinkType::new(3).unwrap(),
            email: "email@here.com".into(),
        },
        6,
        "foo foo 6699 \"nap v0.8\" 3 email@here.com",
    );
    golden_c(ClientMsg::NickCheck { nick: "foo".into() }, 7, "foo");
    golden_c(
        ClientMsg::Share(song()),
        100,
        "\"generic band - generic song.mp3\" b92870e0d41bc8e698cf2f0a1ddfeac7 443332 128 44100 60",
    );
    golden_c(
        ClientMsg::Unshare {
            name: "a b.mp3".into(),
        },
        102,
        "\"a b.mp3\"",
    );
    golden_c(ClientMsg::UnshareAll, 110, "");
    golden_c(
        ClientMsg::DownloadRequest {
            nick: "mred".into(),
            file: "C:\\Program Files\\Napster\\generic cowboy song.mp3".into(),
        },
        203,
        "mred \"C:\\Program Files\\Napster\\generic cowboy song.mp3\"",
    );
    golden_c(
        ClientMsg::PrivateMessage {
            to: "lefty".into(),
            text: "hi there".into(),
        },
        205,
        "lefty hi there",
    );
    golden_c(ClientMsg::HotlistAdd { nick: "a".into() }, 207, "a");
    golden_c(ClientMsg::HotlistInit { nick: "a".into() }, 208, "a");
    golden_c(ClientMsg::Browse { nick: "a".into() }, 211, "a");
    golden_c(ClientMsg::Stats, 214, "");
    golden_c(ClientMsg::Downloading, 218, "");
    golden_c(ClientMsg::DownloadDone, 219, "");
    golden_c(ClientMsg::Uploading, 220, "");
    golden_c(ClientMsg::UploadDone, 221, "");
    golden_c(ClientMsg::HotlistRemove { nick: "a".into() }, 303, "a");
    golden_c(
        ClientMsg::Join {
            channel: "80's".into(),
        },
        400,
        "80's",
    );
    golden_c(
        ClientMsg::Part {
            channel: "80's".into(),
        },
        401,
        "80's",
    );
    golden_c(
        ClientMsg::Say {
            channel: "80's".into(),
            text: "hello...hola".into(),
        },
        402,
        "80's hello...hola",
    );
    golden_c(
        ClientMsg::SetTopic {
            channel: "Help".into(),
            topic: "OpenNap help channel".into(),
        },
        410,
        "Help OpenNap help channel",
    );
    golden_c(
        ClientMsg::AltDownloadRequest {
            nick: "lefty".into(),
            file: "x.mp3".into(),
        },
        500,
        "lefty \"x.mp3\"",
    );
    golden_c(
        ClientMsg::UploadAccept {
            nick: "lefty".into(),
            file: "generic band - generic song.mp3".into(),
        },
        608,
        "lefty \"generic band - generic song.mp3\"",
    );
    golden_c(
        ClientMsg::Ban {
            target: "valkyrie".into(),
            reason: Some("DoS exploit".into()),
        },
        612,
        "valkyrie \"DoS exploit\"",
    );
    golden_c(
        ClientMsg::Unban {
            target: "valkyrie".into(),
        },
        614,
        "valkyrie",
    );
    golden_c(ClientMsg::ListChannels, 617, "");
    golden_c(ClientMsg::DataPortError { nick: "a".into() }, 626, "a");
    golden_c(ClientMsg::ChangeDataPort { port: 6699 }, 703, "6699");
    golden_c(
        ClientMsg::ServerPing {
            server: None,
            args: None,
        },
        750,
        "",
    );
    golden_c(
        ClientMsg::ServerPing {
            server: Some("opennap.example".into()),
            args: Some("1234 5678".into()),
        },
        750,
        "opennap.example 1234 5678",
    );
    golden_c(ClientMsg::Motd, 621, "");
    golden_c(
        ClientMsg::DirectBrowse {
            nick: "lefty".into(),
        },
        640,
        "lefty",
    );
    golden_c(
        ClientMsg::DirectBrowseAccept {
            nick: "mred".into(),
        },
        641,
        "mred",
    );
    golden_c(ClientMsg::PingUser { nick: "a".into() }, 751, "a");
    golden_c(ClientMsg::PongUser { nick: "a".into() }, 752, "a");
}

#[test]
fn search_queries_parse_the_documented_examples() {
    let q = SearchQuery::parse(
        "FILENAME CONTAINS \"Sneaker Pimps\" MAX_RESULTS 75 FILENAME CONTAINS \"tesko suicide\" BITRATE \"AT LEAST\" \"128\"",
    )
    .unwrap();
    assert_eq!(q.contains, vec!["Sneaker Pimps", "tesko suicide"]);
    assert_eq!(q.max_results, Some(75));
    assert_eq!(
        q.constraints,
        vec![Constraint {
            attr: Attr::Bitrate,
            cmp: Compare::AtLeast,
            value: 128
        }]
    );
    let q = SearchQuery::parse(
        "MAX_RESULTS 100 FILENAME CONTAINS \"Ventolin\" LINESPEED \"EQUAL TO\" 10 SIZE \"AT BEST\" 5000000 LOCAL_ONLY",
    )
    .unwrap();
    assert_eq!(q.contains, vec!["Ventolin"]);
    assert!(q.local_only);
    assert_eq!(q.constraints.len(), 2);
    assert_eq!(q.constraints[1].attr, Attr::Size);
    // Our encoding: phrases first, then MAX_RESULTS, then constraints.
    golden_c(
        ClientMsg::Search(q),
        200,
        "FILENAME CONTAINS \"Ventolin\" MAX_RESULTS 100 LINESPEED \"EQUAL TO\" 10 SIZE \"AT BEST\" 5000000 LOCAL_ONLY",
    );
    assert!(SearchQuery::parse("FILENAME HAS \"x\"").is_err());
    assert!(SearchQuery::parse("BITRATE \"MORE THAN\" \"128\"").is_err());
    assert!(SearchQuery::parse("FILENAME CONTAINS \"unterminated").is_err());
    assert!(SearchQuery::parse("MAX_RESULTS -5").is_err());
}

#[test]
fn server_messages_match_the_documented_bytes() {
    golden_s(
        ServerMsg::Error {
            text: "Invalid Password".into(),
        },
        0,
        "Invalid Password",
    );
    golden_s(
        ServerMsg::LoginAck {
            email: "anon@napster.com".into(),
        },
        3,
        "anon@napster.com",
    );
    golden_s(ServerMsg::NickFree, 8, "");
    golden_s(ServerMsg::NickTaken, 9, "");
    golden_s(ServerMsg::NickInvalid, 10, "");
    golden_s(
        ServerMsg::SearchResult(SearchHit {
            file: FileInfo {
                name: "random band - random song.mp3".into(),
                md5: "7d733c1e7419674744768db71bff8bcd".into(),
                size: 2558199,
                bitrate: 128,
                freq: 44100,
                secs: 159,
            },
            nick: "lefty".into(),
            ip: ip_from_wire(3437166285),
            link: LinkType::new(4).unwrap(),
        }),
        201,
        "\"random band - random song.mp3\" 7d733c1e7419674744768db71bff8bcd 2558199 128 44100 159 lefty 3437166285 4",
    );
    golden_s(ServerMsg::SearchEnd, 202, "");
    golden_s(
        ServerMsg::DownloadAck(PeerFile {
            nick: "lefty".into(),
            ip: Ipv4Addr::new(127, 0, 0, 1),
            port: 6699,
            file: "generic band - generic song.mp3".into(),
            md5: "10fe9e623b1962da85eea61df7ac1f69".into(),
            link: LinkType::new(3).unwrap(),
        }),
        204,
        "lefty 16777343 6699 \"generic band - generic song.mp3\" 10fe9e623b1962da85eea61df7ac1f69 3",
    );
    golden_s(
        ServerMsg::PrivateMessage {
            from: "lefty".into(),
            text: "hi".into(),
        },
        205,
        "lefty hi",
    );
    golden_s(
        ServerMsg::GetError {
            nick: "lefty".into(),
            file: "x y.mp3".into(),
        },
        206,
        "lefty \"x y.mp3\"",
    );
    golden_s(
        ServerMsg::HotlistSignon {
            nick: "a".into(),
            link: LinkType::new(7).unwrap(),
        },
        209,
        "a 7",
    );
    golden_s(ServerMsg::HotlistSignoff { nick: "a".into() }, 210, "a");
    golden_s(
        ServerMsg::BrowseEntry {
            nick: "foouser".into(),
            file: song(),
        },
        212,
        "foouser \"generic band - generic song.mp3\" b92870e0d41bc8e698cf2f0a1ddfeac7 443332 128 44100 60",
    );
    golden_s(
        ServerMsg::BrowseEnd {
            nick: "foouser".into(),
            ip: Some(Ipv4Addr::new(127, 0, 0, 1)),
        },
        213,
        "foouser 16777343",
    );
    golden_s(
        ServerMsg::Stats {
            users: 553,
            files: 64692,
            gigabytes: 254,
        },
        214,
        "553 64692 254",
    );
    golden_s(ServerMsg::HotlistAck { nick: "a".into() }, 301, "a");
    golden_s(ServerMsg::HotlistError { nick: "a".into() }, 302, "a");
    golden_s(
        ServerMsg::Parted {
            channel: "80's".into(),
        },
        401,
        "80's",
    );
    golden_s(
        ServerMsg::ChannelMessage {
            channel: "80's".into(),
            nick: "espinozaf".into(),
            text: "hello...hola".into(),
        },
        403,
        "80's espinozaf hello...hola",
    );
    golden_s(
        ServerMsg::ErrorMessage {
            text: "User nosuchuser is not currently online.".into(),
        },
        404,
        "User nosuchuser is not currently online.",
    );
    golden_s(
        ServerMsg::JoinAck {
            channel: "80's".into(),
        },
        405,
        "80's",
    );
    let wilma = ChannelUser {
        channel: "80's".into(),
        nick: "WilmaFlinstone".into(),
        shared: 12,
        link: LinkType::new(2).unwrap(),
    };
    golden_s(
        ServerMsg::UserJoined(wilma.clone()),
        406,
        "80's WilmaFlinstone 12 2",
    );
    golden_s(
        ServerMsg::UserParted(wilma.clone()),
        407,
        "80's WilmaFlinstone 12 2",
    );
    golden_s(
        ServerMsg::ChannelUser(wilma),
        408,
        "80's WilmaFlinstone 12 2",
    );
    golden_s(
        ServerMsg::ChannelUsersEnd {
            channel: "80's".into(),
        },
        409,
        "80's",
    );
    golden_s(
        ServerMsg::Topic {
            channel: "80's".into(),
            topic: "totally rad".into(),
        },
        410,
        "80's totally rad",
    );
    golden_s(
        ServerMsg::AltDownloadAck(PeerFile {
            nick: "req".into(),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            port: 6699,
            file: "x.mp3".into(),
            md5: "00000000000000000000000000000000".into(),
            link: LinkType::new(8).unwrap(),
        }),
        501,
        "req 33554442 6699 \"x.mp3\" 00000000000000000000000000000000 8",
    );
    golden_s(
        ServerMsg::UploadRequest {
            nick: "lefty".into(),
            file: "generic band - generic song.mp3".into(),
            link: Some(LinkType::new(7).unwrap()),
        },
        607,
        "lefty \"generic band - generic song.mp3\" 7",
    );
    golden_s(
        ServerMsg::AcceptFailed {
            nick: "a".into(),
            file: "f".into(),
        },
        609,
        "a \"f\"",
    );
    golden_s(ServerMsg::ChannelListEnd, 617, "");
    golden_s(
        ServerMsg::ChannelEntry {
            channel: "Help".into(),
            users: 50,
            topic: "OpenNap help channel".into(),
        },
        618,
        "Help 50 OpenNap help channel",
    );
    golden_s(ServerMsg::DataPortError { nick: "a".into() }, 626, "a");
    golden_s(
        ServerMsg::ServerPing {
            server: None,
            args: None,
        },
        750,
        "",
    );
    golden_s(
        ServerMsg::ServerPing {
            server: Some("servent".into()),
            args: Some("t=1".into()),
        },
        750,
        "servent t=1",
    );
    golden_s(
        ServerMsg::Motd {
            text: "Welcome lefty!".into(),
        },
        621,
        "Welcome lefty!",
    );
    golden_s(ServerMsg::Motd { text: "".into() }, 621, "");
    golden_s(
        ServerMsg::DirectBrowseRequest {
            nick: "mred".into(),
            addr: None,
        },
        640,
        "mred",
    );
    golden_s(
        ServerMsg::DirectBrowseRequest {
            nick: "mred".into(),
            addr: Some((Ipv4Addr::new(127, 0, 0, 1), 6699)),
        },
        640,
        "mred 16777343 6699",
    );
    golden_s(
        ServerMsg::DirectBrowseAccept {
            nick: "lefty".into(),
            ip: Ipv4Addr::new(127, 0, 0, 1),
            port: 6699,
        },
        641,
        "lefty 16777343 6699",
    );
    golden_s(
        ServerMsg::DirectBrowseError {
            nick: "lefty".into(),
            text: "lefty is not online.".into(),
        },
        642,
        "lefty \"lefty is not online.\"",
    );
    golden_s(ServerMsg::PingUser { nick: "a".into() }, 751, "a");
    golden_s(ServerMsg::PongUser { nick: "a".into() }, 752, "a");
}

#[test]
fn tolerated_variants_of_real_servers_decode() {
    // Napster 10.3's stats suffix, a result weight, a 607 without the speed.
    assert_eq!(
        ServerMsg::decode(214, b"553 64692 254 GB 102").unwrap(),
        ServerMsg::Stats {
            users: 553,
            files: 64692,
            gigabytes: 254
        }
    );
    assert!(ServerMsg::decode(201, b"\"a.mp3\" 0 1 2 3 4 n 16777343 4 -2").is_ok());
    assert_eq!(
        ServerMsg::decode(607, b"lefty \"x.mp3\"").unwrap(),
        ServerMsg::UploadRequest {
            nick: "lefty".into(),
            file: "x.mp3".into(),
            link: None
        }
    );
    // Latin-1 file names from old clients decode instead of failing.
    let ClientMsg::Share(f) = ClientMsg::decode(100, b"\"caf\xe9.mp3\" 0 1 2 3 4").unwrap() else {
        panic!()
    };
    assert_eq!(f.name, "café.mp3");
}

#[test]
fn malformed_payloads_give_typed_errors() {
    assert_eq!(
        ClientMsg::decode(9999, b""),
        Err(DecodeError::Unknown(9999))
    );
    assert!(matches!(
        ClientMsg::decode(2, b"foo"),
        Err(DecodeError::Missing { kind: 2, .. })
    ));
    assert!(matches!(
        ClientMsg::decode(2, b"foo pw 99999 \"x\" 3"),
        Err(DecodeError::Invalid {
            kind: 2,
            field: "port"
        })
    ));
    assert!(matches!(
        ClientMsg::decode(2, b"foo pw 1 \"x\" 11"),
        Err(DecodeError::Invalid { .. })
    ));
    assert!(matches!(
        ClientMsg::decode(100, b"\"a.mp3 0 1 2 3 4"),
        Err(DecodeError::Invalid { .. })
    ));
    assert!(matches!(
        ClientMsg::decode(7, b"a b"),
        Err(DecodeError::Trailing { kind: 7 })
    ));
    assert!(matches!(
        ClientMsg::decode(214, b"junk"),
        Err(DecodeError::Trailing { .. })
    ));
}

#[test]
fn unencodable_values_are_refused_and_leave_the_buffer_unchanged() {
    let mut b = vec![1, 2, 3];
    let bad = ClientMsg::NickCheck {
        nick: "two words".into(),
    };
    assert!(bad.encode(&mut b).is_err());
    let bad = ClientMsg::Unshare {
        name: "a\"b".into(),
    };
    assert!(bad.encode(&mut b).is_err());
    let huge = ClientMsg::PrivateMessage {
        to: "a".into(),
        text: "x".repeat(70_000),
    };
    assert!(matches!(
        huge.encode(&mut b),
        Err(EncodeError::TooLong { .. })
    ));
    assert_eq!(b, vec![1, 2, 3]);
}

// ---------------------------------------------------------------------------------------
// Round trips of every message.

fn nick() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_\\[\\]{}@^!$-]{1,20}"
}
fn word() -> impl Strategy<Value = String> {
    "[!#-~]{1,20}"
}
fn name() -> impl Strategy<Value = String> {
    // Anything but quotes; may have spaces, backslashes, non-ASCII.
    "[^\"\\x00]{0,40}"
}
fn text() -> impl Strategy<Value = String> {
    "[^ ][^\\x00]{0,60}"
}
fn link() -> impl Strategy<Value = LinkType> {
    (0u8..=10).prop_map(|v| LinkType::new(v).unwrap())
}
fn ip() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(ip_from_wire)
}
fn file_info() -> impl Strategy<Value = FileInfo> {
    (
        name(),
        word(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(name, md5, size, bitrate, freq, secs)| FileInfo {
            name,
            md5,
            size,
            bitrate,
            freq,
            secs,
        })
}
fn peer_file() -> impl Strategy<Value = PeerFile> {
    (nick(), ip(), any::<u16>(), name(), word(), link()).prop_map(
        |(nick, ip, port, file, md5, link)| PeerFile {
            nick,
            ip,
            port,
            file,
            md5,
            link,
        },
    )
}
fn channel_user() -> impl Strategy<Value = ChannelUser> {
    (word(), nick(), any::<u32>(), link()).prop_map(|(channel, nick, shared, link)| ChannelUser {
        channel,
        nick,
        shared,
        link,
    })
}
fn query() -> impl Strategy<Value = SearchQuery> {
    let constraint = (
        prop::sample::select(vec![
            Attr::LineSpeed,
            Attr::Bitrate,
            Attr::Freq,
            Attr::Size,
            Attr::Duration,
        ]),
        prop::sample::select(vec![Compare::AtLeast, Compare::AtBest, Compare::EqualTo]),
        any::<u64>(),
    )
        .prop_map(|(attr, cmp, value)| Constraint { attr, cmp, value });
    (
        prop::collection::vec("[^\"\\x00]{0,20}", 0..3),
        prop::collection::vec("[^\"\\x00]{0,20}", 0..2),
        prop::option::of(any::<u32>()),
        prop::collection::vec(constraint, 0..4),
        any::<bool>(),
    )
        .prop_map(
            |(contains, excludes, max_results, constraints, local_only)| SearchQuery {
                contains,
                excludes,
                max_results,
                constraints,
                local_only,
            },
        )
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (nick(), word(), any::<u16>(), name(), link()).prop_map(
            |(nick, password, port, client, link)| ClientMsg::Login {
                nick,
                password,
                port,
                client,
                link
            }
        ),
        (nick(), word(), any::<u16>(), name(), link(), word()).prop_map(
            |(nick, password, port, client, link, email)| ClientMsg::Register {
                nick,
                password,
                port,
                client,
                link,
                email
            }
        ),
        nick().prop_map(|nick| ClientMsg::NickCheck { nick }),
        file_info().prop_map(ClientMsg::Share),
        name().prop_map(|name| ClientMsg::Unshare { name }),
        Just(ClientMsg::UnshareAll),
        query().prop_map(ClientMsg::Search),
        (nick(), name()).prop_map(|(nick, file)| ClientMsg::DownloadRequest { nick, file }),
        (nick(), text()).prop_map(|(to, text)| ClientMsg::PrivateMessage { to, text }),
        nick().prop_map(|nick| ClientMsg::HotlistAdd { nick }),
        nick().prop_map(|nick| ClientMsg::HotlistInit { nick }),
        nick().prop_map(|nick| ClientMsg::Browse { nick }),
        Just(ClientMsg::Stats),
        Just(ClientMsg::Downloading),
        Just(ClientMsg::DownloadDone),
        Just(ClientMsg::Uploading),
        Just(ClientMsg::UploadDone),
        nick().prop_map(|nick| ClientMsg::HotlistRemove { nick }),
        word().prop_map(|channel| ClientMsg::Join { channel }),
        word().prop_map(|channel| ClientMsg::Part { channel }),
        (word(), text()).prop_map(|(channel, text)| ClientMsg::Say { channel, text }),
        (word(), text()).prop_map(|(channel, topic)| ClientMsg::SetTopic { channel, topic }),
        (nick(), name()).prop_map(|(nick, file)| ClientMsg::AltDownloadRequest { nick, file }),
        (nick(), name()).prop_map(|(nick, file)| ClientMsg::UploadAccept { nick, file }),
        (word(), prop::option::of(name()))
            .prop_map(|(target, reason)| ClientMsg::Ban { target, reason }),
        word().prop_map(|target| ClientMsg::Unban { target }),
        Just(ClientMsg::ListChannels),
        nick().prop_map(|nick| ClientMsg::DataPortError { nick }),
        any::<u16>().prop_map(|port| ClientMsg::ChangeDataPort { port }),
        (prop::option::of(word()), prop::option::of(text())).prop_map(|(server, args)| {
            let args = server.as_ref().and(args);
            ClientMsg::ServerPing { server, args }
        }),
        Just(ClientMsg::Motd),
        nick().prop_map(|nick| ClientMsg::DirectBrowse { nick }),
        nick().prop_map(|nick| ClientMsg::DirectBrowseAccept { nick }),
        nick().prop_map(|nick| ClientMsg::PingUser { nick }),
        nick().prop_map(|nick| ClientMsg::PongUser { nick }),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        text().prop_map(|text| ServerMsg::Error { text }),
        word().prop_map(|email| ServerMsg::LoginAck { email }),
        Just(ServerMsg::NickFree),
        Just(ServerMsg::NickTaken),
        Just(ServerMsg::NickInvalid),
        (file_info(), nick(), ip(), link()).prop_map(|(file, nick, ip, link)| {
            ServerMsg::SearchResult(SearchHit {
                file,
                nick,
                ip,
                link,
            })
        }),
        Just(ServerMsg::SearchEnd),
        peer_file().prop_map(ServerMsg::DownloadAck),
        (nick(), text()).prop_map(|(from, text)| ServerMsg::PrivateMessage { from, text }),
        (nick(), name()).prop_map(|(nick, file)| ServerMsg::GetError { nick, file }),
        (nick(), link()).prop_map(|(nick, link)| ServerMsg::HotlistSignon { nick, link }),
        nick().prop_map(|nick| ServerMsg::HotlistSignoff { nick }),
        (nick(), file_info()).prop_map(|(nick, file)| ServerMsg::BrowseEntry { nick, file }),
        (nick(), prop::option::of(ip())).prop_map(|(nick, ip)| ServerMsg::BrowseEnd { nick, ip }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(users, files, gigabytes)| {
            ServerMsg::Stats {
                users,
                files,
                gigabytes,
            }
        }),
        nick().prop_map(|nick| ServerMsg::HotlistAck { nick }),
        nick().prop_map(|nick| ServerMsg::HotlistError { nick }),
        word().prop_map(|channel| ServerMsg::Parted { channel }),
        (word(), nick(), text()).prop_map(|(channel, nick, text)| ServerMsg::ChannelMessage {
            channel,
            nick,
            text
        }),
        text().prop_map(|text| ServerMsg::ErrorMessage { text }),
        word().prop_map(|channel| ServerMsg::JoinAck { channel }),
        channel_user().prop_map(ServerMsg::UserJoined),
        channel_user().prop_map(ServerMsg::UserParted),
        channel_user().prop_map(ServerMsg::ChannelUser),
        word().prop_map(|channel| ServerMsg::ChannelUsersEnd { channel }),
        (word(), text()).prop_map(|(channel, topic)| ServerMsg::Topic { channel, topic }),
        peer_file().prop_map(ServerMsg::AltDownloadAck),
        (nick(), name(), prop::option::of(link()))
            .prop_map(|(nick, file, link)| ServerMsg::UploadRequest { nick, file, link }),
        (nick(), name()).prop_map(|(nick, file)| ServerMsg::AcceptFailed { nick, file }),
        Just(ServerMsg::ChannelListEnd),
        (word(), any::<u32>(), text()).prop_map(|(channel, users, topic)| {
            ServerMsg::ChannelEntry {
                channel,
                users,
                topic,
            }
        }),
        nick().prop_map(|nick| ServerMsg::DataPortError { nick }),
        (prop::option::of(word()), prop::option::of(text())).prop_map(|(server, args)| {
            let args = server.as_ref().and(args);
            ServerMsg::ServerPing { server, args }
        }),
        "[^\x00]{0,60}".prop_map(|text| ServerMsg::Motd { text }),
        (nick(), prop::option::of((ip(), any::<u16>())))
            .prop_map(|(nick, addr)| ServerMsg::DirectBrowseRequest { nick, addr }),
        (nick(), ip(), any::<u16>()).prop_map(|(nick, ip, port)| ServerMsg::DirectBrowseAccept {
            nick,
            ip,
            port
        }),
        (nick(), name()).prop_map(|(nick, text)| ServerMsg::DirectBrowseError { nick, text }),
        nick().prop_map(|nick| ServerMsg::PingUser { nick }),
        nick().prop_map(|nick| ServerMsg::PongUser { nick }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_client_message_round_trips(m in client_msg()) {
        let b = enc_c(&m);
        prop_assert_eq!(dec_c(&b), m);
    }

    #[test]
    fn every_server_message_round_trips(m in server_msg()) {
        let b = enc_s(&m);
        prop_assert_eq!(dec_s(&b), m);
    }

    #[test]
    fn arbitrary_payloads_never_panic_either_decoder(kind in prop_oneof![0u16..1000, any::<u16>()], payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = ClientMsg::decode(kind, &payload);
        let _ = ServerMsg::decode(kind, &payload);
        let _ = SearchQuery::parse(&payload_text(&payload));
    }

    #[test]
    fn mutated_valid_messages_never_panic(m in client_msg(), s in server_msg(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for mut b in [enc_c(&m), enc_s(&s)] {
            if b.len() > 4 {
                let i = 4 + at.index(b.len() - 4);
                b[i] = byte;
                let (_, kind) = parse_header(&b).unwrap();
                let _ = ClientMsg::decode(kind, &b[4..]);
                let _ = ServerMsg::decode(kind, &b[4..]);
                let cut = at.index(b.len() - 4);
                let _ = ClientMsg::decode(kind, &b[4..4 + cut]);
                let _ = ServerMsg::decode(kind, &b[4..4 + cut]);
            }
        }
    }
}

/// Found by the `napster_wire` fuzz target: an error message's text is the whole payload,
/// so its leading spaces are text, not a separator, and survive a round trip.
#[test]
fn message_text_that_is_the_whole_payload_keeps_its_leading_spaces() {
    golden_s(
        ServerMsg::Error {
            text: "  indented".into(),
        },
        0,
        "  indented",
    );
    golden_s(ServerMsg::ErrorMessage { text: " x".into() }, 404, " x");
    let m = ServerMsg::Error { text: " a".into() };
    assert_eq!(dec_s(&enc_s(&m)), m);
}
