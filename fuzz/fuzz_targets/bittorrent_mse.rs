//! Arbitrary bytes into both sides of Message Stream Encryption, in arbitrary chunks, and into
//! the plaintext/MSE classifier: never a panic, and the handshake buffers stay bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_bittorrent::metainfo::InfoHash;
use servent_bittorrent::mse::{Initiator, MseConfig, Responder, classify};
use servent_core::Rng;

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let cut = (usize::from(split) * 8).min(rest.len());
    let (x, y) = rest.split_at(cut);
    let ih = InfoHash([0x11; 20]);
    let mut rng = Rng::new(u64::from(split));
    let mut out = Vec::new();
    let mut b = Responder::new(&MseConfig::default(), &mut rng, &[ih]);
    if b.handle_input(x, &mut out).is_ok() {
        let _ = b.handle_input(y, &mut out);
    }
    let mut a = Initiator::new(ih, &MseConfig::default(), &mut rng, b"ia", &mut out).unwrap();
    if a.handle_input(x, &mut out).is_ok() {
        let _ = a.handle_input(y, &mut out);
    }
    assert!(out.len() < 4096);
});
