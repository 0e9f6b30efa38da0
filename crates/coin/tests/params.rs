use servent_coin::{Params, hash_meets_target, target_from_compact};

#[test]
fn mainnet_and_regtest_params() {
    let m = Params::mainnet();
    let r = Params::regtest();
    assert_eq!(
        (m.magic, m.port, m.halving_interval, m.no_retarget),
        ([0xf9, 0xbe, 0xb4, 0xd9], 8333, 210_000, false)
    );
    assert_eq!(
        (r.magic, r.port, r.halving_interval, r.no_retarget),
        ([0xfa, 0xbf, 0xb5, 0xda], 18444, 150, true)
    );
    for p in [m, r] {
        assert_eq!(p.genesis.header.bits, p.pow_limit_bits);
        let t = target_from_compact(p.pow_limit_bits).target;
        assert!(hash_meets_target(&p.genesis.header.hash(), &t));
    }
}
