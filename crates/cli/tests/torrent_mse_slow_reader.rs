//! A peer that stops reading in the middle of an MSE-encrypted upload (issue 13): the seeder
//! must pace it (stop producing for it while its socket is full) or close it, and never drop
//! bytes of the stream. A dropped byte would desynchronise RC4 for the rest of the connection,
//! so the test decrypts everything that arrives after the peer resumes reading and checks every
//! block against the file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use servent_bittorrent::metainfo::InfoHash;
use servent_bittorrent::mse::{CRYPTO_RC4, Initiator, MseConfig, MseStream};
use servent_core::Rng;

mod common;
use common::content;
use common::torrent::{create, info_hash, seeder};

const PIECE: usize = 256 << 10;
const BLOCK: usize = 16 << 10;

/// A connection whose receive buffer is tiny, so a peer that stops reading fills it quickly
/// and the seeder's own queue is what holds the rest.
fn connect_small_window(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let t: TcpStream = sock.into();
    t.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    t
}

struct Conn {
    sock: TcpStream,
    stream: MseStream,
    plain: Vec<u8>,
    eof: bool,
}

impl Conn {
    fn send(&mut self, msg: &[u8]) {
        let mut b = msg.to_vec();
        self.stream.encrypt(&mut b);
        self.sock.write_all(&b).unwrap();
    }

    /// Reads once (up to 64 KiB), decrypting into `plain`.
    fn fill(&mut self) {
        let mut buf = vec![0u8; 64 << 10];
        match self.sock.read(&mut buf) {
            Ok(0) | Err(_) => self.eof = true,
            Ok(n) => {
                let mut got = buf[..n].to_vec();
                self.stream.decrypt(&mut got);
                self.plain.extend_from_slice(&got);
            }
        }
    }

    /// The next whole peer-wire message (id and payload; `None` for a keep-alive), or `Err` at
    /// the end of the stream.
    fn next(&mut self) -> Result<Option<(u8, Vec<u8>)>, ()> {
        loop {
            if self.plain.len() >= 4 {
                let len = u32::from_be_bytes(self.plain[..4].try_into().unwrap()) as usize;
                assert!(
                    len <= 1 << 20,
                    "absurd message length {len}: the stream is corrupt"
                );
                if self.plain.len() >= 4 + len {
                    let m: Vec<u8> = self.plain.drain(..4 + len).collect();
                    return Ok((len > 0).then(|| (m[4], m[5..].to_vec())));
                }
            }
            if self.eof {
                return Err(());
            }
            self.fill();
        }
    }
}

fn msg(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn request(block: usize) -> Vec<u8> {
    let (index, begin) = ((block * BLOCK) / PIECE, (block * BLOCK) % PIECE);
    let mut p = Vec::new();
    p.extend_from_slice(&(index as u32).to_be_bytes());
    p.extend_from_slice(&(begin as u32).to_be_bytes());
    p.extend_from_slice(&(BLOCK as u32).to_be_bytes());
    msg(6, &p)
}

#[test]
fn a_peer_that_stops_reading_an_encrypted_upload_is_paced_and_then_decrypts_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("image.bin");
    let data = content(&src, 8 << 20);
    let blocks = data.len() / BLOCK;
    let (torrent, _) = create(&src, "256K");
    let hex = info_hash(&torrent);
    let mut ih = [0u8; 20];
    for (i, b) in ih.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let (seeder, listen) = seeder(&torrent, &src, &["--encryption", "require"]);

    // MSE as the initiator, RC4 only, our BitTorrent handshake as the initial payload.
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0u8; 8]);
    hs.extend_from_slice(&ih);
    hs.extend_from_slice(b"-TS0001-slowreader01");
    let mut sock = connect_small_window(listen.parse().unwrap());
    let cfg = MseConfig {
        allowed: CRYPTO_RC4,
        ..MseConfig::default()
    };
    let mut out = Vec::new();
    let mut init = Initiator::new(InfoHash(ih), &cfg, &mut Rng::new(7), &hs, &mut out).unwrap();
    sock.write_all(&out).unwrap();
    let est = loop {
        let mut buf = [0u8; 4096];
        let n = sock.read(&mut buf).unwrap();
        assert!(n > 0, "the seeder closed the MSE handshake");
        out.clear();
        let done = init.handle_input(&buf[..n], &mut out).unwrap();
        sock.write_all(&out).unwrap();
        if let Some(est) = done {
            break est;
        }
    };
    let mut c = Conn {
        sock,
        stream: est.stream,
        plain: est.received,
        eof: false,
    };
    while c.plain.len() < 68 && !c.eof {
        c.fill();
    }
    assert!(c.plain.len() >= 68, "no BitTorrent handshake after MSE");
    let theirs: Vec<u8> = c.plain.drain(..68).collect();
    assert_eq!(
        &theirs[28..48],
        &ih,
        "the seeder answered for another torrent"
    );
    c.send(&msg(2, &[])); // interested
    loop {
        match c.next() {
            Ok(Some((1, _))) => break, // unchoke
            Ok(_) => {}
            Err(()) => panic!("the seeder closed before unchoking us"),
        }
    }

    // Ask for 400 blocks (6.25 MiB, under the 500 the seeder accepts), then stop reading
    // while the seeder has most of them still to send.
    let first = 400.min(blocks);
    for b in 0..first {
        c.send(&request(b));
    }
    std::thread::sleep(Duration::from_secs(8));

    // Resume: every block that arrives must decrypt to the file's bytes; then ask for the rest.
    let mut got = vec![false; blocks];
    let mut asked = first;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut closed = false;
    while got.iter().filter(|g| **g).count() < blocks && Instant::now() < deadline {
        match c.next() {
            Ok(Some((7, p))) => {
                let index = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
                let begin = u32::from_be_bytes(p[4..8].try_into().unwrap()) as usize;
                let at = index * PIECE + begin;
                assert!(
                    p[8..] == data[at..at + p.len() - 8],
                    "block at {at} does not decrypt to the file's bytes: the stream lost or reordered bytes"
                );
                got[at / BLOCK] = true;
                if asked < blocks {
                    c.send(&request(asked));
                    asked += 1;
                }
            }
            Ok(Some((id, _))) => assert!(
                matches!(id, 0 | 1 | 4 | 5 | 9 | 13..=17 | 20),
                "unknown message id {id}: the stream is corrupt"
            ),
            Ok(None) => {}
            Err(()) => {
                closed = true;
                break;
            }
        }
    }
    let n = got.iter().filter(|g| **g).count();
    eprintln!(
        "after an 8 s stall: {n} of {blocks} blocks received and verified (closed: {closed})"
    );
    assert!(
        !closed,
        "the seeder closed a peer that only paused reading for 8 s ({n} of {blocks} blocks verified before the close)"
    );
    assert_eq!(n, blocks, "not every block arrived within 60 s of resuming");
    let _ = seeder.pid();
}
