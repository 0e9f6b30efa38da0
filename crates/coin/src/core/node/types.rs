//! The node's settings, the commands it takes, the events it gives and the store requests
//! and replies it exchanges with its driver.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use servent_core::ConnId;

use crate::core::block::UtxoView;
use crate::core::mempool::MempoolConfig;
use crate::wire::{Block, Transaction};

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub max_outbound: usize,
    pub max_inbound: usize,
    /// Blocks in flight from one peer (Core's `MAX_BLOCKS_IN_TRANSIT_PER_PEER`).
    pub blocks_per_peer: usize,
    /// Blocks in flight in all (bounds the blocks held waiting for their parent).
    pub max_blocks_in_flight: usize,
    pub user_agent: String,
    /// The port we listen on, told to peers in `version`.
    pub listen_port: u16,
    pub handshake_timeout: Duration,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// A peer that does not deliver a requested block within this is disconnected.
    pub block_timeout: Duration,
    pub ban_time: Duration,
    /// Fill free outbound slots from the address table (every `dial_every`); off, the node
    /// dials only what it is told to.
    pub dial_from_table: bool,
    pub dial_every: Duration,
    pub max_addrs: usize,
    pub mempool: MempoolConfig,
    /// Unix seconds at [`servent_core::Instant::ZERO`].
    pub unix_at_zero: i64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            max_outbound: 8,
            max_inbound: 117,
            blocks_per_peer: 16,
            max_blocks_in_flight: 128,
            user_agent: "/servent:0.1/".into(),
            listen_port: 18444,
            handshake_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(20 * 60),
            block_timeout: Duration::from_secs(60),
            ban_time: Duration::from_secs(24 * 3600),
            dial_from_table: false,
            dial_every: Duration::from_secs(30),
            max_addrs: 4096,
            mempool: MempoolConfig::default(),
            unix_at_zero: 1_700_000_000,
        }
    }
}

/// Who gave us a block or a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Peer(ConnId),
    /// A user command with this id.
    Local(u64),
    /// Back from a disconnected block.
    Readd,
}

/// Slow work for the driver (the store); the answer comes back as [`Command::StoreDone`].
#[derive(Debug, Clone)]
pub enum Request {
    /// Validate `block` (its header is in the tree), store it and make the most-work chain
    /// active; reply [`Reply::BlockDone`].
    AcceptBlock { origin: Origin, block: Block },
    /// Read stored blocks for a peer's `getdata`; reply [`Reply::Blocks`].
    ReadBlocks { conn: ConnId, hashes: Vec<[u8; 32]> },
    /// The confirmed coins `tx` spends (those that exist); reply [`Reply::Coins`].
    Coins { origin: Origin, tx: Transaction },
}

/// Why the store did not take a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockFailure {
    /// Consensus-invalid (the sender is at fault).
    Invalid(String),
    /// Anything else (unknown parent, a database error).
    Other(String),
}

/// What accepting a block did to the active chain.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub known: bool,
    /// Blocks that left the active chain, newest first.
    pub disconnected: Vec<Block>,
    /// Blocks that joined it, oldest first.
    pub connected: Vec<Block>,
}

/// The store's answers.
#[derive(Debug, Clone)]
pub enum Reply {
    BlockDone {
        origin: Origin,
        hash: [u8; 32],
        result: Result<Applied, BlockFailure>,
    },
    Blocks {
        conn: ConnId,
        blocks: Vec<Block>,
        missing: Vec<[u8; 32]>,
    },
    Coins {
        origin: Origin,
        tx: Transaction,
        view: UtxoView,
    },
}

/// What a user asks the node.
#[derive(Debug, Clone)]
pub enum Command {
    /// Dial a peer.
    Connect(SocketAddr),
    SubmitTx {
        id: u64,
        tx: Transaction,
    },
    SubmitBlock {
        id: u64,
        block: Block,
    },
    /// Answer [`Event::Info`].
    Info {
        id: u64,
    },
    /// Answer [`Event::Peers`].
    Peers {
        id: u64,
    },
    /// Answer [`Event::Template`]: a block template (Core's selection rules, see
    /// [`crate::mine::block_template`]) whose coinbase pays `coinbase_script`.
    Template {
        id: u64,
        coinbase_script: Vec<u8>,
    },
    /// Answer [`Event::MempoolTx`].
    MempoolTx {
        id: u64,
        txid: [u8; 32],
    },
    /// Answer [`Event::MempoolTxids`] (`getrawmempool`).
    MempoolTxids {
        id: u64,
    },
    StoreDone(Reply),
}

/// A snapshot for status and RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub height: u32,
    pub best: [u8; 32],
    pub best_header_height: u32,
    pub peers: usize,
    pub mempool_txs: usize,
    pub mempool_bytes: usize,
    pub banned: usize,
}

/// One peer, for `getpeerinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSummary {
    pub conn: ConnId,
    pub addr: SocketAddr,
    pub inbound: bool,
    pub version: i32,
    pub user_agent: String,
    pub start_height: i32,
    pub score: u32,
    pub ping_us: Option<u64>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
}

/// What a block template is built from.
#[derive(Debug, Clone)]
pub struct TemplateBase {
    pub prev: [u8; 32],
    pub height: u32,
    pub bits: u32,
    pub median_time_past: u32,
    /// Mempool transactions, parents before children, highest fee rate first otherwise.
    pub txs: Vec<(Transaction, i64)>,
}

/// What the node reports.
#[derive(Debug, Clone)]
pub enum Event {
    Store(Request),
    TxResult {
        id: u64,
        result: Result<[u8; 32], String>,
    },
    BlockResult {
        id: u64,
        result: Result<(), String>,
    },
    Info {
        id: u64,
        info: NodeInfo,
    },
    Peers {
        id: u64,
        peers: Vec<PeerSummary>,
    },
    /// The template and each of its transactions' fee (satoshis), in block order.
    Template {
        id: u64,
        result: Result<(crate::mine::Template, Vec<i64>), String>,
    },
    MempoolTx {
        id: u64,
        tx: Option<Transaction>,
    },
    /// Every mempool transaction's txid, in txid order.
    MempoolTxids {
        id: u64,
        txids: Vec<[u8; 32]>,
    },
    /// The active tip moved.
    Tip {
        height: u32,
        hash: [u8; 32],
    },
    /// An address was banned.
    Banned {
        ip: IpAddr,
        reason: String,
    },
    PeerUp {
        conn: ConnId,
        addr: SocketAddr,
    },
    PeerDown {
        conn: ConnId,
        addr: SocketAddr,
    },
}
