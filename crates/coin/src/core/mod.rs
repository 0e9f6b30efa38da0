//! Sans-IO consensus: the legacy (pre-SegWit) script interpreter and its
//! signature hash. No disk, clock, environment, sockets or threads: the
//! transaction being checked and the flags are inputs.
pub mod block;
pub mod electrum;
pub mod mempool;
pub mod node;
pub mod pool;
pub mod pow;
pub mod script;
pub mod sighash;
pub mod tx;

pub use script::{Flags, ScriptError, SignatureChecker, TxChecker, eval_script, verify_script};
pub use sighash::legacy_sighash;
pub use tx::{TxError, check_transaction};
