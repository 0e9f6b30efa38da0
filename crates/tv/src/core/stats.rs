//! What a viewer measures: startup delay, lag, continuity, upload and control overhead.

use std::time::Duration;

use servent_core::Instant;

/// Most lag samples kept for percentiles (the newest).
pub const MAX_LAG_SAMPLES: usize = 4096;

/// A node's measurements.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// When it started.
    pub joined_at: Option<Instant>,
    /// When playback started.
    pub started_at: Option<Instant>,
    /// From joining to the first chunk played.
    pub startup: Option<Duration>,
    /// Chunks handed to the player.
    pub played: u64,
    /// Of those, the ones that came before their deadline.
    pub on_time: u64,
    /// Chunks skipped because they were not here by their deadline.
    pub skipped: u64,
    /// Playout lag of the chunks played, µs (the newest [`MAX_LAG_SAMPLES`]).
    pub lags_us: Vec<i64>,
    /// Chunk payload bytes sent.
    pub video_up: u64,
    /// Chunk payload bytes received (verified or not).
    pub video_down: u64,
    /// Every other byte sent (headers, maps, haves, requests, tracker traffic).
    pub control_up: u64,
    /// Every other byte received.
    pub control_down: u64,
    /// Partners dropped for forged or tampered chunks.
    pub forgers_dropped: u64,
    /// Chunks received twice.
    pub duplicates: u64,
    /// Chunks fetched from another partner after a request timed out.
    pub repaired: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Partners' requests refused because their upload queue was full.
    pub requests_refused: u64,
    /// Partners dropped because they went silent.
    pub partners_lost: u64,
    /// Most chunks held at once.
    pub held_peak: usize,
}

impl NodeStats {
    pub(crate) fn record_play(&mut self, on_time: bool, lag_us: i64) {
        self.played += 1;
        self.on_time += u64::from(on_time);
        if self.lags_us.len() >= MAX_LAG_SAMPLES {
            self.lags_us.remove(0);
        }
        self.lags_us.push(lag_us);
    }

    /// Chunks played on time ÷ chunks due (1 before anything was due).
    pub fn continuity(&self) -> f64 {
        let due = self.played + self.skipped;
        if due == 0 {
            1.0
        } else {
            self.on_time as f64 / due as f64
        }
    }

    /// The `p`-th percentile (0..=100) of the lag, seconds.
    pub fn lag_percentile(&self, p: f64) -> Option<f64> {
        if self.lags_us.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.lags_us.iter().map(|l| *l as f64 / 1e6).collect();
        v.sort_by(f64::total_cmp);
        Some(servent_sim::percentile(&v, p))
    }

    /// Control bytes ÷ video bytes, both directions.
    pub fn control_overhead(&self) -> f64 {
        let video = self.video_up + self.video_down;
        if video == 0 {
            0.0
        } else {
            (self.control_up + self.control_down) as f64 / video as f64
        }
    }
}
