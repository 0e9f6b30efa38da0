#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // tests and benches are not cores
//! Server and clients over real sockets on 127.0.0.1: log in, share a folder, search,
//! browse, download directly and through a push, resume an interrupted download, shares
//! vanish on disconnect, accounts and bans survive a restart.

#![cfg(feature = "runtime")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use servent_napster::client::{ClientConfig, ClientEvent};
use servent_napster::net::{
    self, DataPort, RunningServer, ServerOptions, Session, direct_browse, download, serve_session,
    share_list,
};
use servent_napster::server::ServerConfig;
use servent_napster::wire::{ClientMsg, SearchQuery};
use servent_runtime::ShareIndex;

const LOCAL: &str = "127.0.0.1:0";

async fn server(db: &std::path::Path) -> RunningServer {
    let mut o = ServerOptions::new(LOCAL.parse().unwrap(), db.to_path_buf());
    o.config = ServerConfig::for_tests();
    o.seed = Some(11);
    net::start_server(o).await.unwrap()
}

fn cfg(server: SocketAddr, nick: &str, data: Option<&DataPort>) -> ClientConfig {
    let mut c = ClientConfig::new(server, nick, "pw");
    c.data_port = data.map_or(0, |d| d.addr.port());
    c
}

fn query(words: &str) -> SearchQuery {
    SearchQuery {
        contains: vec![words.into()],
        max_results: Some(100),
        ..Default::default()
    }
}

fn content(n: usize) -> Vec<u8> {
    // Starts with digits on purpose: the size answer must not swallow them.
    (0..n)
        .map(|i| b"0123456789abcdef"[(i * 7 + i / 13) % 16])
        .collect()
}

/// A sharing client: folder, data port (unless firewalled), session serving uploads.
async fn sharer(
    server: SocketAddr,
    nick: &str,
    dir: &std::path::Path,
    firewalled: bool,
) -> tokio::task::JoinHandle<()> {
    let share = Arc::new(ShareIndex::scan(dir).unwrap());
    let data = if firewalled {
        None
    } else {
        Some(
            DataPort::bind(LOCAL.parse().unwrap(), Some(share.clone()))
                .await
                .unwrap(),
        )
    };
    let mut s = Session::login(cfg(server, nick, data.as_ref().map(|d| &*d.0)))
        .await
        .unwrap();
    let files = share_list(&share);
    if let Some((d, _)) = &data {
        d.publish_list(&s.nick, &files);
    }
    let n = s.share(files).await.unwrap();
    assert_eq!(n, share.len());
    tokio::spawn(async move {
        let _keep = data;
        let _ = serve_session(&mut s, share, |_| {}).await;
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_browse_download_push_and_resume_over_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(&tmp.path().join("nap.db")).await;
    let a_dir = tmp.path().join("alice");
    let w_dir = tmp.path().join("walled");
    std::fs::create_dir_all(a_dir.join("pixies")).unwrap();
    std::fs::create_dir_all(&w_dir).unwrap();
    let song = content(300_000);
    std::fs::write(a_dir.join("pixies/Debaser.mp3"), &song).unwrap();
    std::fs::write(a_dir.join("other.txt"), b"x").unwrap();
    std::fs::write(w_dir.join("behind the wall.mp3"), content(70_000)).unwrap();
    let alice = sharer(srv.addr, "alice", &a_dir, false).await;
    let walled = sharer(srv.addr, "walled", &w_dir, true).await;

    let out = tmp.path().join("downloads");
    std::fs::create_dir_all(&out).unwrap();
    let (data, data_task) = DataPort::bind(LOCAL.parse().unwrap(), None).await.unwrap();
    let mut me = Session::login(cfg(srv.addr, "getter", Some(&data)))
        .await
        .unwrap();

    let hits = me.search(query("debaser")).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].nick, "alice");
    assert_eq!(hits[0].file.name, "pixies/Debaser.mp3");
    assert_eq!(hits[0].file.size, 300_000);
    assert_eq!(hits[0].ip, std::net::Ipv4Addr::LOCALHOST);

    let files = me.browse("alice").await.unwrap().unwrap();
    assert_eq!(files.len(), 2);
    assert!(me.browse("nobody").await.unwrap().is_none());

    // Resume: a partial file from an interrupted attempt is continued, not restarted.
    std::fs::write(out.join("Debaser.mp3.part"), &song[..123_457]).unwrap();
    let got = download(
        &mut me,
        &data,
        "alice",
        "pixies/Debaser.mp3",
        &out,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(got.resumed_from, 123_457);
    assert!(!got.pushed);
    assert_eq!(std::fs::read(&got.path).unwrap(), song);

    // Firewalled holder: the file is pushed to our data port.
    let got = download(
        &mut me,
        &data,
        "walled",
        "behind the wall.mp3",
        &out,
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(got.pushed);
    assert_eq!(std::fs::read(&got.path).unwrap(), content(70_000));

    // A path that would leave the download folder is refused before anything is asked.
    assert!(net::local_name("../..").is_err());
    assert_eq!(net::local_name("C:\\Music\\x.mp3").unwrap(), "x.mp3");

    // Shares vanish when their owner disconnects.
    alice.abort();
    let mut gone = false;
    for _ in 0..100 {
        if me.search(query("debaser")).await.unwrap().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "alice's shares left the index");

    walled.abort();
    data_task.abort();
    me.close().await;
    let stats = srv.shutdown().await.unwrap();
    assert!(stats.searches >= 2);
    // One 204 for each download, and the 501 of the push.
    assert_eq!(stats.downloads_brokered, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_bans_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("nap.db");
    let srv = server(&db).await;
    let s = Session::login(cfg(srv.addr, "keeper", None)).await.unwrap();
    s.close().await;
    srv.shutdown().await.unwrap();

    // Make keeper an admin at start, ban someone through the protocol, restart again.
    let mut o = ServerOptions::new(LOCAL.parse().unwrap(), db.clone());
    o.config = ServerConfig::for_tests();
    o.admins = vec!["keeper".into()];
    let srv = net::start_server(o).await.unwrap();
    let mut admin = Session::login(cfg(srv.addr, "keeper", None)).await.unwrap();
    admin
        .send(ClientMsg::Ban {
            target: "spammer".into(),
            reason: Some("spam".into()),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    admin.close().await;
    srv.shutdown().await.unwrap();

    let srv = server(&db).await;
    let mut wrong = ClientConfig::new(srv.addr, "keeper", "wrong");
    wrong.data_port = 0;
    let e = Session::login(wrong).await.unwrap_err();
    assert!(e.to_string().contains("Invalid Password"), "{e}");
    let e = Session::login(cfg(srv.addr, "spammer", None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("banned"), "{e}");
    let ok = Session::login(cfg(srv.addr, "keeper", None)).await.unwrap();
    ok.close().await;
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_channel_members_and_private_messages_arrive() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(&tmp.path().join("nap.db")).await;
    let mut a = Session::login(cfg(srv.addr, "ann", None)).await.unwrap();
    let mut b = Session::login(cfg(srv.addr, "ben", None)).await.unwrap();
    for s in [&mut a, &mut b] {
        s.send(ClientMsg::Join {
            channel: "lobby".into(),
        })
        .await
        .unwrap();
        // The join is acknowledged before anyone speaks (two connections race otherwise).
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), s.next_event())
                .await
                .expect("join acknowledged")
                .expect("session open");
            if matches!(
                e,
                ClientEvent::Server(servent_napster::wire::ServerMsg::JoinAck { .. })
            ) {
                break;
            }
        }
    }
    b.send(ClientMsg::Say {
        channel: "lobby".into(),
        text: "hi all".into(),
    })
    .await
    .unwrap();
    b.send(ClientMsg::PrivateMessage {
        to: "ann".into(),
        text: "psst".into(),
    })
    .await
    .unwrap();
    let (mut said, mut whispered) = (false, false);
    while !(said && whispered) {
        let e = tokio::time::timeout(Duration::from_secs(10), a.next_event())
            .await
            .expect("events arrive")
            .expect("session open");
        if let ClientEvent::Server(m) = e {
            use servent_napster::wire::ServerMsg;
            said |= m
                == ServerMsg::ChannelMessage {
                    channel: "lobby".into(),
                    nick: "ben".into(),
                    text: "hi all".into(),
                };
            whispered |= m
                == ServerMsg::PrivateMessage {
                    from: "ben".into(),
                    text: "psst".into(),
                };
        }
    }
    a.close().await;
    b.close().await;
    srv.shutdown().await.unwrap();
}

/// Fifty new users log in at once with the real argon2 cost (19 MiB, 2 passes): their
/// hashes run on blocking threads, a few at a time, and a logged-in user's search is
/// answered while most of those logins are still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_with_real_argon2_costs_does_not_stall_a_search() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let mut o = ServerOptions::new(LOCAL.parse().unwrap(), dir.path().join("nap.db"));
    o.config = ServerConfig {
        login_rate: (10_000.0, 10_000.0),
        max_pending_per_ip: 100,
        ..ServerConfig::default()
    };
    assert_eq!(o.config.argon2, (19 * 1024, 2, 1), "the real cost");
    o.seed = Some(12);
    let srv = net::start_server(o).await.unwrap();
    let mut searcher = Session::login(cfg(srv.addr, "searcher", None))
        .await
        .unwrap();

    const FLOOD: usize = 50;
    let acked = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..FLOOD {
        let (acked, sent, addr) = (acked.clone(), sent.clone(), srv.addr);
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut b = Vec::new();
            ClientMsg::Login {
                nick: format!("flood{i}"),
                password: "pw".into(),
                port: 0,
                client: "flood".into(),
                link: Default::default(),
            }
            .encode(&mut b)
            .unwrap();
            s.write_all(&b).await.unwrap();
            sent.fetch_add(1, Ordering::SeqCst);
            let mut head = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(120), s.read_exact(&mut head))
                .await
                .expect("every login is answered in the end")
                .unwrap();
            if u16::from_le_bytes([head[2], head[3]]) == 3 {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            // Keep the connection until the test ends.
            s
        }));
    }
    while sent.load(Ordering::SeqCst) < FLOOD {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the server read the logins and hand out their hashes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hits = searcher.search(query("nothing")).await.unwrap();
    let done_at_answer = acked.load(Ordering::SeqCst);
    assert!(hits.is_empty());
    assert!(
        done_at_answer < FLOOD / 2,
        "the search was answered while logins waited ({done_at_answer} of {FLOOD} done)"
    );
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.unwrap());
    }
    assert_eq!(acked.load(Ordering::SeqCst), FLOOD, "every login succeeded");
    searcher.close().await;
    srv.shutdown().await.unwrap();
    let store = servent_napster::store::Store::open(&dir.path().join("nap.db")).unwrap();
    assert_eq!(store.accounts().unwrap().len(), FLOOD + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_browse_fetches_the_list_from_the_browsee_or_takes_its_push() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(&tmp.path().join("nap.db")).await;
    let a_dir = tmp.path().join("alice");
    let w_dir = tmp.path().join("walled");
    std::fs::create_dir_all(a_dir.join("pixies")).unwrap();
    std::fs::create_dir_all(&w_dir).unwrap();
    std::fs::write(a_dir.join("pixies/Debaser.mp3"), content(1000)).unwrap();
    std::fs::write(a_dir.join("Gigantic.mp3"), content(2000)).unwrap();
    std::fs::write(w_dir.join("behind the wall.mp3"), content(3000)).unwrap();
    let alice = sharer(srv.addr, "alice", &a_dir, false).await;
    let walled = sharer(srv.addr, "walled", &w_dir, true).await;
    let (data, data_task) = DataPort::bind(LOCAL.parse().unwrap(), None).await.unwrap();
    let mut me = Session::login(cfg(srv.addr, "browser", Some(&data)))
        .await
        .unwrap();

    // alice has a data port: 640 → 641 with her address, GETLIST, her list.
    let mut got: Vec<(String, u64)> = direct_browse(&mut me, Some(&data), "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.size))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("Gigantic.mp3".to_string(), 2000),
            ("pixies/Debaser.mp3".to_string(), 1000)
        ]
    );
    // The list is the one the server has (same md5 fields as a server browse).
    let via_server = me.browse("alice").await.unwrap().unwrap();
    let direct = direct_browse(&mut me, Some(&data), "alice").await.unwrap();
    for f in &direct {
        assert!(via_server.contains(f), "{f:?}");
    }

    // walled is firewalled: it connects to our data port and pushes (SENDLIST).
    let pushed = direct_browse(&mut me, Some(&data), "walled").await.unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].name, "behind the wall.mp3");
    assert_eq!(pushed[0].size, 3000);

    // 642s: an offline user; a firewalled browsee when we are firewalled too.
    let e = direct_browse(&mut me, Some(&data), "nobody")
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "nobody is not online.");
    let mut fw = Session::login(cfg(srv.addr, "fw", None)).await.unwrap();
    let e = direct_browse(&mut fw, None, "walled").await.unwrap_err();
    assert!(e.to_string().contains("firewalled"), "{e}");
    fw.close().await;

    me.close().await;
    data_task.abort();
    alice.abort();
    walled.abort();
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_direct_browse_requests_makes_a_firewalled_sharer_push_a_bounded_number() {
    let tmp = tempfile::tempdir().unwrap();
    let srv = server(&tmp.path().join("nap.db")).await;
    let w_dir = tmp.path().join("walled");
    std::fs::create_dir_all(&w_dir).unwrap();
    std::fs::write(w_dir.join("a.mp3"), content(10)).unwrap();
    let walled = sharer(srv.addr, "walled", &w_dir, true).await;
    // The "browser" listens but never greets, so every push the sharer starts stays open.
    let trap = tokio::net::TcpListener::bind(LOCAL).await.unwrap();
    let mut c = ClientConfig::new(srv.addr, "flooder", "pw");
    c.data_port = trap.local_addr().unwrap().port();
    let mut me = Session::login(c).await.unwrap();
    for _ in 0..60 {
        me.send(ClientMsg::DirectBrowse {
            nick: "walled".into(),
        })
        .await
        .unwrap();
    }
    let mut held = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while let Ok(Ok((s, _))) = tokio::time::timeout_at(deadline, trap.accept()).await {
        held.push(s);
    }
    assert_eq!(held.len(), net::MAX_PUSHES, "pushes at once");
    me.close().await;
    walled.abort();
    srv.shutdown().await.unwrap();
}
