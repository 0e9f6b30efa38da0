//! The wallet's addresses and WIF keys against Bitcoin Core's key_io and
//! base58 vectors (src/test/data at 9f713b83, in shared/data/bitcoin/core):
//! every P2PKH, P2SH and WIF case must round-trip, every invalid string must
//! be refused.
#![allow(clippy::disallowed_methods)]

use serde_json::Value;
use servent_coin::wallet::base58;
use servent_coin::wallet::{
    Address, AddressError, MultisigError, Network, PrivateKey, WifError, multisig_redeem_script,
};

#[path = "support/data.rs"]
mod support;
use support::unhex;

/// One of Core's JSON files in shared/data/bitcoin/core.
fn data(name: &str) -> Vec<Value> {
    match serde_json::from_slice(&support::read(&format!("core/{name}"))) {
        Ok(Value::Array(v)) => v,
        other => panic!("{name}: not a JSON array: {other:?}"),
    }
}

fn network(chain: &str) -> Network {
    match chain {
        "main" => Network::Mainnet,
        "regtest" => Network::Regtest,
        "test" | "testnet4" | "signet" => Network::Testnet,
        other => panic!("unknown chain {other}"),
    }
}

#[test]
fn base58_vectors_encode_and_decode() {
    let cases = data("base58_encode_decode.json");
    let mut n = 0;
    for c in &cases {
        let (hex, text) = (c[0].as_str().expect("hex"), c[1].as_str().expect("text"));
        assert_eq!(base58::encode(&unhex(hex)), text, "encode {hex}");
        assert_eq!(
            base58::decode(text).as_deref(),
            Ok(&unhex(hex)[..]),
            "decode {text}"
        );
        n += 1;
    }
    println!(
        "base58_encode_decode.json: {n} of {} cases pass",
        cases.len()
    );
    assert_eq!(n, cases.len());
    assert_eq!(
        base58::decode("3mJr0"),
        Err(base58::Base58Error::BadChar('0'))
    );
    assert_eq!(base58::decode("Il"), Err(base58::Base58Error::BadChar('I')));
    assert!(matches!(
        base58::decode(&"2".repeat(base58::MAX_DECODE_LEN + 1)),
        Err(base58::Base58Error::TooLong(_))
    ));
}

#[test]
fn key_io_valid_p2pkh_p2sh_and_wif_round_trip() {
    let cases = data("key_io_valid.json");
    let (mut addrs, mut wifs, mut skipped) = (0, 0, 0);
    for c in &cases {
        let text = c[0].as_str().expect("text");
        let hex = unhex(c[1].as_str().expect("hex"));
        let meta = &c[2];
        let net = network(meta["chain"].as_str().expect("chain"));
        let other = if net.is_mainnet() {
            Network::Testnet
        } else {
            Network::Mainnet
        };
        if meta["isPrivkey"].as_bool() == Some(true) {
            let compressed = meta["isCompressed"].as_bool().expect("isCompressed");
            let key = PrivateKey::from_wif(text, net).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&key.secret_bytes()[..], &hex[..], "{text}");
            assert_eq!(key.compressed, compressed, "{text}");
            assert_eq!(key.to_wif(net).as_str(), text);
            assert!(matches!(
                PrivateKey::from_wif(text, other),
                Err(WifError::WrongVersion(_))
            ));
            assert!(
                Address::decode(text, net).is_err(),
                "a WIF key is no address"
            );
            wifs += 1;
        } else if let Some(want) = Address::from_script(&hex) {
            let got = Address::decode(text, net).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got, want, "{text}");
            assert_eq!(got.script_pubkey(), hex, "{text}");
            assert_eq!(got.encode(net), text);
            assert!(matches!(
                Address::decode(text, other),
                Err(AddressError::WrongVersion(_))
            ));
            assert!(
                PrivateKey::from_wif(text, net).is_err(),
                "an address is no key"
            );
            addrs += 1;
        } else {
            skipped += 1; // bech32 / segwit
        }
    }
    println!(
        "key_io_valid.json: {addrs} P2PKH/P2SH addresses and {wifs} WIF keys pass, {skipped} segwit cases skipped"
    );
    assert!(
        addrs >= 20 && wifs >= 10,
        "too few Base58 cases: {addrs} + {wifs}"
    );
    assert_eq!(addrs + wifs + skipped, cases.len());
}

#[test]
fn key_io_invalid_strings_are_all_refused() {
    let cases = data("key_io_invalid.json");
    for c in &cases {
        let text = c[0].as_str().expect("text");
        for net in [Network::Mainnet, Network::Testnet, Network::Regtest] {
            assert!(
                Address::decode(text, net).is_err(),
                "address {text} accepted"
            );
            assert!(
                PrivateKey::from_wif(text, net).is_err(),
                "key {text} accepted"
            );
        }
    }
    println!("key_io_invalid.json: all {} strings refused", cases.len());
    assert!(cases.len() > 50);
}

#[test]
fn wif_refuses_out_of_range_keys_and_bad_flags() {
    let mut data = vec![0x80];
    data.extend_from_slice(&[0u8; 32]);
    data.push(0x01);
    let zero = base58::check_encode(&data);
    assert_eq!(
        PrivateKey::from_wif(&zero, Network::Mainnet),
        Err(WifError::InvalidKey)
    );
    data[1..33].copy_from_slice(&[0xff; 32]);
    assert_eq!(
        PrivateKey::from_wif(&base58::check_encode(&data), Network::Mainnet),
        Err(WifError::InvalidKey)
    );
    data[1..33].copy_from_slice(&[0x11; 32]);
    data[33] = 0x02;
    assert_eq!(
        PrivateKey::from_wif(&base58::check_encode(&data), Network::Mainnet),
        Err(WifError::BadCompressionFlag(0x02))
    );
    data[33] = 0x01;
    let good = base58::check_encode(&data);
    let key = PrivateKey::from_wif(&good, Network::Mainnet).expect("valid");
    assert_eq!(format!("{key:?}"), "PrivateKey(<redacted>)");
    let mut bad = good.to_string();
    let last = if bad.ends_with('2') { "3" } else { "2" };
    bad.replace_range(bad.len() - 1.., last);
    assert!(matches!(
        PrivateKey::from_wif(&bad, Network::Mainnet),
        Err(WifError::Base58(base58::Base58Error::BadChecksum))
    ));
}

#[test]
fn a_key_s_address_is_the_hash160_of_its_public_key() {
    // Private key 1: its compressed public key is G, whose P2PKH address is well known.
    let mut one = [0u8; 32];
    one[31] = 1;
    let key = PrivateKey::from_bytes(one, true).expect("1 is a valid key");
    assert_eq!(
        key.address().encode(Network::Mainnet),
        "1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"
    );
    let uncompressed = PrivateKey::from_bytes(one, false).expect("valid");
    assert_eq!(
        uncompressed.address().encode(Network::Mainnet),
        "1EHNa6Q4Jz2uvNExL497mE43ikXhwF6kZm"
    );
    assert_eq!(Address::from_script(&[0x6a]), None);
}

/// Gavin Andresen's 2-of-3 example (the keys as WIF, their public keys, the
/// P2SH address and output script that Core's `createmultisig` gives).
#[test]
fn a_2_of_3_multisig_has_core_s_p2sh_address() {
    let wifs = [
        "5JaTXbAUmfPYZFRwrYaALK48fN6sFJp4rHqq2QSXs8ucfpE4yQU",
        "5Jb7fCeh1Wtm4yBBg3q3XbT6B525i17kVhy3vMC9AqfR6FH2qGk",
        "5JFjmGo5Fww9p8gvx48qBYDJNAzR9pmH5S389axMtDyPT8ddqmw",
    ];
    let pubs = [
        "0491bba2510912a5bd37da1fb5b1673010e43d2c6d812c514e91bfa9f2eb129e1c183329db55bd868e209aac2fbc02cb33d98fe74bf23f0c235d6126b1d8334f86",
        "04865c40293a680cb9c020e7b1e106d8c1916d3cef99aa431a56d253e69256dac09ef122b1a986818a7cb624532f062c1d1f8722084861c5c3291ccffef4ec6874",
        "048d2455d2403e08708fc1f556002f1b6cd83f992d085097f9974ab08a28838f07896fbab08f39495e15fa6fad6edbfb1e754e35fa1c7844c41f322a1863d46213",
    ];
    let keys: Vec<Vec<u8>> = wifs
        .iter()
        .map(|w| {
            let k = PrivateKey::from_wif(w, Network::Mainnet).expect("wif");
            assert!(!k.compressed);
            k.public_key_bytes()
        })
        .collect();
    for (k, p) in keys.iter().zip(pubs) {
        assert_eq!(k, &unhex(p));
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let redeem = multisig_redeem_script(2, &refs).expect("2 of 3");
    assert_eq!(
        (
            redeem[0],
            redeem[redeem.len() - 2],
            redeem[redeem.len() - 1]
        ),
        (0x52, 0x53, 0xae)
    );
    let addr = Address::p2sh(&redeem);
    assert_eq!(
        addr.encode(Network::Mainnet),
        "3QJmV3qfvL9SuYo34YihAf3sRCW3qSinyC"
    );
    assert_eq!(
        addr.script_pubkey(),
        unhex("a914f815b036d9bbbce5e9f2a00abd1bf3dc91e9551087")
    );
    assert!(addr.encode(Network::Regtest).starts_with('2'));
    assert_eq!(
        multisig_redeem_script(0, &refs),
        Err(MultisigError::BadThreshold {
            required: 0,
            keys: 3
        })
    );
    assert_eq!(
        multisig_redeem_script(4, &refs),
        Err(MultisigError::BadThreshold {
            required: 4,
            keys: 3
        })
    );
    let bad: Vec<&[u8]> = vec![refs[0], &[0x05; 33][..]];
    assert!(matches!(
        multisig_redeem_script(1, &bad),
        Err(MultisigError::BadKey(1))
    ));
    // Nine uncompressed keys (597 bytes) cannot be a P2SH redeem script.
    let nine: Vec<&[u8]> = (0..9).map(|i| refs[i % 3]).collect();
    assert!(matches!(
        multisig_redeem_script(2, &nine),
        Err(MultisigError::TooLong(_))
    ));
}
