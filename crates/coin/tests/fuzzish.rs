use proptest::prelude::*;
use servent_coin::wire::{Block, Encode, Transaction};

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_decoded_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(t) = Transaction::decode(&bytes) {
            prop_assert_eq!(t.encode(), bytes.clone());
        }
        if let Ok(b) = Block::decode(&bytes) {
            prop_assert_eq!(b.encode(), bytes);
        }
    }
}
