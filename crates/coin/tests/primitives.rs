use servent_coin::wire::{Block, DecodeError, Encode, Reader, Transaction, write_compact_size};
use servent_coin::{genesis_mainnet, genesis_regtest, hash_hex};

#[test]
fn genesis_hashes_match_core() {
    let m = genesis_mainnet();
    assert_eq!(
        m.header.hash_hex(),
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
    );
    assert_eq!(
        hash_hex(&m.header.merkle_root),
        "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
    );
    let r = genesis_regtest();
    assert_eq!(
        r.header.hash_hex(),
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
    );
}

#[test]
fn block_round_trips() {
    let b = genesis_mainnet();
    let bytes = b.encode();
    assert_eq!(bytes.len(), 285);
    assert_eq!(Block::decode(&bytes), Ok(b));
    for cut in 0..bytes.len() {
        assert!(
            Block::decode(&bytes[..cut]).is_err(),
            "truncated at {cut} decoded"
        );
    }
}

#[test]
fn compact_size_is_canonical() {
    for n in [
        0u64,
        0xfc,
        0xfd,
        0xffff,
        0x1_0000,
        0xffff_ffff,
        0x1_0000_0000,
    ] {
        let mut v = Vec::new();
        write_compact_size(&mut v, n);
        assert_eq!(Reader::new(&v).compact_size(), Ok(n));
    }
    assert_eq!(
        Reader::new(&[0xfd, 0xfc, 0x00]).compact_size(),
        Err(DecodeError::NonCanonical)
    );
    assert_eq!(
        Reader::new(&[0xfe, 0xff, 0xff, 0, 0]).compact_size(),
        Err(DecodeError::NonCanonical)
    );
}

#[test]
fn huge_count_is_refused_before_allocating() {
    let mut v = 1i32.to_le_bytes().to_vec();
    v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        Transaction::decode(&v),
        Err(DecodeError::Oversized(_))
    ));
}

#[test]
fn segwit_marker_is_a_typed_error() {
    let mut v = 2i32.to_le_bytes().to_vec();
    v.extend_from_slice(&[0x00, 0x01, 0x01]);
    v.extend_from_slice(&[0u8; 60]);
    assert_eq!(Transaction::decode(&v), Err(DecodeError::SegwitMarker));
}
