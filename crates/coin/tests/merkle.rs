use servent_coin::{genesis_mainnet, merkle_root};

#[test]
fn genesis_merkle_and_duplicate_pair_mutation() {
    let b = genesis_mainnet();
    let ids: Vec<_> = b.txs.iter().map(|t| t.txid()).collect();
    assert_eq!(merkle_root(&ids), (b.header.merkle_root, false));
    let (a, c) = ([1u8; 32], [3u8; 32]);
    // [a, b, c] and [a, b, c, c] share a root; only the latter is mutated.
    let (r3, m3) = merkle_root(&[a, [2; 32], c]);
    let (r4, m4) = merkle_root(&[a, [2; 32], c, c]);
    assert_eq!(r3, r4);
    assert!(!m3);
    assert!(m4);
}
