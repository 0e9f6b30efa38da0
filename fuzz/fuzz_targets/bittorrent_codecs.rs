//! Arbitrary bytes into every BitTorrent decoder: bencode, metainfo, peer wire (handshake,
//! messages, extension handshake, PEX), tracker HTTP replies and queries, UDP tracker packets.
//! Never a panic; canonical bencode and wire messages re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::bencode::{Limits, decode};
use servent_bittorrent::metainfo::Metainfo;
use servent_bittorrent::tracker::{
    AnnounceRequest, AnnounceResponse, UdpRequest, UdpResponse, decode_scrape, parse_http_response,
    scrape_query,
};
use servent_bittorrent::wire::{ExtHandshake, Handshake, Pex, decode_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode(data, &Limits::strict()) {
        let mut out = Vec::new();
        v.encode_into(&mut out);
        assert_eq!(out, data);
    }
    let _ = decode(data, &Limits::lenient_order());
    let _ = Metainfo::parse(data);
    let _ = Metainfo::from_info_bytes(data);
    let _ = Handshake::decode(data);
    if let Ok(Some((m, used))) = decode_message(data) {
        assert_eq!(m.encode(), data.get(..used).unwrap_or_default());
    }
    let _ = ExtHandshake::decode(data);
    let _ = Pex::decode(data);
    let _ = AnnounceResponse::decode(data);
    let _ = decode_scrape(data);
    let _ = parse_http_response(data);
    let _ = UdpRequest::decode(data);
    let _ = UdpResponse::decode(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = AnnounceRequest::from_query(s);
        let _ = scrape_query(s);
    }
});
