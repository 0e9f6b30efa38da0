//! The pool against miners written with the client core, on regtest templates.
use super::client::{Client, ClientEvent, Work};
use super::*;
use crate::Params;
use crate::core::block::Chain;
use crate::core::mempool::{Mempool, MempoolConfig};
use crate::core::node::address::{REGTEST_P2PKH, p2pkh_address};
use crate::hash_meets_target;

fn addr(b: u8) -> String {
    p2pkh_address(REGTEST_P2PKH, &[b; 20])
}

fn template(chain: &Chain) -> Template {
    let params = Params::regtest();
    let tip = chain.entries.last().expect("genesis").clone();
    let t = crate::mine::block_template(
        &params,
        tip.hash,
        chain.height() + 1,
        chain.next_bits(),
        tip.time + 1,
        &Mempool::new(MempoolConfig::default()),
        &[0x51],
    )
    .expect("a template");
    Template {
        height: t.height,
        version: t.header.version,
        prev: t.header.prev,
        bits: t.header.bits,
        time: t.header.time,
        coinbase_value: t.coinbase.outputs[0].value,
        txs: t.txs,
    }
}

struct Miner {
    id: SessionId,
    client: Client,
    work: Option<Work>,
    accepted: u64,
    rejected: Vec<i64>,
}

struct Net {
    pool: Pool,
    miners: Vec<Miner>,
    now: Instant,
}

impl Net {
    fn new(cfg: PoolConfig) -> Net {
        Net {
            pool: Pool::new(cfg, Rng::new(7)).expect("a pool"),
            miners: Vec::new(),
            now: Instant::from_secs(1),
        }
    }
    fn join(&mut self, user: &str) -> usize {
        let id = self.pool.handle_connect(self.now).expect("room");
        self.miners.push(Miner {
            id,
            client: Client::new(user, "x", "test/1"),
            work: None,
            accepted: 0,
            rejected: Vec::new(),
        });
        self.pump();
        self.miners.len() - 1
    }
    /// Deliver everything both ways until quiet.
    fn pump(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for m in &mut self.miners {
                let out = m.client.poll_transmit();
                for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    self.pool.handle_line(self.now, m.id, line);
                    moved = true;
                }
            }
            while let Some((sid, bytes)) = self.pool.poll_transmit() {
                moved = true;
                let m = self
                    .miners
                    .iter_mut()
                    .find(|m| m.id == sid)
                    .expect("a session");
                for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    m.client.handle_line(line).expect("the pool speaks Stratum");
                }
                while let Some(e) = m.client.poll_event() {
                    match e {
                        ClientEvent::Work { work, .. } => m.work = Some(work),
                        ClientEvent::Accepted => m.accepted += 1,
                        ClientEvent::Rejected { code, .. } => m.rejected.push(code),
                        _ => {}
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
    /// A share of miner `i`'s current work: the first nonce whose hash meets (or, with
    /// `meets` false, misses) `target`, from extranonce2 `e2`.
    fn grind(&self, i: usize, e2: u32, target: [u8; 32], meets: bool) -> (String, u32, u32) {
        let w = self.miners[i].work.as_ref().expect("work");
        let mut h = w.header(&e2.to_be_bytes());
        for nonce in 0..1_000_000 {
            h.nonce = nonce;
            if hash_meets_target(&h.hash(), &target) == meets {
                return (w.notify.job_id.clone(), h.time, nonce);
            }
        }
        panic!("no nonce found");
    }
    fn submit(&mut self, i: usize, job: &str, e2: u32, ntime: u32, nonce: u32) {
        let m = &mut self.miners[i];
        assert!(m.client.submit(job, &e2.to_be_bytes(), ntime, nonce));
        self.pump();
    }
    fn blocks(&mut self) -> Vec<Block> {
        let mut v = Vec::new();
        while let Some(e) = self.pool.poll_event() {
            if let PoolEvent::BlockFound { block, .. } = e {
                v.push(block);
            }
        }
        v
    }
}

fn not_network(job: &Job) -> [u8; 32] {
    // Hashes above the network target but within the share target (regtest's share target is
    // twice the network's, capped): a share that is not a block.
    job.network_target
}

#[test]
fn a_share_meeting_the_network_target_is_a_block_the_chain_accepts() {
    let mut chain = Chain::new(Params::regtest());
    let mut net = Net::new(PoolConfig::default());
    let a = net.join(&addr(1));
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    net.pump();
    let job = net.pool.current_job().expect("a job").clone();
    let (id, ntime, nonce) = net.grind(a, 0, job.network_target, true);
    net.submit(a, &id, 0, ntime, nonce);
    assert_eq!(net.miners[a].accepted, 1);
    let blocks = net.blocks();
    assert_eq!(blocks.len(), 1);
    let b = &blocks[0];
    assert_eq!(b.txs[0].outputs[0].value, 50 * 100_000_000);
    let now = i64::from(b.header.time) + 10;
    chain
        .accept(b, now)
        .expect("the node's consensus accepts the pool's block");
}

#[test]
fn duplicate_and_stale_shares_get_no_credit() {
    let mut chain = Chain::new(Params::regtest());
    let mut net = Net::new(PoolConfig::default());
    let a = net.join(&addr(1));
    let b = net.join(&format!("{}.rig2", addr(2)));
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    net.pump();
    let job = net.pool.current_job().expect("a job").clone();
    // a share that is not a block (so the job stays current)
    let (id, ntime, nonce) = net.grind(a, 1, not_network(&job), false);
    net.submit(a, &id, 1, ntime, nonce);
    net.submit(a, &id, 1, ntime, nonce);
    assert_eq!(net.miners[a].accepted, 1);
    assert_eq!(net.miners[a].rejected, [stratum::code::DUPLICATE]);
    let (id_b, t_b, n_b) = net.grind(b, 1, not_network(&job), false);
    // b keeps a share of the old job for later.
    // A block at the tip: the next template has a new prev, the old job becomes stale.
    let (idb, nt, nn) = net.grind(a, 2, job.network_target, true);
    net.submit(a, &idb, 2, nt, nn);
    let blocks = net.blocks();
    assert_eq!(blocks.len(), 1);
    // Before the new template: the spent job is stale at once.
    net.submit(b, &id_b, 1, t_b, n_b);
    assert_eq!(net.miners[b].rejected, [stratum::code::JOB_NOT_FOUND]);
    chain
        .accept(&blocks[0], i64::from(blocks[0].header.time) + 10)
        .expect("accepted");
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    net.pump();
    net.submit(b, &id_b, 1, t_b, n_b);
    assert_eq!(
        net.miners[b].rejected,
        [stratum::code::JOB_NOT_FOUND, stratum::code::JOB_NOT_FOUND]
    );
    // Only a's two accepted shares are in the window; b has none.
    let w = net.pool.window_weights();
    assert_eq!(w.get(&addr(1)), Some(&2));
    assert_eq!(w.get(&addr(2)), None);
    // And the new job pays a alone, the whole value.
    let job = net.pool.current_job().expect("a job");
    assert_eq!(job.payouts, [(addr(1), 50 * 100_000_000)]);
}

#[test]
fn low_difficulty_and_bad_ntime_are_rejected() {
    let chain = Chain::new(Params::regtest());
    let network = shares::difficulty_of(U256::from_be_bytes(
        &crate::target_from_compact(0x207f_ffff).target,
    ));
    let mut net = Net::new(PoolConfig {
        share_difficulty: Some(network * 0.9),
        ..PoolConfig::default()
    });
    let a = net.join(&addr(1));
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    net.pump();
    let target = net
        .pool
        .share_target()
        .expect("a share target")
        .to_be_bytes();
    let (id, ntime, nonce) = net.grind(a, 0, target, false);
    net.submit(a, &id, 0, ntime, nonce);
    assert_eq!(net.miners[a].rejected, [stratum::code::LOW_DIFFICULTY]);
    let (id, ntime, nonce) = net.grind(a, 0, target, true);
    net.submit(a, &id, 0, ntime - 1, nonce);
    assert_eq!(net.miners[a].rejected.len(), 2, "ntime before the job's");
    assert_eq!(net.miners[a].accepted, 0);
    assert!(net.pool.window_weights().is_empty());
}

#[test]
fn a_share_difficulty_not_below_the_network_is_refused() {
    let chain = Chain::new(Params::regtest());
    let mut pool = Pool::new(
        PoolConfig {
            share_difficulty: Some(1.0),
            ..PoolConfig::default()
        },
        Rng::new(1),
    )
    .expect("a pool");
    assert!(matches!(
        pool.handle_template(Instant::ZERO, template(&chain)),
        Err(PoolError::ShareDifficultyTooHigh { .. })
    ));
}

#[test]
fn the_next_job_pays_the_window_in_proportion_with_the_fee() {
    let chain = Chain::new(Params::regtest());
    let fee = addr(9);
    let mut net = Net::new(PoolConfig {
        fee_bp: 100,
        fee_address: Some(fee.clone()),
        ..PoolConfig::default()
    });
    let a = net.join(&addr(1));
    let b = net.join(&addr(2));
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    net.pump();
    let job = net.pool.current_job().expect("job").clone();
    let mut shares = 0;
    for (i, n) in [(a, 3u32), (b, 1)] {
        for e2 in 0..n {
            let (id, t, nonce) = net.grind(i, 10 + e2, not_network(&job), false);
            net.submit(i, &id, 10 + e2, t, nonce);
            shares += 1;
        }
    }
    assert_eq!(shares, 4);
    // Same prev: a refreshed job paying the window.
    net.pool
        .handle_template(net.now, template(&chain))
        .expect("job");
    let j = net.pool.current_job().expect("job");
    let value = 50 * 100_000_000i64;
    let fee_sat = value / 100;
    let rest = value - fee_sat;
    assert_eq!(
        j.payouts,
        [(addr(1), rest * 3 / 4), (addr(2), rest / 4), (fee, fee_sat)]
    );
    assert_eq!(j.payouts.iter().map(|p| p.1).sum::<i64>(), value);
}

#[test]
fn unknown_users_and_malformed_lines_are_refused_and_bounded() {
    let mut net = Net::new(PoolConfig::default());
    let id = net.pool.handle_connect(net.now).expect("room");
    for _ in 0..MAX_STRIKES {
        net.pool.handle_line(net.now, id, b"{nonsense");
    }
    let closed = std::iter::from_fn(|| net.pool.poll_event())
        .any(|e| matches!(e, PoolEvent::Close { session, .. } if session == id));
    assert!(closed);
    let id = net.pool.handle_connect(net.now).expect("room");
    net.pool.handle_line(
        net.now,
        id,
        br#"{"id":1,"method":"mining.authorize","params":["not-an-address","x"]}"#,
    );
    let reply: Vec<u8> = std::iter::from_fn(|| net.pool.poll_transmit())
        .filter(|(s, _)| *s == id)
        .flat_map(|(_, b)| b)
        .collect();
    assert!(
        String::from_utf8_lossy(&reply).contains("[24,"),
        "unauthorized: {}",
        String::from_utf8_lossy(&reply)
    );
    let mut small = Pool::new(
        PoolConfig {
            max_sessions: 2,
            ..PoolConfig::default()
        },
        Rng::new(3),
    )
    .expect("pool");
    assert!(small.handle_connect(Instant::ZERO).is_some());
    assert!(small.handle_connect(Instant::ZERO).is_some());
    assert!(small.handle_connect(Instant::ZERO).is_none());
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            Just(br#"{"id":1,"method":"mining.subscribe","params":[]}"#.to_vec()),
            Just(
                format!(
                    r#"{{"id":2,"method":"mining.authorize","params":["{}","x"]}}"#,
                    addr(4)
                )
                .into_bytes()
            ),
            (any::<u32>(), any::<u32>(), 0u64..4).prop_map(|(n, t, j)| format!(
                r#"{{"id":3,"method":"mining.submit","params":["{}","{j:x}","00000001","{t:08x}","{n:08x}"]}}"#,
                addr(4)
            )
            .into_bytes()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_lines_from_a_miner_never_panic_and_bound_the_queues(
            lines in proptest::collection::vec(line(), 0..40),
        ) {
            let chain = Chain::new(Params::regtest());
            let mut pool = Pool::new(PoolConfig::default(), servent_core::Rng::new(5)).expect("pool");
            let id = pool.handle_connect(Instant::ZERO).expect("room");
            pool.handle_template(Instant::ZERO, template(&chain)).expect("template");
            let mut client = Client::new(&addr(4), "x", "p");
            for l in &lines {
                pool.handle_line(Instant::from_secs(1), id, l);
                let _ = client.handle_line(l);
                let mut n = 0;
                while let Some((_, out)) = pool.poll_transmit() {
                    n += 1;
                    for reply in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                        let _ = client.handle_line(reply);
                    }
                }
                prop_assert!(n <= 4, "one line, a few replies");
                while pool.poll_event().is_some() {}
                while client.poll_event().is_some() {}
            }
            let _ = pool.stats(Instant::from_secs(2));
        }
    }
}
