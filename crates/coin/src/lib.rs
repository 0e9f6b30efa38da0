//! Bitcoin (Coin I): wire primitives, SHA-256d, and a sans-IO consensus
//! core with Bitcoin Core's pre-SegWit rules.
//!
//! - [`wire`]: strict codecs (CompactSize, transactions, headers, blocks).
//!   [`wire::Transaction::decode`] reads the legacy serialization only (a
//!   SegWit marker is [`wire::DecodeError::SegwitMarker`]);
//!   [`wire::WitnessTx`] also reads BIP 144's, witness kept beside the
//!   transaction (no SegWit rules: the txid and the scripts ignore it). A
//!   block carrying a witness is Core's `unexpected-witness`.
//! - [`core::script`]: the legacy interpreter (`EvalScript`/`VerifyScript`
//!   for `SigVersion::BASE`), flags as Core's `SCRIPT_VERIFY_*`;
//!   [`core::sighash`]: the legacy signature hash.
//! - [`core::block`]: context-free block checks, header context
//!   ([`core::block::Chain`]: prev, retarget, median time past, versions),
//!   and connect/disconnect against an in-memory UTXO view with undo data.
//! - [`core::mempool`]: first-seen-wins pool bounded by bytes, evicting the
//!   lowest fee rate.
//! - [`wire::p2p`]: the P2P message layer (magic, command, length,
//!   checksum; version .. feefilter) with Core's limits.
//! - [`mine`]: block templates from the mempool, the midstate nonce
//!   search, and (feature `runtime`) the threaded miner.
//! - [`core::node`]: the sans-IO full node — version/verack, ping, a bounded
//!   address table, headers-first sync with a bounded in-flight window,
//!   block and transaction relay, misbehaviour scores and 24-hour bans; its
//!   slow work leaves as requests that `store::node::serve` completes.
//!   `harness` (with `store`): nodes on an in-memory network with stores in
//!   memory. `driver` (feature `runtime`, on by default): the node on TCP,
//!   the store on a blocking thread, JSON-RPC with Core's methods.
//! - `parallel` (feature `runtime`): a block's script checks on several
//!   threads, for [`core::block::UtxoView::connect_block_with`].
//! - [`core::electrum`]: the Electrum server's index, sans-IO (as electrs keeps one beside a
//!   node): scripthash histories with mempool heights 0/-1, the protocol's status hash,
//!   balances, unspent outputs, headers and merkle branches, fed blocks in order (a
//!   reorganisation disconnects to the fork point) and mempool snapshots; its
//!   [`core::electrum::session`] answers the protocol's methods and yields subscription
//!   notifications. [`wire::electrum`]: the protocol's newline-delimited JSON-RPC 2.0 codec
//!   (bounded lines and batches, typed errors). `driver::electrum` (feature `runtime`): the TCP
//!   server, following a node over its JSON-RPC.
//! - [`wire::stratum`]: Stratum v1 mining lines (subscribe, authorize, notify, submit,
//!   set_difficulty); [`core::pool`]: the sans-IO pool — jobs from templates with the
//!   coinbase split at the extranonces, share checks (stale, duplicate, low difficulty,
//!   ntime), PPLNS payouts in the coinbase — and the miner's client core. `driver::pool`
//!   serves it on TCP over a node's RPC with a pool page; `driver::miner` is our Stratum miner.
//! - [`wallet`]: the wallet, sans-IO: keys and addresses (P2PKH, P2SH, WIF, BIP 32/39/44),
//!   the encrypted file, coin selection, signed payments, and its view of the chain.
//! - `store` (cargo feature `store`, on by default): the chain store on
//!   disk — block index with cumulative work, active chain, UTXO set, undo
//!   data; every chain change (a block, or a whole reorganisation) is one
//!   transaction. It is the only module here that does I/O.
//!
//! Outside `store` and `driver`, nothing touches disk, clock, sockets or threads: the caller passes
//! blocks, the current time and the UTXO view in, and gets typed results
//! out.
//!
//! ```
//! use servent_coin::core::block::Chain;
//! use servent_coin::core::script::{Flags, NoChecker, verify_script};
//! use servent_coin::{Params, genesis_mainnet, wire::Encode};
//!
//! let b = genesis_mainnet();
//! assert_eq!(
//!     b.header.hash_hex(),
//!     "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
//! );
//! assert_eq!(b.header.encode().len(), 80);
//!
//! // `2 3 ADD 5 EQUAL` holds; `OP_RETURN` never does.
//! assert!(verify_script(&[0x52, 0x53], &[0x93, 0x55, 0x87], Flags::P2SH, &mut NoChecker).is_ok());
//! assert!(verify_script(&[], &[0x6a], Flags::NONE, &mut NoChecker).is_err());
//!
//! // A chain holding genesis wants the same difficulty next (no retarget before 2016).
//! let chain = Chain::new(Params::mainnet());
//! assert_eq!((chain.height(), chain.next_bits()), (0, 0x1d00_ffff));
//! ```
pub mod core;
#[cfg(feature = "runtime")]
pub mod driver;
#[cfg(feature = "store")]
pub mod harness;
pub mod mine;
#[cfg(feature = "runtime")]
pub mod parallel;
#[cfg(feature = "sim")]
pub mod scenarios;
#[cfg(feature = "store")]
pub mod store;
pub mod wallet;
pub mod wire;

use sha2::{Digest, Sha256};
use wire::{Block, BlockHeader, OutPoint, Transaction, TxIn, TxOut};

/// SHA-256 applied twice.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// Byte-reversed hex, as Bitcoin displays hashes.
pub fn hash_hex(h: &[u8; 32]) -> String {
    h.iter().rev().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn genesis(time: u32, bits: u32, nonce: u32) -> Block {
    let script_sig = unhex(
        "04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e206272696e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73",
    );
    let pk = unhex(
        "4104678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c384df7ba0b8d578a4c702b6bf11d5fac",
    );
    let tx = Transaction {
        version: 1,
        inputs: vec![TxIn {
            prevout: OutPoint {
                txid: [0; 32],
                vout: u32::MAX,
            },
            script_sig,
            sequence: u32::MAX,
        }],
        outputs: vec![TxOut {
            value: 50 * 100_000_000,
            script_pubkey: pk,
        }],
        lock_time: 0,
    };
    let merkle_root = tx.txid();
    Block {
        header: BlockHeader {
            version: 1,
            prev: [0; 32],
            merkle_root,
            time,
            bits,
            nonce,
        },
        txs: vec![tx],
    }
}

/// The mainnet genesis block, built from its parts.
pub fn genesis_mainnet() -> Block {
    genesis(1_231_006_505, 0x1d00_ffff, 2_083_236_893)
}

/// The regtest genesis block, built from its parts.
pub fn genesis_regtest() -> Block {
    genesis(1_296_688_602, 0x207f_ffff, 2)
}

/// 21 million BTC in satoshis.
pub const MAX_MONEY: i64 = 21_000_000 * 100_000_000;

/// An amount in satoshis, always within `0..=MAX_MONEY`; sums are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);
    /// `None` if outside `0..=MAX_MONEY`.
    pub fn from_sat(sat: i64) -> Option<Self> {
        (0..=MAX_MONEY).contains(&sat).then_some(Self(sat))
    }
    pub fn to_sat(self) -> i64 {
        self.0
    }
    /// `None` if the sum leaves the money range.
    pub fn checked_add(self, o: Self) -> Option<Self> {
        self.0.checked_add(o.0).and_then(Self::from_sat)
    }
    /// `None` if the difference is negative.
    pub fn checked_sub(self, o: Self) -> Option<Self> {
        self.0.checked_sub(o.0).and_then(Self::from_sat)
    }
}

/// Block subsidy at `height` for a given halving interval (210 000 mainnet, 150 regtest).
pub fn subsidy(height: u32, halving_interval: u32) -> Amount {
    let halvings = height / halving_interval.max(1);
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount((50 * 100_000_000i64) >> halvings)
}

/// Merkle root of `hashes` and whether the tree is mutated (CVE-2012-2459:
/// two identical adjacent hashes at any level), as Core's `ComputeMerkleRoot`.
pub fn merkle_root(hashes: &[[u8; 32]]) -> ([u8; 32], bool) {
    let mut level = hashes.to_vec();
    let mut mutated = false;
    if level.is_empty() {
        return ([0; 32], false);
    }
    while level.len() > 1 {
        mutated |= level.chunks_exact(2).any(|pair| pair[0] == pair[1]);
        level = merkle_level_up(level);
    }
    (level[0], mutated)
}

/// SHA-256d of two concatenated hashes: a merkle tree's inner node.
pub fn merkle_parent(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut b = [0u8; 64];
    b[..32].copy_from_slice(left);
    b[32..].copy_from_slice(right);
    sha256d(&b)
}

/// One level of Bitcoin's merkle tree up: an odd level's last hash pairs with itself.
fn merkle_level_up(mut level: Vec<[u8; 32]>) -> Vec<[u8; 32]> {
    if level.len() % 2 == 1 {
        if let Some(&last) = level.last() {
            level.push(last);
        }
    }
    level
        .chunks_exact(2)
        .map(|p| merkle_parent(&p[0], &p[1]))
        .collect()
}

/// The sibling hashes from leaf `pos` of `hashes` up to the merkle root (Electrum's
/// `blockchain.transaction.get_merkle`; with `pos` 0, Stratum's coinbase branch). Empty when
/// there is one leaf or `pos` is out of range.
pub fn merkle_branch(hashes: &[[u8; 32]], mut pos: usize) -> Vec<[u8; 32]> {
    if pos >= hashes.len() {
        return Vec::new();
    }
    let mut level = hashes.to_vec();
    let mut branch = Vec::new();
    while level.len() > 1 {
        let sibling = level.get(pos ^ 1).or(level.last()).copied();
        if let Some(h) = sibling {
            branch.push(h);
        }
        level = merkle_level_up(level);
        pos /= 2;
    }
    branch
}

/// The root that `branch` proves for `leaf` at position `pos`.
pub fn merkle_root_from_branch(leaf: [u8; 32], branch: &[[u8; 32]], mut pos: usize) -> [u8; 32] {
    let mut h = leaf;
    for s in branch {
        h = if pos & 1 == 1 {
            merkle_parent(s, &h)
        } else {
            merkle_parent(&h, s)
        };
        pos >>= 1;
    }
    h
}

/// A compact nBits decoded as Core's `SetCompact`: big-endian 256-bit
/// target plus the negative and overflow flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactTarget {
    pub target: [u8; 32],
    pub negative: bool,
    pub overflow: bool,
}

pub fn target_from_compact(bits: u32) -> CompactTarget {
    let size = (bits >> 24) as usize;
    let mut word = bits & 0x007f_ffff;
    let mut target = [0u8; 32];
    let negative = word != 0 && bits & 0x0080_0000 != 0;
    let overflow =
        word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    if size <= 3 {
        word >>= 8 * (3 - size);
        target[28..].copy_from_slice(&word.to_be_bytes());
    } else {
        for k in 0..3 {
            let pos = k + size - 3; // byte position from the least significant end
            if pos < 32 {
                target[31 - pos] = (word >> (8 * k)) as u8;
            }
        }
    }
    CompactTarget {
        target,
        negative,
        overflow,
    }
}

/// Whether a block hash (internal byte order) meets a big-endian target.
pub fn hash_meets_target(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    let mut be = *hash;
    be.reverse();
    be <= *target
}

/// Network parameters.
#[derive(Debug, Clone)]
pub struct Params {
    pub magic: [u8; 4],
    pub port: u16,
    pub halving_interval: u32,
    /// Proof-of-work limit as compact bits.
    pub pow_limit_bits: u32,
    pub no_retarget: bool,
    pub genesis: Block,
    /// BIP34 (height in coinbase, version 2) from this height.
    pub bip34_height: u32,
    /// BIP66 (strict DER, version 3) from this height.
    pub bip66_height: u32,
    /// BIP65 (CHECKLOCKTIMEVERIFY, version 4) from this height.
    pub bip65_height: u32,
    /// Heights whose coinbase may overwrite an earlier unspent one (BIP30's two historical exceptions).
    pub bip30_exceptions: &'static [u32],
    /// The easiest target allowed, as Core's `powLimit` (not its compact form).
    pub pow_limit: [u8; 32],
}

/// 32 bytes: `zeros` leading zero bytes, then 0xff.
const fn pow_limit(zeros: usize) -> [u8; 32] {
    let mut t = [0xffu8; 32];
    let mut i = 0;
    while i < zeros {
        t[i] = 0;
        i += 1;
    }
    t
}

impl Params {
    /// The pow limit as a 256-bit number.
    pub fn pow_limit(&self) -> crate::core::pow::U256 {
        crate::core::pow::U256::from_be_bytes(&self.pow_limit)
    }
    pub fn mainnet() -> Self {
        Self {
            magic: [0xf9, 0xbe, 0xb4, 0xd9],
            port: 8333,
            halving_interval: 210_000,
            pow_limit_bits: 0x1d00_ffff,
            no_retarget: false,
            genesis: genesis_mainnet(),
            bip30_exceptions: &[91_842, 91_880],
            bip34_height: 227_931,
            bip66_height: 363_725,
            bip65_height: 388_381,
            pow_limit: pow_limit(4),
        }
    }
    pub fn regtest() -> Self {
        Self {
            magic: [0xfa, 0xbf, 0xb5, 0xda],
            port: 18444,
            halving_interval: 150,
            pow_limit_bits: 0x207f_ffff,
            no_retarget: true,
            genesis: genesis_regtest(),
            bip30_exceptions: &[],
            bip34_height: 1,
            bip66_height: 1,
            bip65_height: 1,
            pow_limit: {
                let mut t = [0xff; 32];
                t[0] = 0x7f;
                t
            },
        }
    }
}
