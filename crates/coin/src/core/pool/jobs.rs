//! Jobs: a block template turned into Stratum work. The coinbase's scriptSig is the BIP 34
//! height, a push of 8 bytes (the session's 4-byte extranonce1, then the miner's 4-byte
//! extranonce2) and the pool's tag; `coinb1` is the coinbase up to the extranonces, `coinb2`
//! what follows them (the tag, the sequence, the payout outputs, the lock time). The merkle
//! branch lets a miner go from its coinbase txid to the root without the other transactions.
use crate::core::block::bip34_prefix;
use crate::core::script::push_data;
use crate::target_from_compact;
use crate::wire::stratum::Notify;
use crate::wire::{Encode, OutPoint, Transaction, TxIn, TxOut};
use servent_core::{KeyedSet, Rng, keyed_set};
use thiserror::Error;

/// Most shares a job remembers for its duplicate check (then it refuses shares until the next
/// job, which the pool builds at least every few seconds).
pub const MAX_SHARES_PER_JOB: usize = 1 << 18;
/// Longest pool tag in the coinbase.
pub const MAX_TAG: usize = 32;

/// What the node's `getblocktemplate` says, in header terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub height: u32,
    pub version: i32,
    pub prev: [u8; 32],
    pub bits: u32,
    pub time: u32,
    /// Subsidy plus the transactions' fees.
    pub coinbase_value: i64,
    /// The block's other transactions, in order.
    pub txs: Vec<Transaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JobError {
    #[error("the coinbase scriptSig would be {0} bytes (2..=100)")]
    ScriptSig(usize),
    #[error("nBits {0:#010x} is negative or overflows")]
    BadBits(u32),
    #[error("a coinbase needs at least one output")]
    NoOutputs,
}

/// The key of a submitted share for the duplicate check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShareKey {
    pub extranonce1: [u8; 4],
    pub extranonce2: [u8; 4],
    pub ntime: u32,
    pub nonce: u32,
}

/// One job: what the miners were told, plus what the pool needs to rebuild the block.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: u64,
    pub id: String,
    pub height: u32,
    pub version: u32,
    pub prev: [u8; 32],
    pub bits: u32,
    pub ntime: u32,
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub txs: Vec<Transaction>,
    /// The network target, big-endian.
    pub network_target: [u8; 32],
    /// Who the coinbase pays (label, satoshis), in output order.
    pub payouts: Vec<(String, i64)>,
    /// The PPLNS weights the payouts were split by.
    pub weights: std::collections::BTreeMap<String, u128>,
    pub value: i64,
    seen: KeyedSet<ShareKey>,
}

impl Job {
    /// Remember `key`; false if it was already seen (a duplicate) or the job is full.
    pub fn record(&mut self, key: ShareKey) -> Result<(), super::shares::Reject> {
        if self.seen.contains(&key) {
            return Err(super::shares::Reject::Duplicate);
        }
        if self.seen.len() >= MAX_SHARES_PER_JOB {
            return Err(super::shares::Reject::JobFull);
        }
        self.seen.insert(key);
        Ok(())
    }
    pub fn seen(&self, key: &ShareKey) -> bool {
        self.seen.contains(key)
    }
    /// The `mining.notify` of this job.
    pub fn notify(&self, clean_jobs: bool) -> Notify {
        Notify {
            job_id: self.id.clone(),
            prev: self.prev,
            coinb1: self.coinb1.clone(),
            coinb2: self.coinb2.clone(),
            merkle_branch: self.branch.clone(),
            version: self.version,
            nbits: self.bits,
            ntime: self.ntime,
            clean_jobs,
        }
    }
}

/// The merkle branch of the first leaf (the coinbase) given the other leaves.
pub fn merkle_branch(others: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let leaves: Vec<[u8; 32]> = std::iter::once([0u8; 32])
        .chain(others.iter().copied())
        .collect();
    crate::merkle_branch(&leaves, 0)
}

/// Build job `seq` from `t`, its coinbase paying `outputs` (label, script, satoshis), tagged
/// with `tag`.
pub fn build(
    seq: u64,
    t: &Template,
    outputs: &[(String, Vec<u8>, i64)],
    tag: &[u8],
    rng: &mut Rng,
) -> Result<Job, JobError> {
    if outputs.is_empty() {
        return Err(JobError::NoOutputs);
    }
    let target = target_from_compact(t.bits);
    if target.negative || target.overflow {
        return Err(JobError::BadBits(t.bits));
    }
    let prefix = bip34_prefix(t.height);
    let mut script_sig = prefix.clone();
    push_data(&mut script_sig, &[0u8; 8]);
    let tag = &tag[..tag.len().min(MAX_TAG)];
    if !tag.is_empty() {
        push_data(&mut script_sig, tag);
    }
    if !(2..=100).contains(&script_sig.len()) {
        return Err(JobError::ScriptSig(script_sig.len()));
    }
    let tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig: script_sig.clone(),
            sequence: u32::MAX,
        }],
        outputs: outputs
            .iter()
            .map(|(_, s, v)| TxOut {
                value: *v,
                script_pubkey: s.clone(),
            })
            .collect(),
        lock_time: 0,
    };
    let bytes = tx.encode();
    // version, input count, prevout, scriptSig length (one byte: at most 100), the height
    // push, the push opcode of the 8 extranonce bytes.
    let at = 4 + 1 + 36 + 1 + prefix.len() + 1;
    let txids: Vec<[u8; 32]> = t.txs.iter().map(Transaction::txid).collect();
    Ok(Job {
        seq,
        id: format!("{seq:x}"),
        height: t.height,
        version: t.version as u32,
        prev: t.prev,
        bits: t.bits,
        ntime: t.time,
        coinb1: bytes[..at].to_vec(),
        coinb2: bytes[at + 8..].to_vec(),
        branch: merkle_branch(&txids),
        txs: t.txs.clone(),
        network_target: target.target,
        payouts: outputs.iter().map(|(l, _, v)| (l.clone(), *v)).collect(),
        weights: std::collections::BTreeMap::new(),
        value: t.coinbase_value,
        seen: keyed_set(rng),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle_root;

    #[test]
    fn the_branch_leads_from_the_coinbase_to_the_merkle_root() {
        for n in 0..9u8 {
            let leaves: Vec<[u8; 32]> = (0..=n).map(|i| [i; 32]).collect();
            let branch = merkle_branch(&leaves[1..]);
            let root = super::super::shares::root_from_branch(leaves[0], &branch);
            assert_eq!(root, merkle_root(&leaves).0, "{} leaves", n + 1);
        }
    }

    #[test]
    fn coinb1_extranonces_and_coinb2_make_the_coinbase() {
        let t = Template {
            height: 300,
            version: 0x2000_0000,
            prev: [3; 32],
            bits: 0x207f_ffff,
            time: 1_700_000_000,
            coinbase_value: 5_000,
            txs: vec![],
        };
        let mut rng = Rng::new(1);
        let j = build(
            7,
            &t,
            &[("a".into(), vec![0x51], 5_000)],
            b"/tag/",
            &mut rng,
        )
        .expect("a job");
        let mut cb = j.coinb1.clone();
        cb.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        cb.extend_from_slice(&j.coinb2);
        let tx = Transaction::decode(&cb).expect("the coinbase decodes");
        let s = &tx.inputs[0].script_sig;
        assert_eq!(&s[..3], &[0x02, 0x2c, 0x01], "BIP 34 height 300");
        assert_eq!(&s[3..12], &[8, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(tx.outputs[0].value, 5_000);
    }
}
