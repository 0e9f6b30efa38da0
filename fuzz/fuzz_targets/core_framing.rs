//! Arbitrary specs and byte streams through `RecvBuf`: frames or errors, never a panic, and
//! the buffer never holds more than its limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_core::framing::{Endian, FrameSpec, RecvBuf};

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let width = [1usize, 2, 4, 8][usize::from(data[0] % 4)];
    let spec = FrameSpec {
        header_len: width + usize::from(data[1] % 24),
        len_offset: usize::from(data[1] % 24),
        len_width: width,
        endian: if data[2] & 1 == 0 { Endian::Big } else { Endian::Little },
        max_payload: usize::from(data[3]) * 64,
    };
    let mut buf = RecvBuf::new(spec.max_frame_len());
    for chunk in data[4..].chunks(usize::from(data[2] >> 1).max(1)) {
        if buf.extend(chunk).is_err() {
            return;
        }
        loop {
            match buf.next_frame(&spec) {
                Ok(Some(f)) => assert!(f.payload.len() <= spec.max_payload),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let _ = buf.take_until(b"\r\n\r\n", 256);
        assert!(buf.len() <= spec.max_frame_len());
    }
});
