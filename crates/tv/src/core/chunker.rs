//! The broadcaster's chunker: cuts a live MPEG-TS byte stream into signed chunks of whole
//! TS packets. A chunk starts at a video random access point where it can — just before the
//! PAT/PMT that ffmpeg writes ahead of each keyframe, so a viewer that starts there has the
//! tables and the keyframe — and is cut early when it grows to `max_packets` or its first
//! packet is older than `max_age` (then it is not a keyframe chunk).

use std::collections::VecDeque;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use servent_core::Instant;

use crate::wire::chunk::{ChannelId, Chunk};
use crate::wire::ts::{self, TS_PACKET};

/// How the chunker cuts.
#[derive(Debug, Clone, Copy)]
pub struct ChunkerConfig {
    /// Most TS packets in a chunk.
    pub max_packets: usize,
    /// A chunk whose first packet is this old is cut at the next timer.
    pub max_age: Duration,
}

impl Default for ChunkerConfig {
    /// 100 packets (18.8 kB, about 90 ms at 1.7 Mbit/s) or 200 ms.
    fn default() -> ChunkerConfig {
        ChunkerConfig {
            max_packets: 100,
            max_age: Duration::from_millis(200),
        }
    }
}

/// Counters of what the chunker saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkerStats {
    /// TS packets taken in.
    pub packets: u64,
    /// Bytes skipped to find the sync byte again.
    pub resync_bytes: u64,
    /// Chunks made.
    pub chunks: u64,
    /// Chunks that start at a random access point.
    pub keyframe_chunks: u64,
}

/// The chunker (see the module documentation).
#[derive(Debug)]
pub struct Chunker {
    key: SigningKey,
    cfg: ChunkerConfig,
    seq: u64,
    partial: Vec<u8>,
    packets: Vec<u8>,
    started: Option<(Instant, u64)>,
    cur_key: bool,
    psi_run: Option<usize>,
    pmt_pids: Vec<u16>,
    video_pids: Vec<u16>,
    out: VecDeque<Chunk>,
    stats: ChunkerStats,
    ended: bool,
}

impl Chunker {
    /// A chunker signing with `key` (the channel id is its public key).
    pub fn new(key: SigningKey, cfg: ChunkerConfig) -> Chunker {
        Chunker {
            key,
            cfg,
            seq: 0,
            partial: Vec::with_capacity(TS_PACKET),
            packets: Vec::new(),
            started: None,
            cur_key: false,
            psi_run: None,
            pmt_pids: Vec::new(),
            video_pids: Vec::new(),
            out: VecDeque::new(),
            stats: ChunkerStats::default(),
            ended: false,
        }
    }

    /// The channel id.
    pub fn channel(&self) -> ChannelId {
        self.key.verifying_key().to_bytes()
    }

    /// What it has counted.
    pub fn stats(&self) -> ChunkerStats {
        self.stats
    }

    /// Takes bytes of the stream, cut anywhere, at `now` (`wall_us`: the wall clock).
    pub fn push(&mut self, now: Instant, wall_us: u64, mut data: &[u8]) {
        while !data.is_empty() {
            if self.partial.is_empty() {
                let skip = data
                    .iter()
                    .position(|&b| b == ts::SYNC)
                    .unwrap_or(data.len());
                self.stats.resync_bytes += skip as u64;
                data = &data[skip..];
                if data.is_empty() {
                    break;
                }
            }
            let take = (TS_PACKET - self.partial.len()).min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == TS_PACKET {
                let p = std::mem::take(&mut self.partial);
                self.packet(now, wall_us, &p);
                self.partial = p;
                self.partial.clear();
            }
        }
    }

    fn is_psi(&self, pid: u16) -> bool {
        pid < 0x20 || self.pmt_pids.contains(&pid)
    }

    fn packet(&mut self, now: Instant, wall_us: u64, p: &[u8]) {
        let Ok(h) = ts::parse_header(p) else {
            self.stats.resync_bytes += TS_PACKET as u64;
            return;
        };
        self.stats.packets += 1;
        if h.pid == 0 && h.pusi {
            let pids = ts::pat_pmt_pids(p, &h);
            if !pids.is_empty() {
                self.pmt_pids = pids;
            }
        } else if h.pusi && self.pmt_pids.contains(&h.pid) {
            let v = ts::pmt_video_pids(p, &h);
            if !v.is_empty() {
                self.video_pids = v;
            }
        }
        let n = self.packets.len() / TS_PACKET;
        let rap =
            h.random_access && (self.video_pids.is_empty() || self.video_pids.contains(&h.pid));
        if rap {
            let cut = self.psi_run.unwrap_or(n);
            if cut > 0 {
                let rest = self.packets.split_off(cut * TS_PACKET);
                self.emit(false);
                self.packets = rest;
                self.started = Some((now, wall_us));
            }
            self.cur_key = true;
        }
        if self.is_psi(h.pid) {
            if self.psi_run.is_none() {
                self.psi_run = Some(self.packets.len() / TS_PACKET);
            }
        } else {
            self.psi_run = None;
        }
        if self.started.is_none() {
            self.started = Some((now, wall_us));
        }
        self.packets.extend_from_slice(p);
        if self.packets.len() / TS_PACKET >= self.cfg.max_packets {
            self.emit(false);
        }
    }

    fn emit(&mut self, end: bool) {
        if self.packets.is_empty() && !end {
            return;
        }
        let wall = self.started.map_or(0, |(_, w)| w);
        let payload = std::mem::take(&mut self.packets);
        let c = Chunk::sign(&self.key, self.seq, wall, self.cur_key, end, payload);
        self.stats.chunks += 1;
        self.stats.keyframe_chunks += u64::from(self.cur_key);
        self.seq += 1;
        self.cur_key = false;
        self.psi_run = None;
        self.started = None;
        self.out.push_back(c);
    }

    /// Cuts a chunk that has grown old.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((t, _)) = self.started
            && now >= t + self.cfg.max_age
        {
            self.emit(false);
        }
    }

    /// When [`Chunker::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.started.map(|(t, _)| t + self.cfg.max_age)
    }

    /// The input has ended: cuts what is left into a last chunk flagged `end`.
    pub fn finish(&mut self, now: Instant, wall_us: u64) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.started.is_none() {
            self.started = Some((now, wall_us));
        }
        self.emit(true);
    }

    /// The next chunk made.
    pub fn poll_chunk(&mut self) -> Option<Chunk> {
        self.out.pop_front()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A packet of `pid`, with random_access_indicator `rai`.
    pub(crate) fn packet(pid: u16, rai: bool) -> Vec<u8> {
        let mut p = vec![0xffu8; TS_PACKET];
        p[0] = ts::SYNC;
        p[1] = ((pid >> 8) as u8) & 0x1f;
        p[2] = pid as u8;
        p[3] = 0x30;
        p[4] = 1;
        p[5] = if rai { 0x40 } else { 0 };
        p
    }

    #[test]
    fn chunks_start_at_the_tables_before_a_keyframe() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut c = Chunker::new(key, ChunkerConfig::default());
        let mut s = Vec::new();
        for gop in 0..3 {
            s.extend(packet(0, false)); // PAT-like PSI
            s.extend(packet(0x11, false));
            s.extend(packet(0x100, true));
            for i in 0..10 {
                s.extend(packet(0x100 + (i % 2), false));
            }
            let _ = gop;
        }
        // Split the stream at odd places, with garbage in front.
        let mut input = vec![1, 2, 3];
        input.extend(&s);
        for piece in input.chunks(77) {
            c.push(Instant::ZERO, 5, piece);
        }
        c.finish(Instant::ZERO, 6);
        let chunks: Vec<Chunk> = std::iter::from_fn(|| c.poll_chunk()).collect();
        assert_eq!(c.stats().resync_bytes, 3);
        assert_eq!(chunks.len(), 3);
        for (i, ch) in chunks.iter().enumerate() {
            assert_eq!(ch.seq, i as u64);
            assert!(ch.keyframe);
            assert_eq!(ch.payload.len(), 13 * TS_PACKET);
            assert_eq!(ch.payload[2], 0, "starts with the PAT");
            ch.verify(&c.channel()).unwrap();
        }
        assert!(chunks[2].end);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.payload.clone()).collect();
        assert_eq!(joined, s);
    }

    #[test]
    fn long_gops_are_cut_by_size_and_age() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let cfg = ChunkerConfig {
            max_packets: 4,
            max_age: Duration::from_millis(100),
        };
        let mut c = Chunker::new(key, cfg);
        c.push(Instant::ZERO, 0, &packet(0x100, true));
        for _ in 0..4 {
            c.push(Instant::ZERO, 0, &packet(0x100, false));
        }
        let a = c.poll_chunk().unwrap();
        assert!(a.keyframe && a.payload.len() == 4 * TS_PACKET);
        assert!(c.poll_chunk().is_none());
        assert_eq!(c.poll_timeout(), Some(Instant::from_millis(100)));
        c.handle_timeout(Instant::from_millis(100));
        let b = c.poll_chunk().unwrap();
        assert!(!b.keyframe && b.payload.len() == TS_PACKET && b.seq == 1);
    }
}
