//! The wallet's keys, addresses and file format (Coin II), sans-IO: no
//! disk, clock or OS randomness here — entropy, salts, nonces and file
//! bytes come in as arguments, and bytes go out.
//!
//! - [`base58`]: Base58 and Base58Check.
//! - [`keys`]: P2PKH/P2SH addresses, multisig redeem scripts and WIF keys
//!   for mainnet and testnet/regtest.
//! - [`bip32`]: hierarchical deterministic keys and xprv/xpub.
//! - [`mnemonic`]: BIP 39 words and the seed they stand for.
//! - [`secret`]: the seed and password types.
//! - [`file`](mod@file): the wallet file, argon2id and XChaCha20-Poly1305 over the
//!   payload (seed, next receive and change indexes, network, labels, mnemonic
//!   entropy, scanned blocks, transactions).
//! - [`amount`]: BTC and `sat` amounts as users write them.
//! - [`chain`]: the wallet's transactions, coins, balances and history, fed
//!   blocks and mempool transactions; reorganisations by block hash.
//! - [`coinselect`]: branch and bound with a largest-first fallback.
//! - [`build`](mod@build): building and signing P2PKH payments.
//!
//! Secrets (keys, seeds, passwords) print as `<redacted>` and are wiped
//! when dropped.
pub mod amount;
pub mod base58;
pub mod bip32;
pub mod build;
pub mod chain;
pub mod coinselect;
pub mod file;
pub mod keys;
pub mod mnemonic;
pub mod secret;

pub use bip32::{Bip32Error, DerivationPath, ExtendedPrivKey, ExtendedPubKey, HARDENED};
pub use file::{KdfParams, WalletFileError, WalletPayload, decrypt, encrypt, encrypt_with};
pub use keys::{
    Address, AddressError, MultisigError, Network, PrivateKey, WifError, multisig_redeem_script,
};
pub use mnemonic::{Mnemonic, MnemonicError};
pub use secret::{Password, Seed};
