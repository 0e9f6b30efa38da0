use servent_coin::{genesis_mainnet, hash_meets_target, target_from_compact};

#[test]
fn nbits_decode_as_core() {
    let t = target_from_compact(0x1d00_ffff);
    let mut want = [0u8; 32];
    want[4] = 0xff;
    want[5] = 0xff;
    assert_eq!(t.target, want);
    assert!(!t.negative && !t.overflow);
    assert!(target_from_compact(0x0180_0000 | 0x01).target == [0; 32]);
    assert!(target_from_compact(0x04923456).negative);
    assert!(target_from_compact(0xff12_3456).overflow);
    let g = genesis_mainnet();
    assert!(hash_meets_target(&g.header.hash(), &t.target));
    let mut hard = [0u8; 32];
    hard[31] = 1;
    assert!(!hash_meets_target(&g.header.hash(), &hard));
}
