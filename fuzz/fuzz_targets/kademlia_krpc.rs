//! Arbitrary datagrams into the KRPC decoder: never a panic; whatever decodes re-encodes to
//! bytes that decode to the same message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_kademlia::krpc;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = krpc::decode(data) {
        let again = krpc::decode(&m.encode()).expect("our encoding decodes");
        assert_eq!(again, m);
    }
});
