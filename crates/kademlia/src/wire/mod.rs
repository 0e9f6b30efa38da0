//! The wire format: bencoded KRPC messages over UDP (BEP 5, with BEP 42's `ip` field and
//! BEP 44's get/put). Codecs only: bytes to messages and back, strict limits, no state.

pub mod krpc;
