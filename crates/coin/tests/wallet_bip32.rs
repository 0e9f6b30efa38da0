//! BIP 32 derivation against the BIP's official test vectors 1, 2 and 3
//! (seed, path, xpub, xprv), public derivation agreeing with private, and
//! extended-key parsing refusing what is not one.
use servent_coin::wallet::{
    Bip32Error, DerivationPath, ExtendedPrivKey, ExtendedPubKey, HARDENED, Network,
};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// (path, xpub, xprv) for one seed.
type Chain = [(&'static str, &'static str, &'static str)];

const SEED_1: &str = "000102030405060708090a0b0c0d0e0f";
const VECTOR_1: &Chain = &[
    (
        "m",
        "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
        "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
    ),
    (
        "m/0H",
        "xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw",
        "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
    ),
    (
        "m/0H/1",
        "xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ",
        "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
    ),
    (
        "m/0H/1/2H",
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5",
        "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
    ),
    (
        "m/0H/1/2H/2",
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV",
        "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
    ),
    (
        "m/0H/1/2H/2/1000000000",
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy",
        "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
    ),
];

const SEED_2: &str = "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542";
const VECTOR_2: &Chain = &[
    (
        "m",
        "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB",
        "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
    ),
    (
        "m/0",
        "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH",
        "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
    ),
    (
        "m/0/2147483647H",
        "xpub6ASAVgeehLbnwdqV6UKMHVzgqAG8Gr6riv3Fxxpj8ksbH9ebxaEyBLZ85ySDhKiLDBrQSARLq1uNRts8RuJiHjaDMBU4Zn9h8LZNnBC5y4a",
        "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
    ),
    (
        "m/0/2147483647H/1",
        "xpub6DF8uhdarytz3FWdA8TvFSvvAh8dP3283MY7p2V4SeE2wyWmG5mg5EwVvmdMVCQcoNJxGoWaU9DCWh89LojfZ537wTfunKau47EL2dhHKon",
        "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
    ),
    (
        "m/0/2147483647H/1/2147483646H",
        "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL",
        "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
    ),
    (
        "m/0/2147483647H/1/2147483646H/2",
        "xpub6FnCn6nSzZAw5Tw7cgR9bi15UV96gLZhjDstkXXxvCLsUXBGXPdSnLFbdpq8p9HmGsApME5hQTZ3emM2rnY5agb9rXpVGyy3bdW6EEgAtqt",
        "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
    ),
];

/// Vector 3 checks that leading zeros of the private key are kept.
const SEED_3: &str = "4b381541583be4423346c643850da4b320e46a87ae3d2a4e6da11eba819cd4acba45d239319ac14f863b8d5ab5a0d0c64d2e8a1e7d1457df2e5a3c51c73235be";
const VECTOR_3: &Chain = &[
    (
        "m",
        "xpub661MyMwAqRbcEZVB4dScxMAdx6d4nFc9nvyvH3v4gJL378CSRZiYmhRoP7mBy6gSPSCYk6SzXPTf3ND1cZAceL7SfJ1Z3GC8vBgp2epUt13",
        "xprv9s21ZrQH143K25QhxbucbDDuQ4naNntJRi4KUfWT7xo4EKsHt2QJDu7KXp1A3u7Bi1j8ph3EGsZ9Xvz9dGuVrtHHs7pXeTzjuxBrCmmhgC6",
    ),
    (
        "m/0H",
        "xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y",
        "xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L",
    ),
];

fn check_vector(n: usize, seed: &str, chain: &Chain) -> usize {
    let master = ExtendedPrivKey::master(&unhex(seed), Network::Mainnet).expect("seed");
    let mut parent: Option<ExtendedPrivKey> = None;
    for &(path, xpub, xprv) in chain {
        let p: DerivationPath = path.parse().expect("path");
        let k = master.derive_path(&p).expect("derive");
        assert_eq!(k.to_base58().as_str(), xprv, "vector {n} {path} xprv");
        assert_eq!(k.to_public().to_base58(), xpub, "vector {n} {path} xpub");
        // Both texts parse back to the same key.
        assert_eq!(ExtendedPrivKey::from_base58(xprv).expect("xprv"), k);
        assert_eq!(
            ExtendedPubKey::from_base58(xpub).expect("xpub"),
            k.to_public()
        );
        // Stepping one child at a time from the parent agrees; a normal step
        // can also be taken from the parent's public key (CKDpub).
        if let (Some(par), Some(&last)) = (&parent, p.0.last()) {
            assert_eq!(&par.derive_child(last).expect("child"), &k);
            if last < HARDENED {
                let pubchild = par.to_public().derive_child(last).expect("ckdpub");
                assert_eq!(pubchild.to_base58(), xpub, "vector {n} {path} CKDpub");
            } else {
                assert_eq!(
                    par.to_public().derive_child(last),
                    Err(Bip32Error::HardenedFromPublic)
                );
            }
        }
        parent = Some(k);
    }
    chain.len()
}

#[test]
fn bip32_official_vectors_1_2_3() {
    let n = check_vector(1, SEED_1, VECTOR_1)
        + check_vector(2, SEED_2, VECTOR_2)
        + check_vector(3, SEED_3, VECTOR_3);
    println!("BIP 32 vectors 1-3: {n} chains (xprv, xpub, CKDpriv, CKDpub) pass");
    assert_eq!(n, 14);
}

#[test]
fn testnet_keys_serialize_as_tprv_tpub_and_public_paths_match() {
    let master = ExtendedPrivKey::master(&unhex(SEED_1), Network::Regtest).expect("seed");
    let path: DerivationPath = "m/44'/1'/0'/0/5".parse().expect("path");
    assert_eq!(path.to_string(), "m/44'/1'/0'/0/5");
    assert_eq!(path.0, vec![44 | HARDENED, 1 | HARDENED, HARDENED, 0, 5]);
    let k = master.derive_path(&path).expect("derive");
    assert!(k.to_base58().starts_with("tprv"));
    assert!(k.to_public().to_base58().starts_with("tpub"));
    assert_eq!(k.depth, 5);
    assert_eq!(k.child_number, 5);
    let back = ExtendedPrivKey::from_base58(&k.to_base58()).expect("tprv");
    assert_eq!(back.network, Network::Testnet);
    assert_eq!(back.private_key(), k.private_key());
    // The account xpub derives the same receive addresses as the private keys.
    let account = master
        .derive_path(&"m/44'/1'/0'".parse().expect("path"))
        .expect("account");
    let xpub = account.to_public();
    for i in 0..5 {
        let p = DerivationPath(vec![0, i]);
        assert_eq!(
            xpub.derive_path(&p).expect("pub").address(),
            account.derive_path(&p).expect("priv").address()
        );
    }
    assert_eq!(k.address(), k.private_key().address());
    assert_eq!(format!("{k:?}"), "ExtendedPrivKey(<redacted>)");
}

#[test]
fn bad_seeds_paths_and_extended_keys_are_refused() {
    assert_eq!(
        ExtendedPrivKey::master(&[0; 15], Network::Mainnet),
        Err(Bip32Error::BadSeedLength(15))
    );
    assert!(ExtendedPrivKey::master(&[0; 65], Network::Mainnet).is_err());
    for bad in [
        "",
        "m/",
        "44'/0",
        "m/x",
        "m/2147483648",
        "m/1''",
        "m/-1",
        "n/0",
    ] {
        assert!(
            bad.parse::<DerivationPath>().is_err(),
            "path {bad:?} accepted"
        );
    }
    let (_, xpub, xprv) = VECTOR_1[1];
    assert_eq!(
        ExtendedPrivKey::from_base58(xpub),
        Err(Bip32Error::WrongKind("private"))
    );
    assert_eq!(
        ExtendedPubKey::from_base58(xprv),
        Err(Bip32Error::WrongKind("public"))
    );
    assert!(ExtendedPrivKey::from_base58(&xprv[..xprv.len() - 1]).is_err());
    assert!(matches!(
        ExtendedPrivKey::from_base58("1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"),
        Err(Bip32Error::BadLength(21))
    ));
}
