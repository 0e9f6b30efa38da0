//! Random input sequences into the BitTorrent cores — the swarm client (handshakes, messages,
//! connects, closes, tracker replies, commands, timers) and the tracker (HTTP bytes and UDP
//! datagrams). They never panic and their output queues stay bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::client::{Client, ClientCommand, ClientConfig};
use servent_bittorrent::picker::Bitfield;
use servent_bittorrent::storage::MemStorage;
use servent_bittorrent::swarm::synthetic_torrent;
use servent_bittorrent::tracker_server::{Tracker, TrackerConfig};
use servent_bittorrent::wire::{Handshake, Reserved};
use servent_core::{CloseReason, ConnId, Core, Input, Instant, Rng};

fuzz_target!(|data: &[u8]| {
    let meta = synthetic_torrent(1, 70_000, 16 * 1024, "http://127.0.0.1:1/announce");
    let n = meta.piece_count() as u32;
    let have = if data.first().is_some_and(|b| b & 1 == 1) { Bitfield::full(n) } else { Bitfield::new(n) };
    let cfg = ClientConfig::new(*b"-SV0100-fuzzfuzzfuzz", 6881);
    let mut client = Client::new(cfg, &meta, MemStorage::empty(meta.total_length), have, Rng::new(1));
    let mut tracker = Tracker::new(TrackerConfig::default(), Rng::new(2));
    let hs = Handshake { reserved: Reserved::ours(), info_hash: meta.info_hash, peer_id: [7; 20] }.encode();
    let peer = "127.0.0.2:6881".parse().unwrap();
    let mut now = 0u64;
    for op in data.chunks(48) {
        let Some((&kind, rest)) = op.split_first() else { continue };
        now += u64::from(kind & 0x0f) * 700_000;
        let t = Instant::from_micros(now);
        let conn = ConnId::inbound(u64::from(rest.first().copied().unwrap_or(0) % 4));
        match kind >> 4 {
            0 => client.handle_input(t, Input::Connected { conn, peer }),
            1 => client.handle_input(t, Input::Received { conn, data: &hs }),
            2..=7 => client.handle_input(t, Input::Received { conn, data: rest }),
            8 => client.handle_input(t, Input::Closed { conn, reason: CloseReason::Reset }),
            9 => client.handle_input(t, Input::Command(ClientCommand::AddPeers { id: 1, peers: vec![peer] })),
            10 => client.handle_input(t, Input::ConnectFailed { conn: ConnId::outbound(u64::from(kind & 3)) }),
            11 => client.handle_input(t, Input::Datagram { from: peer, data: rest }),
            12 => tracker.handle_input(t, Input::Datagram { from: peer, data: rest }),
            13 => {
                tracker.handle_input(t, Input::Connected { conn, peer });
                tracker.handle_input(t, Input::Received { conn, data: rest });
            }
            _ => {
                client.handle_timeout(t);
                tracker.handle_timeout(t);
            }
        }
        let mut k = 0;
        while client.poll_transmit().is_some() || tracker.poll_transmit().is_some() {
            k += 1;
            assert!(k < 1 << 20, "unbounded output");
        }
        while client.poll_event().is_some() || tracker.poll_event().is_some() {}
    }
});
