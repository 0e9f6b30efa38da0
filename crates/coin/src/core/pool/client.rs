//! The miner's side of Stratum v1, sans-IO: subscribe and authorize, follow
//! `mining.set_difficulty` and `mining.notify`, submit shares and count the pool's answers.
//!
//! Feed each line the pool sent to [`Client::handle_line`]; drain [`Client::poll_transmit`]
//! (bytes to write) and [`Client::poll_event`]. [`Work`] is what the hashing threads need:
//! the job, the extranonce1 and the share target.
use std::collections::{BTreeMap, VecDeque};

use serde_json::Value;
use thiserror::Error;

use crate::core::pow::U256;
use crate::wire::BlockHeader;
use crate::wire::stratum::{
    self, ClientMessage, Id, Notify, ServerMessage, StratumError, Submit, Subscribed,
};

/// Submissions awaiting an answer at most (the caller waits beyond).
pub const MAX_IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("pool sent a malformed line: {0}")]
    Malformed(#[from] StratumError),
    #[error("the pool refused the subscription: {0}")]
    Subscribe(String),
    #[error("the pool refused worker {user:?}: {why}")]
    Unauthorized { user: String, why: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    Subscribe,
    Authorize,
    /// The job id of the share.
    Submit(String),
    Other,
}

/// A job to hash.
#[derive(Debug, Clone, PartialEq)]
pub struct Work {
    pub notify: Notify,
    pub extranonce1: Vec<u8>,
    pub extranonce2_size: usize,
    /// Share target, big-endian.
    pub target: [u8; 32],
}

impl Work {
    /// The header with this extranonce2 (nonce 0), and its coinbase.
    pub fn header(&self, extranonce2: &[u8]) -> BlockHeader {
        let mut cb = self.notify.coinb1.clone();
        cb.extend_from_slice(&self.extranonce1);
        cb.extend_from_slice(extranonce2);
        cb.extend_from_slice(&self.notify.coinb2);
        let root = super::shares::root_from_branch(crate::sha256d(&cb), &self.notify.merkle_branch);
        BlockHeader {
            version: self.notify.version as i32,
            prev: self.notify.prev,
            merkle_root: root,
            time: self.notify.ntime,
            bits: self.notify.nbits,
            nonce: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Subscribed {
        extranonce1: Vec<u8>,
    },
    Authorized,
    Difficulty(f64),
    /// New work; `clean` means older jobs are stale.
    Work {
        work: Work,
        clean: bool,
    },
    Accepted,
    /// The pool refused a share of `job_id`.
    Rejected {
        code: i64,
        reason: String,
        job_id: String,
    },
}

/// The client.
#[derive(Debug)]
pub struct Client {
    user: String,
    password: String,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    subscribed: Option<Subscribed>,
    difficulty: Option<f64>,
    out: Vec<u8>,
    events: VecDeque<ClientEvent>,
    submits: usize,
}

impl Client {
    /// A client for `user` (the address to be paid, optionally `.worker`): queues
    /// `mining.subscribe` then `mining.authorize`.
    pub fn new(user: &str, password: &str, agent: &str) -> Client {
        let mut c = Client {
            user: user.to_string(),
            password: password.to_string(),
            next_id: 1,
            pending: BTreeMap::new(),
            subscribed: None,
            difficulty: None,
            out: Vec::new(),
            events: VecDeque::new(),
            submits: 0,
        };
        c.request(Pending::Subscribe, |id| ClientMessage::Subscribe {
            id,
            user_agent: Some(agent.to_string()),
        });
        c
    }

    fn request(&mut self, kind: Pending, make: impl FnOnce(Id) -> ClientMessage) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, kind);
        stratum::encode_client(&make(Id::Num(id)), &mut self.out);
    }

    /// Submissions not yet answered.
    pub fn in_flight(&self) -> usize {
        self.submits
    }

    /// Submit a share of `job_id`; false (nothing sent) if [`MAX_IN_FLIGHT`] wait already.
    pub fn submit(&mut self, job_id: &str, extranonce2: &[u8], ntime: u32, nonce: u32) -> bool {
        if self.submits >= MAX_IN_FLIGHT {
            return false;
        }
        self.submits += 1;
        let share = Submit {
            worker: self.user.clone(),
            job_id: job_id.to_string(),
            extranonce2: extranonce2.to_vec(),
            ntime,
            nonce,
        };
        self.request(Pending::Submit(job_id.to_string()), |id| {
            ClientMessage::Submit { id, share }
        });
        true
    }

    fn target(&self) -> [u8; 32] {
        let d = self.difficulty.unwrap_or(1.0);
        super::shares::target_for_difficulty(d)
            .unwrap_or(super::shares::MAX_TARGET)
            .to_be_bytes()
    }

    /// One line from the pool.
    pub fn handle_line(&mut self, line: &[u8]) -> Result<(), ClientError> {
        match stratum::decode_server(line)? {
            ServerMessage::SetDifficulty(d) => {
                self.difficulty = Some(d);
                self.events.push_back(ClientEvent::Difficulty(d));
            }
            ServerMessage::Notify(n) => {
                if let Some(s) = &self.subscribed {
                    let clean = n.clean_jobs;
                    let work = Work {
                        notify: n,
                        extranonce1: s.extranonce1.clone(),
                        extranonce2_size: s.extranonce2_size,
                        target: self.target(),
                    };
                    self.events.push_back(ClientEvent::Work { work, clean });
                }
            }
            ServerMessage::Response { id, result } => {
                let kind = match id {
                    Id::Num(n) => self.pending.remove(&n).unwrap_or(Pending::Other),
                    _ => Pending::Other,
                };
                match kind {
                    Pending::Subscribe => {
                        let v = result.map_err(|e| ClientError::Subscribe(e.message))?;
                        let s = Subscribed::from_json(&v)?;
                        self.events.push_back(ClientEvent::Subscribed {
                            extranonce1: s.extranonce1.clone(),
                        });
                        self.subscribed = Some(s);
                        let (user, password) = (self.user.clone(), self.password.clone());
                        self.request(Pending::Authorize, |id| ClientMessage::Authorize {
                            id,
                            user,
                            password,
                        });
                    }
                    Pending::Authorize => match result {
                        Ok(Value::Bool(true)) => self.events.push_back(ClientEvent::Authorized),
                        Ok(other) => {
                            return Err(ClientError::Unauthorized {
                                user: self.user.clone(),
                                why: other.to_string(),
                            });
                        }
                        Err(e) => {
                            return Err(ClientError::Unauthorized {
                                user: self.user.clone(),
                                why: e.message,
                            });
                        }
                    },
                    Pending::Submit(job_id) => {
                        self.submits = self.submits.saturating_sub(1);
                        self.events.push_back(match result {
                            Ok(Value::Bool(true)) => ClientEvent::Accepted,
                            Ok(other) => ClientEvent::Rejected {
                                code: stratum::code::OTHER,
                                reason: other.to_string(),
                                job_id,
                            },
                            Err(e) => ClientEvent::Rejected {
                                code: e.code,
                                reason: e.message,
                                job_id,
                            },
                        });
                    }
                    Pending::Other => {}
                }
            }
            ServerMessage::Other { .. } => {}
        }
        Ok(())
    }

    /// Bytes to write to the pool.
    pub fn poll_transmit(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// The share target of a difficulty as a 256-bit number (for display).
pub fn target_of(d: f64) -> Option<U256> {
    super::shares::target_for_difficulty(d)
}
