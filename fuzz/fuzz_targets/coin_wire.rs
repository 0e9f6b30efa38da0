//! Arbitrary bytes into every Bitcoin decoder: CompactSize, transaction
//! (legacy and BIP 144 witness serializations), header, block. Never a
//! panic; whatever decodes re-encodes to the same bytes (the decoders
//! accept only canonical encodings).
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_coin::wire::{
    Block, BlockHeader, Encode, Reader, Transaction, WitnessTx, write_compact_size,
};

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    if let Ok(n) = r.compact_size() {
        let used = data.len() - r.remaining();
        let mut out = Vec::new();
        write_compact_size(&mut out, n);
        assert_eq!(out, data[..used]);
    }
    if let Ok(tx) = Transaction::decode(data) {
        assert_eq!(tx.encode(), data);
        let _ = servent_coin::core::check_transaction(&tx);
    }
    if let Ok(w) = WitnessTx::decode(data) {
        assert_eq!(w.encode(), data);
        // The txid never covers the witness.
        assert_eq!(w.txid(), w.tx.txid());
    }
    let mut r = Reader::new(data);
    if let Ok(h) = BlockHeader::decode_from(&mut r) {
        assert_eq!(h.encode(), data[..80]);
    }
    if let Ok(b) = Block::decode(data) {
        assert_eq!(b.encode(), data);
        let _ = servent_coin::core::block::check_block(&b, &servent_coin::Params::regtest(), 0);
    }
});
