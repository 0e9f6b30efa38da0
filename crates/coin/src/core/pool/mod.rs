//! A Stratum v1 mining pool, sans-IO.
//!
//! [`Pool`] owns the miners' sessions, the current jobs ([`jobs`]), the share checks
//! ([`shares`]) and the PPLNS window ([`pplns`]); [`client`] is the miner's side. Inputs:
//! a connection ([`Pool::handle_connect`]), a line a miner sent ([`Pool::handle_line`]), a
//! disconnect, and a block template from the node ([`Pool::handle_template`]), each with
//! `now` (servent's [`Instant`]; it never goes backwards). After every input drain
//! [`Pool::poll_transmit`] (lines for sessions) and then [`Pool::poll_event`] (blocks to
//! submit, sessions to close).
//!
//! Each session gets a 4-byte extranonce1; miners choose the 4-byte extranonce2. A user name
//! is the P2PKH address to pay, optionally followed by `.worker`. Every job's coinbase pays
//! the window's miners in proportion to their accepted shares (all shares carry the pool's one
//! share difficulty), so a block found pays the shares that came before it. A share meeting
//! the network target makes [`PoolEvent::BlockFound`] with the whole block; the pool then
//! treats every job on that previous block as stale until the next template.
pub mod client;
pub mod jobs;
pub mod pplns;
pub mod shares;

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use servent_core::{Instant, KeyedSet, Rng, keyed_set};
use thiserror::Error;

use crate::core::node::address::script_for_address;
use crate::core::pow::U256;
use crate::wire::stratum::{
    self, ClientMessage, ErrorTriple, Id, ServerMessage, Subscribed, decode_client,
};
use crate::wire::{Block, Transaction};
use jobs::ShareKey;
pub use jobs::{Job, Template};
use pplns::Pplns;
pub use shares::Reject;

/// Bytes of extranonce2 a miner rolls.
pub const EXTRANONCE2_SIZE: usize = 4;
/// Jobs kept for late shares (older ones are stale).
pub const MAX_JOBS: usize = 8;
/// Workers one session may authorize.
pub const MAX_WORKERS: usize = 8;
/// Users the statistics remember (the oldest without a connection are forgotten first).
pub const MAX_USERS: usize = 4096;
/// Malformed lines a session may send before it is closed.
pub const MAX_STRIKES: u32 = 8;
/// Blocks found that the statistics list.
pub const MAX_BLOCKS_LISTED: usize = 32;
/// Seconds of the hash-rate estimate's window.
pub const RATE_SECS: u64 = 60;

/// A session handle (minted by the pool).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// How the pool runs.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The P2PKH version byte of the network (user names are addresses of it).
    pub p2pkh_version: u8,
    /// Share difficulty; `None`: half the network difficulty of the first template.
    pub share_difficulty: Option<f64>,
    /// PPLNS window in shares.
    pub window: usize,
    /// Pool fee in basis points (0 unless a fee address is given).
    pub fee_bp: u32,
    /// Where the fee goes (a P2PKH address).
    pub fee_address: Option<String>,
    /// Sessions at once.
    pub max_sessions: usize,
    /// Unix time (s) at `Instant::ZERO`.
    pub unix_at_zero: u64,
    /// Pushed into every coinbase after the extranonces.
    pub tag: Vec<u8>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            p2pkh_version: crate::core::node::address::REGTEST_P2PKH,
            share_difficulty: None,
            window: 1000,
            fee_bp: 0,
            fee_address: None,
            max_sessions: 256,
            unix_at_zero: 0,
            tag: b"/servent-pool/".to_vec(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PoolError {
    #[error("share difficulty {share} is not below the network difficulty {network}")]
    ShareDifficultyTooHigh { share: f64, network: f64 },
    #[error("share difficulty {0} is not a positive number")]
    BadShareDifficulty(f64),
    #[error("fee address: {0}")]
    FeeAddress(String),
    #[error("job: {0}")]
    Job(#[from] jobs::JobError),
    #[error("payout: {0}")]
    Payout(#[from] pplns::PayoutError),
}

/// What the driver acts on.
#[derive(Debug, Clone)]
pub enum PoolEvent {
    /// Submit this block to the node.
    BlockFound {
        block: Block,
        height: u32,
        hash: [u8; 32],
        /// The user whose share it was.
        user: String,
        /// The coinbase's payouts (address, satoshis).
        payouts: Vec<(String, i64)>,
    },
    /// Close this session (its transmit queue has been drained).
    Close { session: SessionId, reason: String },
}

#[derive(Debug)]
struct Session {
    extranonce1: [u8; 4],
    subscribed: bool,
    /// worker name → the user (address) it pays.
    workers: BTreeMap<String, String>,
    strikes: u32,
    closing: bool,
}

#[derive(Debug, Default, Clone)]
struct UserStats {
    accepted: u64,
    rejected: BTreeMap<&'static str, u64>,
    blocks: u64,
    sessions: u32,
    /// (second, shares) of the last RATE_SECS seconds.
    recent: VecDeque<(u64, u64)>,
    first_share: Option<u64>,
    last_seen: u64,
}

/// A found block as the statistics list it.
#[derive(Debug, Clone)]
pub struct FoundBlock {
    pub height: u32,
    pub hash: [u8; 32],
    pub user: String,
    pub value: i64,
    pub payouts: Vec<(String, i64)>,
    /// The PPLNS weights (shares per address) the payouts were split by.
    pub weights: BTreeMap<String, u128>,
    /// The node's verdict once known (`None`: accepted; `Some(reason)`: refused).
    pub verdict: Option<Option<String>>,
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    cfg: PoolConfig,
    rng: Rng,
    sessions: BTreeMap<SessionId, Session>,
    next_session: u64,
    next_extranonce1: u32,
    template: Option<Template>,
    jobs: VecDeque<Job>,
    next_job: u64,
    /// A block was found on this prev: its jobs are stale.
    spent_prev: Option<[u8; 32]>,
    /// Header hashes of the shares accepted on the current prev, in two generations (the
    /// older dropped when the newer fills): the same work is one share even when a refreshed
    /// job happens to give the same header.
    seen_hashes: [KeyedSet<[u8; 32]>; 2],
    pplns: Pplns,
    share_target: Option<U256>,
    share_difficulty: f64,
    fee_script: Option<Vec<u8>>,
    users: BTreeMap<String, UserStats>,
    accepted: u64,
    rejected: BTreeMap<&'static str, u64>,
    blocks: VecDeque<FoundBlock>,
    blocks_found: u64,
    blocks_accepted: u64,
    transmit: VecDeque<(SessionId, Vec<u8>)>,
    events: VecDeque<PoolEvent>,
    now: Instant,
}

fn secs(now: Instant) -> u64 {
    now.as_micros() / 1_000_000
}

impl Pool {
    pub fn new(cfg: PoolConfig, mut rng: Rng) -> Result<Pool, PoolError> {
        if let Some(d) = cfg.share_difficulty {
            if !(d.is_finite() && d > 0.0) {
                return Err(PoolError::BadShareDifficulty(d));
            }
        }
        let fee_script = match &cfg.fee_address {
            Some(a) => Some(
                script_for_address(a, cfg.p2pkh_version)
                    .map_err(|e| PoolError::FeeAddress(e.to_string()))?,
            ),
            None => None,
        };
        let next_extranonce1 = rng.next_u64() as u32;
        let seen_hashes = [keyed_set(&mut rng), keyed_set(&mut rng)];
        Ok(Pool {
            pplns: Pplns::new(cfg.window),
            cfg,
            rng,
            sessions: BTreeMap::new(),
            next_session: 1,
            next_extranonce1,
            template: None,
            jobs: VecDeque::new(),
            next_job: 1,
            spent_prev: None,
            seen_hashes,
            share_target: None,
            share_difficulty: 0.0,
            fee_script,
            users: BTreeMap::new(),
            accepted: 0,
            rejected: BTreeMap::new(),
            blocks: VecDeque::new(),
            blocks_found: 0,
            blocks_accepted: 0,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            now: Instant::ZERO,
        })
    }

    fn unix(&self) -> u64 {
        self.cfg.unix_at_zero + secs(self.now)
    }

    /// The share target (after the first template).
    pub fn share_target(&self) -> Option<U256> {
        self.share_target
    }

    /// The share difficulty (after the first template).
    pub fn share_difficulty(&self) -> f64 {
        self.share_difficulty
    }

    /// The current job, if any.
    pub fn current_job(&self) -> Option<&Job> {
        self.jobs.back()
    }

    /// A new connection; `None` if the pool is full.
    pub fn handle_connect(&mut self, now: Instant) -> Option<SessionId> {
        self.now = self.now.max(now);
        if self.sessions.len() >= self.cfg.max_sessions {
            return None;
        }
        let id = SessionId(self.next_session);
        self.next_session += 1;
        // extranonce1 values are unique among live sessions (a counter over 2^32).
        let mut e1 = self.next_extranonce1;
        while self
            .sessions
            .values()
            .any(|s| s.extranonce1 == e1.to_be_bytes())
        {
            e1 = e1.wrapping_add(1);
        }
        self.next_extranonce1 = e1.wrapping_add(1);
        self.sessions.insert(
            id,
            Session {
                extranonce1: e1.to_be_bytes(),
                subscribed: false,
                workers: BTreeMap::new(),
                strikes: 0,
                closing: false,
            },
        );
        Some(id)
    }

    /// The connection is gone.
    pub fn handle_disconnect(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            let users: std::collections::BTreeSet<&String> = s.workers.values().collect();
            for u in users {
                if let Some(st) = self.users.get_mut(u) {
                    st.sessions = st.sessions.saturating_sub(1);
                }
            }
        }
    }

    fn send(&mut self, session: SessionId, m: &ServerMessage) {
        let mut out = Vec::new();
        stratum::encode_server(m, &mut out);
        self.transmit.push_back((session, out));
    }

    fn reply(&mut self, session: SessionId, id: Id, result: Result<Value, ErrorTriple>) {
        self.send(session, &ServerMessage::Response { id, result });
    }

    fn close(&mut self, session: SessionId, reason: &str) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if !s.closing {
                s.closing = true;
                self.events.push_back(PoolEvent::Close {
                    session,
                    reason: reason.to_string(),
                });
            }
        }
    }

    /// One line from `session` (without its newline).
    pub fn handle_line(&mut self, now: Instant, session: SessionId, line: &[u8]) {
        self.now = self.now.max(now);
        let Some(s) = self.sessions.get(&session) else {
            return;
        };
        if s.closing {
            return;
        }
        let msg = match decode_client(line) {
            Ok(m) => m,
            Err(e) => {
                let strikes = self.sessions.get_mut(&session).map_or(0, |s| {
                    s.strikes += 1;
                    s.strikes
                });
                self.reply(
                    session,
                    Id::Null,
                    Err(ErrorTriple {
                        code: stratum::code::OTHER,
                        message: e.to_string(),
                    }),
                );
                if strikes >= MAX_STRIKES {
                    self.close(session, "too many malformed lines");
                }
                return;
            }
        };
        match msg {
            ClientMessage::Subscribe { id, .. } => {
                let Some(s) = self.sessions.get_mut(&session) else {
                    return;
                };
                s.subscribed = true;
                let sub = Subscribed {
                    extranonce1: s.extranonce1.to_vec(),
                    extranonce2_size: EXTRANONCE2_SIZE,
                };
                let r = sub.to_json(&format!("{:016x}", session.0));
                self.reply(session, id, Ok(r));
            }
            ClientMessage::ExtranonceSubscribe { id } => {
                self.reply(session, id, Ok(json!(false)));
            }
            ClientMessage::Authorize { id, user, .. } => self.authorize(session, id, &user),
            ClientMessage::Submit { id, share } => {
                let r = self.submit(session, &share);
                let result = match r {
                    Ok(()) => Ok(json!(true)),
                    Err(rej) => {
                        *self.rejected.entry(rej.name()).or_insert(0) += 1;
                        let user = self
                            .sessions
                            .get(&session)
                            .and_then(|s| s.workers.get(&share.worker).cloned());
                        if let Some(st) = user.and_then(|u| self.users.get_mut(&u)) {
                            *st.rejected.entry(rej.name()).or_insert(0) += 1;
                        }
                        Err(ErrorTriple {
                            code: rej.code(),
                            message: rej.message().to_string(),
                        })
                    }
                };
                self.reply(session, id, result);
            }
            ClientMessage::Response { .. } => {}
        }
    }

    fn authorize(&mut self, session: SessionId, id: Id, user: &str) {
        let address = user.split('.').next().unwrap_or("");
        let ok = script_for_address(address, self.cfg.p2pkh_version).is_ok();
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let room = s.workers.len() < MAX_WORKERS || s.workers.contains_key(user);
        if !ok || !room {
            let message = if ok {
                "too many workers on this connection".to_string()
            } else {
                format!("{address:?} is not a P2PKH address of this network")
            };
            self.reply(
                session,
                id,
                Err(ErrorTriple {
                    code: stratum::code::UNAUTHORIZED,
                    message,
                }),
            );
            return;
        }
        let first = s.workers.is_empty();
        let new_user = !s.workers.values().any(|u| u == address);
        s.workers.insert(user.to_string(), address.to_string());
        let unix = self.unix();
        if !self.users.contains_key(address) && self.users.len() >= MAX_USERS {
            // Forget the least recently seen user without a connection.
            if let Some(old) = self
                .users
                .iter()
                .filter(|(_, st)| st.sessions == 0)
                .min_by_key(|(_, st)| st.last_seen)
                .map(|(k, _)| k.clone())
            {
                self.users.remove(&old);
            }
        }
        if self.users.contains_key(address) || self.users.len() < MAX_USERS {
            let st = self.users.entry(address.to_string()).or_default();
            if new_user {
                st.sessions += 1;
            }
            st.last_seen = unix;
        }
        self.reply(session, id, Ok(json!(true)));
        if first {
            if self.share_target.is_some() {
                let d = self.share_difficulty;
                self.send(session, &ServerMessage::SetDifficulty(d));
            }
            if self.jobs.is_empty() {
                // The first miner: the template waiting for someone to pay becomes a job.
                let _ = self.rebuild(true);
            } else if let Some(j) = self.jobs.back() {
                let n = j.notify(true);
                self.send(session, &ServerMessage::Notify(n));
            }
        }
    }

    fn submit(&mut self, session: SessionId, share: &stratum::Submit) -> Result<(), Reject> {
        let unix = self.unix();
        let s = self.sessions.get(&session).ok_or(Reject::NotSubscribed)?;
        if !s.subscribed {
            return Err(Reject::NotSubscribed);
        }
        let user = s
            .workers
            .get(&share.worker)
            .cloned()
            .ok_or(Reject::Unauthorized)?;
        let e1 = s.extranonce1;
        let target = self.share_target.ok_or(Reject::Stale)?;
        let job = self
            .jobs
            .iter_mut()
            .find(|j| j.id == share.job_id)
            .ok_or(Reject::Stale)?;
        if self.spent_prev == Some(job.prev) {
            return Err(Reject::Stale);
        }
        let checked = shares::check(job, &e1, share, target, unix)?;
        if self.seen_hashes.iter().any(|s| s.contains(&checked.hash)) {
            return Err(Reject::Duplicate);
        }
        let mut e2 = [0u8; 4];
        e2.copy_from_slice(&share.extranonce2);
        job.record(ShareKey {
            extranonce1: e1,
            extranonce2: e2,
            ntime: share.ntime,
            nonce: share.nonce,
        })?;
        let found = if checked.is_block {
            let coinbase = Transaction::decode(&checked.coinbase).ok();
            coinbase.map(|cb| {
                let mut txs = Vec::with_capacity(job.txs.len() + 1);
                txs.push(cb);
                txs.extend(job.txs.iter().cloned());
                (
                    Block {
                        header: checked.header.clone(),
                        txs,
                    },
                    job.height,
                    job.payouts.clone(),
                    job.value,
                    job.prev,
                    job.weights.clone(),
                )
            })
        } else {
            None
        };
        if self.seen_hashes[0].len() >= jobs::MAX_SHARES_PER_JOB {
            self.seen_hashes.swap(0, 1);
            self.seen_hashes[0].clear();
        }
        self.seen_hashes[0].insert(checked.hash);
        self.pplns.push(&user, 1);
        self.accepted += 1;
        let sec = secs(self.now);
        if let Some(st) = self.users.get_mut(&user) {
            st.accepted += 1;
            st.last_seen = unix;
            st.first_share.get_or_insert(sec);
            match st.recent.back_mut() {
                Some((t, n)) if *t == sec => *n += 1,
                _ => st.recent.push_back((sec, 1)),
            }
            while st
                .recent
                .front()
                .is_some_and(|(t, _)| *t + RATE_SECS <= sec)
            {
                st.recent.pop_front();
            }
        }
        if let Some((block, height, payouts, value, prev, weights)) = found {
            self.spent_prev = Some(prev);
            self.blocks_found += 1;
            if let Some(st) = self.users.get_mut(&user) {
                st.blocks += 1;
            }
            let hash = checked.hash;
            if self.blocks.len() == MAX_BLOCKS_LISTED {
                self.blocks.pop_front();
            }
            self.blocks.push_back(FoundBlock {
                height,
                hash,
                user: user.clone(),
                value,
                payouts: payouts.clone(),
                weights,
                verdict: None,
            });
            self.events.push_back(PoolEvent::BlockFound {
                block,
                height,
                hash,
                user,
                payouts,
            });
        }
        Ok(())
    }

    /// The node's verdict on a block the pool found (`None`: accepted).
    pub fn handle_block_verdict(&mut self, hash: [u8; 32], verdict: Option<String>) {
        if verdict.is_none() {
            self.blocks_accepted += 1;
        }
        if let Some(b) = self.blocks.iter_mut().find(|b| b.hash == hash) {
            b.verdict = Some(verdict);
        }
    }

    /// A template from the node. The first one fixes the share target. A new previous block
    /// makes a clean job (older jobs become stale); the same one a refreshed job (the
    /// coinbase paying the window as it is now).
    pub fn handle_template(&mut self, now: Instant, t: Template) -> Result<(), PoolError> {
        self.now = self.now.max(now);
        let network = crate::target_from_compact(t.bits);
        if network.negative || network.overflow {
            return Err(jobs::JobError::BadBits(t.bits).into());
        }
        let net = U256::from_be_bytes(&network.target);
        let net_diff = shares::difficulty_of(net);
        if self.share_target.is_none() {
            let target = match self.cfg.share_difficulty {
                Some(d) if d >= net_diff => {
                    return Err(PoolError::ShareDifficultyTooHigh {
                        share: d,
                        network: net_diff,
                    });
                }
                Some(d) => {
                    shares::target_for_difficulty(d).ok_or(PoolError::BadShareDifficulty(d))?
                }
                None => net.checked_mul_u64(2).unwrap_or(shares::MAX_TARGET),
            };
            self.share_target = Some(target);
            self.share_difficulty = self
                .cfg
                .share_difficulty
                .unwrap_or_else(|| shares::difficulty_of(target));
        }
        // After a block of ours, any template starts clean: a new tip, or (the node refused
        // the block) new jobs on the same one.
        let clean = self.template.as_ref().is_none_or(|old| old.prev != t.prev)
            || self.spent_prev.is_some();
        self.spent_prev = None;
        if clean {
            for s in &mut self.seen_hashes {
                s.clear();
            }
        }
        self.template = Some(t);
        self.rebuild(clean)
    }

    /// Build a job from the template and tell every authorized session.
    fn rebuild(&mut self, clean: bool) -> Result<(), PoolError> {
        let Some(t) = self.template.clone() else {
            return Ok(());
        };
        let mut weights: BTreeMap<String, u128> = self.pplns.weights().clone();
        if weights.is_empty() {
            // No shares yet: the connected miners, equally.
            for s in self.sessions.values() {
                for u in s.workers.values() {
                    weights.insert(u.clone(), 1);
                }
            }
        }
        const FEE: &str = "\u{0}fee";
        let fee_key = FEE.to_string();
        let fee_to = self.fee_script.as_ref().map(|_| &fee_key);
        if weights.is_empty() && fee_to.is_none() {
            return Ok(()); // nobody to pay: wait for a miner
        }
        let split = pplns::split(t.coinbase_value, &weights, self.cfg.fee_bp, fee_to)?;
        let mut outputs: Vec<(String, Vec<u8>, i64)> = Vec::with_capacity(split.len());
        for (who, sat) in split {
            if who == FEE {
                if let (Some(s), Some(a)) = (&self.fee_script, &self.cfg.fee_address) {
                    outputs.push((a.clone(), s.clone(), sat));
                }
            } else if let Ok(s) = script_for_address(&who, self.cfg.p2pkh_version) {
                outputs.push((who, s, sat));
            }
        }
        if outputs.is_empty() {
            // A coinbase of value 0 still needs an output.
            if let Some(who) = weights.keys().next() {
                if let Ok(s) = script_for_address(who, self.cfg.p2pkh_version) {
                    outputs.push((who.clone(), s, 0));
                }
            }
        }
        let seq = self.next_job;
        self.next_job += 1;
        let mut job = jobs::build(seq, &t, &outputs, &self.cfg.tag, &mut self.rng)?;
        job.weights = weights;
        if clean {
            self.jobs.clear();
        }
        if self.jobs.len() == MAX_JOBS {
            self.jobs.pop_front();
        }
        let notify = job.notify(clean);
        self.jobs.push_back(job);
        let targets: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.subscribed && !s.workers.is_empty() && !s.closing)
            .map(|(id, _)| *id)
            .collect();
        let m = ServerMessage::Notify(notify);
        let mut line = Vec::new();
        stratum::encode_server(&m, &mut line);
        for id in targets {
            self.transmit.push_back((id, line.clone()));
        }
        Ok(())
    }

    /// A line for a session.
    pub fn poll_transmit(&mut self) -> Option<(SessionId, Vec<u8>)> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// Each user's weight in the PPLNS window now.
    pub fn window_weights(&self) -> &BTreeMap<String, u128> {
        self.pplns.weights()
    }

    /// Blocks found (the last [`MAX_BLOCKS_LISTED`]; `stats()["blocks"]` counts them all).
    pub fn blocks(&self) -> impl Iterator<Item = &FoundBlock> {
        self.blocks.iter()
    }

    /// The statistics as JSON (the pool page's `/stats.json`).
    pub fn stats(&self, now: Instant) -> Value {
        let sec = secs(now.max(self.now));
        let per_share = self.share_target.map_or(0.0, shares::hashes_per_hit);
        let miners: Vec<Value> = self
            .users
            .iter()
            .map(|(u, st)| {
                let recent: u64 = st
                    .recent
                    .iter()
                    .filter(|(t, _)| t + RATE_SECS > sec)
                    .map(|(_, n)| n)
                    .sum();
                let span = st
                    .first_share
                    .map_or(1, |f| (sec.saturating_sub(f) + 1).min(RATE_SECS));
                json!({
                    "user": u,
                    "connections": st.sessions,
                    "accepted": st.accepted,
                    "rejected": st.rejected,
                    "blocks": st.blocks,
                    "window_shares": self.pplns.weights().get(u).copied().unwrap_or(0) as u64,
                    "hashrate": recent as f64 * per_share / span as f64,
                })
            })
            .collect();
        let blocks: Vec<Value> = self
            .blocks
            .iter()
            .rev()
            .map(|b| {
                json!({
                    "height": b.height,
                    "hash": crate::hash_hex(&b.hash),
                    "user": b.user,
                    "value": b.value,
                    "payouts": b.payouts.iter().map(|(a, v)| json!({"address": a, "sat": v})).collect::<Vec<_>>(),
                    "weights": b.weights.iter().map(|(a, w)| (a.clone(), json!(*w as u64))).collect::<serde_json::Map<String, Value>>(),
                    "accepted_by_node": b.verdict.as_ref().map(Option::is_none),
                    "reject_reason": b.verdict.clone().flatten(),
                })
            })
            .collect();
        let job = self.jobs.back();
        json!({
            "height": job.map(|j| j.height),
            "share_difficulty": self.share_difficulty,
            "network_difficulty": job.map(|j| shares::difficulty_of(U256::from_be_bytes(&j.network_target))),
            "window": self.pplns.window(),
            "window_shares": self.pplns.len(),
            "connections": self.sessions.len(),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "miners": miners,
            "blocks": self.blocks_found,
            "blocks_accepted": self.blocks_accepted,
            "blocks_found": blocks,
            "next_weights": job.map(|j| j.weights.iter().map(|(a, w)| (a.clone(), json!(*w as u64))).collect::<serde_json::Map<String, Value>>()),
            "next_payouts": job.map(|j| j.payouts.iter().map(|(a, v)| json!({"address": a, "sat": v})).collect::<Vec<_>>()),
        })
    }
}

#[cfg(test)]
mod tests;
