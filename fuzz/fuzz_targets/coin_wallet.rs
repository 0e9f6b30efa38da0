//! Arbitrary bytes into every wallet decoder: Base58 and Base58Check, addresses and WIF keys
//! for each network, xprv/xpub, derivation paths, BIP 39 phrases and the encrypted wallet
//! file. Typed errors, never a panic; whatever decodes encodes back to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use servent_coin::wallet::{
    Address, DerivationPath, ExtendedPrivKey, ExtendedPubKey, Mnemonic, Network, Password,
    PrivateKey, base58, decrypt,
};

fuzz_target!(|data: &[u8]| {
    // The wallet file: almost every input stops at the checksum, before any key derivation.
    let password = Password::new("fuzz".to_string()).expect("a non-empty password");
    let _ = decrypt(data, &password);

    let text = String::from_utf8_lossy(data);
    if let Ok(b) = base58::decode(&text) {
        assert_eq!(base58::decode(&base58::encode(&b)).as_ref(), Ok(&b));
    }
    if let Ok(b) = base58::check_decode(&text) {
        assert_eq!(base58::check_decode(&base58::check_encode(&b)).as_ref(), Ok(&b));
    }
    for net in [Network::Mainnet, Network::Testnet, Network::Regtest] {
        if let Ok(a) = Address::decode(&text, net) {
            assert_eq!(Address::decode(&a.encode(net), net), Ok(a));
            assert_eq!(Address::from_script(&a.script_pubkey()), Some(a));
        }
        if let Ok(k) = PrivateKey::from_wif(&text, net) {
            assert!(PrivateKey::from_wif(&&k.to_wif(net), net) == Ok(k));
        }
    }
    if let Ok(x) = ExtendedPrivKey::from_base58(&text) {
        assert!(ExtendedPrivKey::from_base58(&x.to_base58()) == Ok(x));
    }
    if let Ok(x) = ExtendedPubKey::from_base58(&text) {
        assert_eq!(ExtendedPubKey::from_base58(&x.to_base58()), Ok(x));
    }
    if let Ok(p) = text.parse::<DerivationPath>() {
        assert_eq!(p.to_string().parse::<DerivationPath>(), Ok(p));
    }
    if let Ok(m) = Mnemonic::parse(&text) {
        let again = Mnemonic::parse(&m.phrase()).expect("our own phrase parses");
        assert_eq!(*again.entropy(), *m.entropy());
    }
});
