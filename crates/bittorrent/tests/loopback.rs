#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Real sockets on 127.0.0.1: the tracker core and three client cores under the tokio driver.

use std::time::Duration;

use servent_bittorrent::client::{
    Client, ClientCommand, ClientConfig, ClientEvent, TrackerEndpoint, make_peer_id,
};
use servent_bittorrent::create::{CreateOptions, create_torrent};
use servent_bittorrent::picker::Bitfield;
use servent_bittorrent::storage::{FileStorage, recheck};
use servent_bittorrent::tracker_server::{Tracker, TrackerConfig};
use servent_core::Rng;
use servent_runtime::{NodeConfig, spawn};

fn local() -> NodeConfig {
    NodeConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        ..NodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leechers_download_from_a_seeder_over_real_sockets_via_http_and_udp_trackers() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("seed").join("data.bin");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    let mut rng = Rng::new(5);
    let content: Vec<u8> = (0..3_000_000).map(|_| rng.below(256) as u8).collect();
    std::fs::write(&src, &content).unwrap();

    let tracker = spawn(local(), |_| {
        Tracker::new(TrackerConfig::default(), Rng::new(1))
    })
    .await
    .unwrap();
    let taddr = tracker.local.tcp.unwrap();
    let uaddr = tracker.local.udp.unwrap();
    let opts = CreateOptions {
        // Tier 1 is a dead HTTP tracker, so the clients must fail over (BEP 12); the UDP one
        // in tier 2 is the same tracker core over BEP 15.
        trackers: vec![
            vec!["http://127.0.0.1:1/announce".into()],
            vec![format!("udp://{uaddr}"), format!("http://{taddr}/announce")],
        ],
        piece_length: Some(64 * 1024),
        ..CreateOptions::default()
    };
    let (_, meta) = create_torrent(&src, &opts).unwrap();
    let resolve = |h: &str, p: u16| format!("{h}:{p}").parse().ok();
    let tiers: Vec<Vec<TrackerEndpoint>> = meta
        .trackers
        .iter()
        .map(|t| {
            t.iter()
                .filter_map(|u| TrackerEndpoint::parse(u, resolve))
                .collect()
        })
        .collect();
    let n = meta.piece_count() as u32;

    let mut storage = FileStorage::open_content(&meta, &src).unwrap();
    let good = recheck(&meta, &mut storage).unwrap();
    assert!(good.iter().all(|g| *g));
    let start = |storage: FileStorage, have: Bitfield, seed: u64| {
        let meta = meta.clone();
        let tiers = tiers.clone();
        spawn(local(), move |l| {
            let mut rng = Rng::new(seed);
            let mut cfg = ClientConfig::new(make_peer_id(&mut rng), l.tcp.unwrap().port());
            cfg.trackers = tiers;
            Client::new(cfg, &meta, storage, have, rng)
        })
    };
    let seeder = start(storage, Bitfield::full(n), 10).await.unwrap();
    let mut leechers = Vec::new();
    for i in 0..2 {
        let d = dir.path().join(format!("l{i}"));
        let s = FileStorage::open(&meta, &d).unwrap();
        leechers.push(start(s, Bitfield::new(n), 20 + i).await.unwrap());
    }
    for l in &mut leechers {
        let done = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(ev) = l.next_event().await {
                if ev == ClientEvent::Completed {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(done, Ok(true));
    }
    for (i, l) in leechers.into_iter().enumerate() {
        l.command(ClientCommand::Stop { id: 1 }).await.unwrap();
        let core = l.shutdown().await.unwrap();
        assert!(core.is_complete());
        assert_eq!(
            std::fs::read(dir.path().join(format!("l{i}/data.bin"))).unwrap(),
            content
        );
    }
    seeder.shutdown().await.unwrap();
    tracker.shutdown().await.unwrap();
}
