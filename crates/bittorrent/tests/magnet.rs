#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Magnet URIs (BEP 9): real-world links, bounds, typed errors, round trips.

use std::net::SocketAddr;

use proptest::prelude::*;
use servent_bittorrent::magnet::{MAX_TRACKERS, MAX_URI_LEN, Magnet, MagnetError, PeerAddr};
use servent_bittorrent::metainfo::InfoHash;

/// WebTorrent's published Sintel magnet (trackers, web seed, `xs`), as found on its site.
const SINTEL: &str = "magnet:?xt=urn:btih:08ada5a7a6183aae1e09d831df6748d566095a10&dn=Sintel\
&tr=udp%3A%2F%2Fexplodie.org%3A6969&tr=udp%3A%2F%2Ftracker.coppersurfer.tk%3A6969\
&tr=udp%3A%2F%2Ftracker.empire-js.us%3A1337&tr=udp%3A%2F%2Ftracker.leechers-paradise.org%3A6969\
&tr=udp%3A%2F%2Ftracker.opentrackr.org%3A1337&tr=wss%3A%2F%2Ftracker.btorrent.xyz\
&tr=wss%3A%2F%2Ftracker.fastcast.nz&tr=wss%3A%2F%2Ftracker.openwebtorrent.com\
&ws=https%3A%2F%2Fwebtorrent.io%2Ftorrents%2F&xs=https%3A%2F%2Fwebtorrent.io%2Ftorrents%2Fsintel.torrent";

#[test]
fn webtorrent_sintel_magnet_parses_every_field() {
    let m = Magnet::parse(SINTEL).unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "08ada5a7a6183aae1e09d831df6748d566095a10"
    );
    assert_eq!(m.name.as_deref(), Some("Sintel"));
    assert_eq!(m.trackers.len(), 8);
    assert_eq!(m.trackers[0], "udp://explodie.org:6969");
    assert_eq!(m.trackers[7], "wss://tracker.openwebtorrent.com");
    assert_eq!(m.web_seeds, vec!["https://webtorrent.io/torrents/"]);
    assert!(m.peers.is_empty());
    assert_eq!(m.select_only, None);
}

#[test]
fn base32_magnet_with_plus_spaces_and_x_pe_parses() {
    // Base32 form of the Sintel hash, as older clients (and some sites) write it.
    let m = Magnet::parse(
        "magnet:?xt=urn:btih:BCW2LJ5GDA5K4HQJ3AY56Z2I2VTASWQQ&dn=Big+Buck%20Bunny\
         &x.pe=10.0.0.1:6881&x.pe=%5B2001:db8::1%5D:51413&x.pe=peer.example.org:6881",
    )
    .unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "08ada5a7a6183aae1e09d831df6748d566095a10"
    );
    assert_eq!(m.name.as_deref(), Some("Big Buck Bunny"));
    assert_eq!(
        m.peers,
        vec![
            PeerAddr::Ip("10.0.0.1:6881".parse::<SocketAddr>().unwrap()),
            PeerAddr::Ip("[2001:db8::1]:51413".parse::<SocketAddr>().unwrap()),
            PeerAddr::Name {
                host: "peer.example.org".into(),
                port: 6881
            },
        ]
    );
}

#[test]
fn hybrid_v1_v2_magnet_uses_the_btih_and_ignores_btmh_and_unknown_keys() {
    let m = Magnet::parse(
        "magnet:?xt=urn:btih:631a31dd0a46257d5078c0dee4e66e26f73e42ac\
         &xt=urn:btmh:1220d8dd32ac93357c368556af3ac1d95c9d76bd0dff6fa9833ecdac3d53134efabb\
         &dn=bittorrent-v1-v2-hybrid-test&kt=a+b&xl=1234&foo=bar",
    )
    .unwrap();
    assert_eq!(
        m.info_hash.to_hex(),
        "631a31dd0a46257d5078c0dee4e66e26f73e42ac"
    );
    assert_eq!(m.name.as_deref(), Some("bittorrent-v1-v2-hybrid-test"));
}

#[test]
fn numbered_tracker_keys_and_duplicates_are_merged_in_order() {
    let m = Magnet::parse(
        "magnet:?xt=urn:btih:0000000000000000000000000000000000000001\
         &tr.1=http%3A%2F%2Fa%2Fannounce&tr.2=http%3A%2F%2Fb%2Fannounce&tr=http%3A%2F%2Fa%2Fannounce",
    )
    .unwrap();
    assert_eq!(m.trackers, vec!["http://a/announce", "http://b/announce"]);
}

#[test]
fn bep53_select_only_ranges_parse_and_select() {
    let m =
        Magnet::parse("magnet:?xt=urn:btih:0000000000000000000000000000000000000001&so=0,2,4,6-8")
            .unwrap();
    assert_eq!(m.select_only, Some(vec![(0, 0), (2, 2), (4, 4), (6, 8)]));
    assert!(m.selects(7) && m.selects(0) && !m.selects(1) && !m.selects(9));
    assert!(Magnet::new(InfoHash([1; 20])).selects(12345));
}

#[test]
fn malformed_magnets_give_typed_errors() {
    let h = "xt=urn:btih:0000000000000000000000000000000000000001";
    let cases: Vec<(String, MagnetError)> = vec![
        ("http://x/?a=b".into(), MagnetError::Scheme),
        ("magnet:?dn=x".into(), MagnetError::NoInfoHash),
        ("magnet:?xt=urn:btmh:1220aa".into(), MagnetError::NoInfoHash),
        (
            "magnet:?xt=urn:btih:123".into(),
            MagnetError::BadInfoHash("123".into()),
        ),
        (
            format!("magnet:?{h}&xt=urn:btih:0000000000000000000000000000000000000002"),
            MagnetError::ConflictingInfoHash,
        ),
        (format!("magnet:?{h}&dn=%ZZ"), MagnetError::Encoding("dn")),
        (
            format!("magnet:?{h}&dn=%FF%FE"),
            MagnetError::Encoding("dn"),
        ),
        (
            format!("magnet:?{h}&x.pe=nope"),
            MagnetError::BadPeer("nope".into()),
        ),
        (
            format!("magnet:?{h}&x.pe=1.2.3.4:0"),
            MagnetError::BadPeer("1.2.3.4:0".into()),
        ),
        (
            format!("magnet:?{h}&so=3-1"),
            MagnetError::BadSelect("3-1".into()),
        ),
        (
            format!("magnet:?{h}&so=1,,2"),
            MagnetError::BadSelect("1,,2".into()),
        ),
    ];
    for (uri, want) in cases {
        assert_eq!(Magnet::parse(&uri), Err(want), "{uri}");
    }
}

#[test]
fn oversized_uris_and_too_many_trackers_are_refused() {
    let h = "magnet:?xt=urn:btih:0000000000000000000000000000000000000001";
    let long = format!("{h}&dn={}", "a".repeat(MAX_URI_LEN));
    assert_eq!(Magnet::parse(&long), Err(MagnetError::TooLong));
    let mut many = h.to_string();
    for i in 0..=MAX_TRACKERS {
        many.push_str(&format!("&tr=http://t{i}/a"));
    }
    assert_eq!(Magnet::parse(&many), Err(MagnetError::TooMany("tr")));
}

#[test]
fn to_uri_is_canonical_and_round_trips() {
    let m = Magnet::parse(SINTEL).unwrap();
    let uri = m.to_uri();
    assert!(uri.starts_with(
        "magnet:?xt=urn:btih:08ada5a7a6183aae1e09d831df6748d566095a10&dn=Sintel&tr=udp%3A%2F%2Fexplodie.org%3A6969&"
    ));
    assert_eq!(Magnet::parse(&uri).unwrap(), m);
}

fn arb_magnet() -> impl Strategy<Value = Magnet> {
    (
        any::<[u8; 20]>(),
        proptest::option::of("\\PC{0,40}"),
        proptest::collection::btree_set("[a-z]{1,8}://[a-z0-9.&=%+ ]{1,20}(:[0-9]{1,5})?", 0..5),
        proptest::collection::btree_set(any::<(u32, u16)>(), 0..4),
        proptest::option::of(proptest::collection::vec((0u32..100, 0u32..100), 1..5)),
    )
        .prop_map(|(h, name, trackers, peers, so)| Magnet {
            info_hash: InfoHash(h),
            name,
            trackers: trackers.into_iter().collect(),
            peers: peers
                .into_iter()
                .filter(|&(_, p)| p != 0)
                .map(|(ip, p)| PeerAddr::Ip(SocketAddr::from((ip.to_be_bytes(), p))))
                .collect(),
            web_seeds: vec!["http://seed.example/files/".into()],
            select_only: so.map(|v| v.into_iter().map(|(a, b)| (a.min(b), a.max(b))).collect()),
        })
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics_the_parser(s in "\\PC{0,300}") {
        let _ = Magnet::parse(&s);
        let _ = Magnet::parse(&format!("magnet:?{s}"));
        let _ = Magnet::parse(&format!("magnet:?xt=urn:btih:{s}"));
    }

    #[test]
    fn parse_of_to_uri_gives_the_same_magnet(m in arb_magnet()) {
        prop_assert_eq!(Magnet::parse(&m.to_uri()).unwrap(), m);
    }
}
