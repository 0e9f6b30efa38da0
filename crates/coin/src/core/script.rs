//! The legacy script interpreter with Bitcoin Core's exact pre-SegWit
//! semantics (`EvalScript`/`VerifyScript` for `SigVersion::BASE`): every
//! opcode including the disabled ones, the limits (script 10 000 bytes, push
//! 520, 201 counted opcodes, stack + altstack 1 000), P2SH, CHECKMULTISIG
//! with its extra pop, BIP65/BIP112 lock times, and the policy rules
//! (STRICTENC, DERSIG, LOW_S, NULLDUMMY, MINIMALDATA, CLEANSTACK, NULLFAIL,
//! SIGPUSHONLY, DISCOURAGE_UPGRADABLE_NOPS, CONST_SCRIPTCODE) as flags.
use secp256k1::{Message, PublicKey, Secp256k1, VerifyOnly, ecdsa::Signature};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::wire::Transaction;

pub const MAX_SCRIPT_SIZE: usize = 10_000;
pub const MAX_ELEMENT_SIZE: usize = 520;
pub const MAX_OPS: usize = 201;
pub const MAX_STACK_SIZE: usize = 1_000;
pub const MAX_PUBKEYS_PER_MULTISIG: i64 = 20;
pub const LOCKTIME_THRESHOLD: i64 = 500_000_000;
pub const SEQUENCE_FINAL: u32 = 0xffff_ffff;
pub const SEQUENCE_LOCKTIME_DISABLE_FLAG: i64 = 1 << 31;
pub const SEQUENCE_LOCKTIME_TYPE_FLAG: i64 = 1 << 22;
pub const SEQUENCE_LOCKTIME_MASK: i64 = 0x0000_ffff;

pub const OP_0: u8 = 0x00;
pub const OP_PUSHDATA1: u8 = 0x4c;
pub const OP_PUSHDATA2: u8 = 0x4d;
pub const OP_PUSHDATA4: u8 = 0x4e;
pub const OP_1NEGATE: u8 = 0x4f;
pub const OP_1: u8 = 0x51;
pub const OP_16: u8 = 0x60;
pub const OP_NOP: u8 = 0x61;
pub const OP_IF: u8 = 0x63;
pub const OP_NOTIF: u8 = 0x64;
pub const OP_ELSE: u8 = 0x67;
pub const OP_ENDIF: u8 = 0x68;
pub const OP_VERIFY: u8 = 0x69;
pub const OP_RETURN: u8 = 0x6a;
pub const OP_EQUAL: u8 = 0x87;
pub const OP_HASH160: u8 = 0xa9;
pub const OP_CODESEPARATOR: u8 = 0xab;
pub const OP_CHECKSIG: u8 = 0xac;
pub const OP_CHECKSIGVERIFY: u8 = 0xad;
pub const OP_CHECKMULTISIG: u8 = 0xae;
pub const OP_CHECKMULTISIGVERIFY: u8 = 0xaf;
pub const OP_NOP1: u8 = 0xb0;
pub const OP_CHECKLOCKTIMEVERIFY: u8 = 0xb1;
pub const OP_CHECKSEQUENCEVERIFY: u8 = 0xb2;
pub const OP_NOP10: u8 = 0xb9;

/// Script verification flags, Core's `SCRIPT_VERIFY_*` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u32);

impl Flags {
    pub const NONE: Flags = Flags(0);
    pub const P2SH: Flags = Flags(1 << 0);
    pub const STRICTENC: Flags = Flags(1 << 1);
    pub const DERSIG: Flags = Flags(1 << 2);
    pub const LOW_S: Flags = Flags(1 << 3);
    pub const NULLDUMMY: Flags = Flags(1 << 4);
    pub const SIGPUSHONLY: Flags = Flags(1 << 5);
    pub const MINIMALDATA: Flags = Flags(1 << 6);
    pub const DISCOURAGE_UPGRADABLE_NOPS: Flags = Flags(1 << 7);
    pub const CLEANSTACK: Flags = Flags(1 << 8);
    pub const CHECKLOCKTIMEVERIFY: Flags = Flags(1 << 9);
    pub const CHECKSEQUENCEVERIFY: Flags = Flags(1 << 10);
    /// MINIMALIF only applies to witness scripts: no effect here.
    pub const MINIMALIF: Flags = Flags(1 << 13);
    pub const NULLFAIL: Flags = Flags(1 << 14);
    pub const CONST_SCRIPTCODE: Flags = Flags(1 << 16);

    pub fn has(self, f: Flags) -> bool {
        self.0 & f.0 == f.0
    }
    pub fn with(self, f: Flags) -> Flags {
        Flags(self.0 | f.0)
    }
    pub fn without(self, f: Flags) -> Flags {
        Flags(self.0 & !f.0)
    }
    /// Parse Core's comma-separated flag names (as in its JSON vectors);
    /// `None` for a name this interpreter does not know (WITNESS, TAPROOT, ...).
    pub fn parse(names: &str) -> Option<Flags> {
        let mut f = Flags::NONE;
        for n in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            f = f.with(match n {
                "NONE" => Flags::NONE,
                "P2SH" => Flags::P2SH,
                "STRICTENC" => Flags::STRICTENC,
                "DERSIG" => Flags::DERSIG,
                "LOW_S" => Flags::LOW_S,
                "NULLDUMMY" => Flags::NULLDUMMY,
                "SIGPUSHONLY" => Flags::SIGPUSHONLY,
                "MINIMALDATA" => Flags::MINIMALDATA,
                "DISCOURAGE_UPGRADABLE_NOPS" => Flags::DISCOURAGE_UPGRADABLE_NOPS,
                "CLEANSTACK" => Flags::CLEANSTACK,
                "CHECKLOCKTIMEVERIFY" => Flags::CHECKLOCKTIMEVERIFY,
                "CHECKSEQUENCEVERIFY" => Flags::CHECKSEQUENCEVERIFY,
                "MINIMALIF" => Flags::MINIMALIF,
                "NULLFAIL" => Flags::NULLFAIL,
                "CONST_SCRIPTCODE" => Flags::CONST_SCRIPTCODE,
                _ => return None,
            });
        }
        Some(f)
    }
}

/// Why a script failed, one variant per Core `ScriptError` that legacy
/// scripts can produce; [`ScriptError::core_name`] gives Core's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ScriptError {
    #[error("script evaluated to false")]
    EvalFalse,
    #[error("OP_RETURN executed")]
    OpReturn,
    #[error("script larger than 10 000 bytes")]
    ScriptSize,
    #[error("push larger than 520 bytes")]
    PushSize,
    #[error("more than 201 opcodes")]
    OpCount,
    #[error("stack + altstack larger than 1 000")]
    StackSize,
    #[error("signature count out of range")]
    SigCount,
    #[error("public key count out of range")]
    PubkeyCount,
    #[error("OP_VERIFY failed")]
    Verify,
    #[error("OP_EQUALVERIFY failed")]
    EqualVerify,
    #[error("OP_CHECKMULTISIGVERIFY failed")]
    CheckMultisigVerify,
    #[error("OP_CHECKSIGVERIFY failed")]
    CheckSigVerify,
    #[error("OP_NUMEQUALVERIFY failed")]
    NumEqualVerify,
    #[error("bad or truncated opcode")]
    BadOpcode,
    #[error("disabled opcode")]
    DisabledOpcode,
    #[error("operation on too small a stack")]
    InvalidStackOperation,
    #[error("operation on too small an altstack")]
    InvalidAltstackOperation,
    #[error("unbalanced conditional")]
    UnbalancedConditional,
    #[error("negative lock time")]
    NegativeLocktime,
    #[error("lock time not satisfied")]
    UnsatisfiedLocktime,
    #[error("undefined signature hash type")]
    SigHashtype,
    #[error("signature is not strict DER")]
    SigDer,
    #[error("push is not minimal")]
    MinimalData,
    #[error("scriptSig is not push-only")]
    SigPushOnly,
    #[error("signature S is high")]
    SigHighS,
    #[error("CHECKMULTISIG dummy is not empty")]
    SigNullDummy,
    #[error("public key is neither compressed nor uncompressed")]
    PubkeyType,
    #[error("stack not clean after evaluation")]
    CleanStack,
    #[error("failed signature check with a non-empty signature")]
    NullFail,
    #[error("upgradable NOP used")]
    DiscourageUpgradableNops,
    #[error("OP_CODESEPARATOR in a legacy script")]
    OpCodeSeparator,
    #[error("signature found in its own script code")]
    SigFindAndDelete,
    #[error("script number longer than allowed")]
    NumOverflow,
    #[error("script number not minimally encoded")]
    NumNonMinimal,
}

impl ScriptError {
    /// Core's `ScriptError` name as its test vectors print it.
    pub fn core_name(self) -> &'static str {
        use ScriptError::*;
        match self {
            EvalFalse => "EVAL_FALSE",
            OpReturn => "OP_RETURN",
            ScriptSize => "SCRIPT_SIZE",
            PushSize => "PUSH_SIZE",
            OpCount => "OP_COUNT",
            StackSize => "STACK_SIZE",
            SigCount => "SIG_COUNT",
            PubkeyCount => "PUBKEY_COUNT",
            Verify => "VERIFY",
            EqualVerify => "EQUALVERIFY",
            CheckMultisigVerify => "CHECKMULTISIGVERIFY",
            CheckSigVerify => "CHECKSIGVERIFY",
            NumEqualVerify => "NUMEQUALVERIFY",
            BadOpcode => "BAD_OPCODE",
            DisabledOpcode => "DISABLED_OPCODE",
            InvalidStackOperation => "INVALID_STACK_OPERATION",
            InvalidAltstackOperation => "INVALID_ALTSTACK_OPERATION",
            UnbalancedConditional => "UNBALANCED_CONDITIONAL",
            NegativeLocktime => "NEGATIVE_LOCKTIME",
            UnsatisfiedLocktime => "UNSATISFIED_LOCKTIME",
            SigHashtype => "SIG_HASHTYPE",
            SigDer => "SIG_DER",
            MinimalData => "MINIMALDATA",
            SigPushOnly => "SIG_PUSHONLY",
            SigHighS => "SIG_HIGH_S",
            SigNullDummy => "SIG_NULLDUMMY",
            PubkeyType => "PUBKEYTYPE",
            CleanStack => "CLEANSTACK",
            NullFail => "NULLFAIL",
            DiscourageUpgradableNops => "DISCOURAGE_UPGRADABLE_NOPS",
            OpCodeSeparator => "OP_CODESEPARATOR",
            SigFindAndDelete => "SIG_FINDANDDELETE",
            // Core throws scriptnum_error, caught as UNKNOWN_ERROR.
            NumOverflow | NumNonMinimal => "UNKNOWN_ERROR",
        }
    }
}

/// One parsed instruction.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    pub opcode: u8,
    pub data: &'a [u8],
}

/// Read the instruction at `*pc` (Core's `GetScriptOp`); `None` if the
/// script ends or a push runs past its end.
pub fn get_op<'a>(script: &'a [u8], pc: &mut usize) -> Option<Op<'a>> {
    let rest = script.get(*pc..)?;
    let (&opcode, mut rest) = rest.split_first()?;
    let mut used = 1;
    let size = match opcode {
        0..OP_PUSHDATA1 => usize::from(opcode),
        OP_PUSHDATA1 => {
            let n = usize::from(*rest.first()?);
            rest = &rest[1..];
            used += 1;
            n
        }
        OP_PUSHDATA2 => {
            let b = rest.get(..2)?;
            rest = &rest[2..];
            used += 2;
            usize::from(u16::from_le_bytes([b[0], b[1]]))
        }
        OP_PUSHDATA4 => {
            let b = rest.get(..4)?;
            rest = &rest[4..];
            used += 4;
            usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()?
        }
        _ => 0,
    };
    let data = rest.get(..size)?;
    *pc += used + size;
    Some(Op { opcode, data })
}

/// Core's `CScript::IsPushOnly`: every instruction parses and is at most OP_16.
pub fn is_push_only(script: &[u8]) -> bool {
    let mut pc = 0;
    while pc < script.len() {
        match get_op(script, &mut pc) {
            Some(op) if op.opcode <= OP_16 => {}
            _ => return false,
        }
    }
    true
}

/// `OP_HASH160 <20 bytes> OP_EQUAL`.
pub fn is_p2sh(script: &[u8]) -> bool {
    script.len() == 23 && script[0] == OP_HASH160 && script[1] == 0x14 && script[22] == OP_EQUAL
}

/// The canonical push of `data` (Core's `CScript() << data`).
pub fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    if n < usize::from(OP_PUSHDATA1) {
        out.push(n as u8);
    } else if n <= 0xff {
        out.push(OP_PUSHDATA1);
        out.push(n as u8);
    } else if n <= 0xffff {
        out.push(OP_PUSHDATA2);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else {
        out.push(OP_PUSHDATA4);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    out.extend_from_slice(data);
}

/// Remove every occurrence of `pattern` that starts at an instruction
/// boundary (Core's `FindAndDelete`); returns how many were removed.
pub fn find_and_delete(script: &mut Vec<u8>, pattern: &[u8]) -> usize {
    if pattern.is_empty() {
        return 0;
    }
    let mut found = 0;
    let mut result = Vec::with_capacity(script.len());
    let (mut pc, mut pc2) = (0usize, 0usize);
    loop {
        result.extend_from_slice(&script[pc2..pc]);
        while script.len() - pc >= pattern.len() && script[pc..].starts_with(pattern) {
            pc += pattern.len();
            found += 1;
        }
        pc2 = pc;
        if get_op(script, &mut pc).is_none() {
            break;
        }
    }
    if found > 0 {
        result.extend_from_slice(&script[pc2..]);
        *script = result;
    }
    found
}

fn check_minimal_push(data: &[u8], opcode: u8) -> bool {
    match data.len() {
        0 => opcode == OP_0,
        1 if (1..=16).contains(&data[0]) => false,
        1 if data[0] == 0x81 => false,
        n @ 1..=75 => usize::from(opcode) == n,
        76..=255 => opcode == OP_PUSHDATA1,
        256..=65535 => opcode == OP_PUSHDATA2,
        _ => true,
    }
}

/// Decode a script number (Core's `CScriptNum`).
pub fn num_decode(v: &[u8], require_minimal: bool, max_size: usize) -> Result<i64, ScriptError> {
    if v.len() > max_size {
        return Err(ScriptError::NumOverflow);
    }
    let Some(&last) = v.last() else {
        return Ok(0);
    };
    if require_minimal && last & 0x7f == 0 && (v.len() <= 1 || v[v.len() - 2] & 0x80 == 0) {
        return Err(ScriptError::NumNonMinimal);
    }
    let mut r: i64 = 0;
    for (i, &b) in v.iter().enumerate() {
        r |= i64::from(b) << (8 * i);
    }
    if last & 0x80 != 0 {
        let mask = !(0x80i64 << (8 * (v.len() - 1)));
        Ok(-(r & mask))
    } else {
        Ok(r)
    }
}

/// Encode a script number, minimally.
pub fn num_encode(n: i64) -> Vec<u8> {
    let mut out = Vec::new();
    if n == 0 {
        return out;
    }
    let neg = n < 0;
    let mut abs = n.unsigned_abs();
    while abs > 0 {
        out.push((abs & 0xff) as u8);
        abs >>= 8;
    }
    let last = out.len() - 1;
    if out[last] & 0x80 != 0 {
        out.push(if neg { 0x80 } else { 0 });
    } else if neg {
        out[last] |= 0x80;
    }
    out
}

/// Core's `CastToBool`: any non-zero byte, except a lone sign bit at the end.
pub fn cast_to_bool(v: &[u8]) -> bool {
    for (i, &b) in v.iter().enumerate() {
        if b != 0 {
            return !(i == v.len() - 1 && b == 0x80);
        }
    }
    false
}

/// BIP66 strict DER, with the trailing hash-type byte (Core's `IsValidSignatureEncoding`).
pub fn is_valid_signature_encoding(sig: &[u8]) -> bool {
    let n = sig.len();
    if !(9..=73).contains(&n) || sig[0] != 0x30 || usize::from(sig[1]) != n - 3 {
        return false;
    }
    let len_r = usize::from(sig[3]);
    if 5 + len_r >= n {
        return false;
    }
    let len_s = usize::from(sig[5 + len_r]);
    if len_r + len_s + 7 != n || sig[2] != 0x02 || len_r == 0 || sig[4] & 0x80 != 0 {
        return false;
    }
    if len_r > 1 && sig[4] == 0 && sig[5] & 0x80 == 0 {
        return false;
    }
    if sig[len_r + 4] != 0x02 || len_s == 0 || sig[len_r + 6] & 0x80 != 0 {
        return false;
    }
    !(len_s > 1 && sig[len_r + 6] == 0 && sig[len_r + 7] & 0x80 == 0)
}

fn is_low_s(sig_with_type: &[u8]) -> bool {
    let der = &sig_with_type[..sig_with_type.len().saturating_sub(1)];
    match Signature::from_der_lax(der) {
        Ok(s) => {
            let mut n = s;
            n.normalize_s();
            n == s
        }
        Err(_) => false,
    }
}

fn check_signature_encoding(sig: &[u8], flags: Flags) -> Result<(), ScriptError> {
    if sig.is_empty() {
        return Ok(());
    }
    if (flags.has(Flags::DERSIG) || flags.has(Flags::LOW_S) || flags.has(Flags::STRICTENC))
        && !is_valid_signature_encoding(sig)
    {
        return Err(ScriptError::SigDer);
    }
    if flags.has(Flags::LOW_S) && !is_low_s(sig) {
        return Err(ScriptError::SigHighS);
    }
    if flags.has(Flags::STRICTENC) {
        let t = sig[sig.len() - 1] & !0x80;
        if !(1..=3).contains(&t) {
            return Err(ScriptError::SigHashtype);
        }
    }
    Ok(())
}

fn check_pubkey_encoding(pk: &[u8], flags: Flags) -> Result<(), ScriptError> {
    let ok = match pk.first() {
        Some(0x04) => pk.len() == 65,
        Some(0x02 | 0x03) => pk.len() == 33,
        _ => false,
    };
    if flags.has(Flags::STRICTENC) && !ok {
        return Err(ScriptError::PubkeyType);
    }
    Ok(())
}

/// What the interpreter asks of the transaction it runs in.
pub trait SignatureChecker {
    /// `sig` carries its hash-type byte; `script_code` is after FindAndDelete.
    fn check_ecdsa(&mut self, sig: &[u8], pubkey: &[u8], script_code: &[u8]) -> bool;
    fn check_lock_time(&self, lock_time: i64) -> bool;
    fn check_sequence(&self, sequence: i64) -> bool;
}

/// A checker that fails every signature and lock time (for scripts outside a transaction).
#[derive(Debug, Default)]
pub struct NoChecker;

impl SignatureChecker for NoChecker {
    fn check_ecdsa(&mut self, _: &[u8], _: &[u8], _: &[u8]) -> bool {
        false
    }
    fn check_lock_time(&self, _: i64) -> bool {
        false
    }
    fn check_sequence(&self, _: i64) -> bool {
        false
    }
}

/// Checks signatures of input `n_in` of `tx` with libsecp256k1: lax DER
/// parse and low-S normalisation as Core (old blocks carry high-S and
/// non-DER signatures; the flags decide whether those are refused first).
#[derive(Debug)]
pub struct TxChecker<'a> {
    pub tx: &'a Transaction,
    pub n_in: usize,
    pub secp: &'a Secp256k1<VerifyOnly>,
    /// ECDSA verifications performed.
    pub sig_checks: usize,
}

impl<'a> TxChecker<'a> {
    pub fn new(tx: &'a Transaction, n_in: usize, secp: &'a Secp256k1<VerifyOnly>) -> Self {
        Self {
            tx,
            n_in,
            secp,
            sig_checks: 0,
        }
    }
}

impl TxChecker<'_> {
    /// What `check_ecdsa` hands to libsecp256k1: the signature hash, the
    /// lax-parsed low-S signature and the key; `None` where it fails
    /// before any verification (bad key size or encoding, no hash type,
    /// unparsable signature).
    pub fn ecdsa_inputs(
        &self,
        sig: &[u8],
        pubkey: &[u8],
        script_code: &[u8],
    ) -> Option<(Message, Signature, PublicKey)> {
        let valid_len = match pubkey.first() {
            Some(2 | 3) => 33,
            Some(4 | 6 | 7) => 65,
            _ => 0,
        };
        if valid_len == 0 || pubkey.len() != valid_len {
            return None;
        }
        let (&hash_type, der) = sig.split_last()?;
        let hash = super::legacy_sighash(self.tx, self.n_in, script_code, i32::from(hash_type));
        let pk = PublicKey::from_slice(pubkey).ok()?;
        let mut s = Signature::from_der_lax(der).ok()?;
        s.normalize_s();
        Some((Message::from_digest(hash), s, pk))
    }
}

impl SignatureChecker for TxChecker<'_> {
    fn check_ecdsa(&mut self, sig: &[u8], pubkey: &[u8], script_code: &[u8]) -> bool {
        let Some((msg, s, pk)) = self.ecdsa_inputs(sig, pubkey, script_code) else {
            return false;
        };
        self.sig_checks += 1;
        self.secp.verify_ecdsa(&msg, &s, &pk).is_ok()
    }
    fn check_lock_time(&self, lock_time: i64) -> bool {
        let tx_lock = i64::from(self.tx.lock_time);
        let same_kind = (tx_lock < LOCKTIME_THRESHOLD) == (lock_time < LOCKTIME_THRESHOLD);
        same_kind
            && lock_time <= tx_lock
            && self
                .tx
                .inputs
                .get(self.n_in)
                .is_some_and(|i| i.sequence != SEQUENCE_FINAL)
    }
    fn check_sequence(&self, sequence: i64) -> bool {
        let Some(input) = self.tx.inputs.get(self.n_in) else {
            return false;
        };
        let tx_seq = i64::from(input.sequence);
        if (self.tx.version as u32) < 2 || tx_seq & SEQUENCE_LOCKTIME_DISABLE_FLAG != 0 {
            return false;
        }
        let mask = SEQUENCE_LOCKTIME_TYPE_FLAG | SEQUENCE_LOCKTIME_MASK;
        let (a, b) = (tx_seq & mask, sequence & mask);
        let same_kind = (a < SEQUENCE_LOCKTIME_TYPE_FLAG) == (b < SEQUENCE_LOCKTIME_TYPE_FLAG);
        same_kind && b <= a
    }
}

type Stack = Vec<Vec<u8>>;

fn top(stack: &Stack, i: usize) -> Result<&Vec<u8>, ScriptError> {
    stack
        .len()
        .checked_sub(i)
        .and_then(|k| stack.get(k))
        .ok_or(ScriptError::InvalidStackOperation)
}

fn pop(stack: &mut Stack) -> Result<Vec<u8>, ScriptError> {
    stack.pop().ok_or(ScriptError::InvalidStackOperation)
}

fn need(stack: &Stack, n: usize) -> Result<(), ScriptError> {
    if stack.len() < n {
        Err(ScriptError::InvalidStackOperation)
    } else {
        Ok(())
    }
}

fn bool_vec(b: bool) -> Vec<u8> {
    if b { vec![1] } else { Vec::new() }
}

fn is_disabled(op: u8) -> bool {
    // CAT SUBSTR LEFT RIGHT, INVERT AND OR XOR, 2MUL 2DIV, MUL DIV MOD LSHIFT RSHIFT
    matches!(op, 0x7e..=0x81 | 0x83..=0x86 | 0x8d | 0x8e | 0x95..=0x99)
}

/// Run `script` on `stack` (Core's `EvalScript`, `SigVersion::BASE`).
pub fn eval_script(
    stack: &mut Stack,
    script: &[u8],
    flags: Flags,
    checker: &mut dyn SignatureChecker,
) -> Result<(), ScriptError> {
    use ScriptError::*;
    if script.len() > MAX_SCRIPT_SIZE {
        return Err(ScriptSize);
    }
    let mut pc = 0usize;
    let mut code_begin = 0usize;
    let mut exec: Vec<bool> = Vec::new();
    let mut alt: Stack = Vec::new();
    let mut op_count = 0usize;
    let minimal = flags.has(Flags::MINIMALDATA);
    while pc < script.len() {
        let f_exec = exec.iter().all(|&b| b);
        let op = get_op(script, &mut pc).ok_or(BadOpcode)?;
        let opcode = op.opcode;
        if op.data.len() > MAX_ELEMENT_SIZE {
            return Err(PushSize);
        }
        if opcode > OP_16 {
            op_count += 1;
            if op_count > MAX_OPS {
                return Err(OpCount);
            }
        }
        if is_disabled(opcode) {
            return Err(DisabledOpcode);
        }
        if opcode == OP_CODESEPARATOR && flags.has(Flags::CONST_SCRIPTCODE) {
            return Err(OpCodeSeparator);
        }
        if f_exec && opcode <= OP_PUSHDATA4 {
            if minimal && !check_minimal_push(op.data, opcode) {
                return Err(MinimalData);
            }
            stack.push(op.data.to_vec());
        } else if f_exec || (OP_IF..=OP_ENDIF).contains(&opcode) {
            match opcode {
                OP_1NEGATE | OP_1..=OP_16 => {
                    stack.push(num_encode(i64::from(opcode) - i64::from(OP_1 - 1)));
                }
                OP_NOP => {}
                OP_CHECKLOCKTIMEVERIFY | OP_CHECKSEQUENCEVERIFY => {
                    let cltv = opcode == OP_CHECKLOCKTIMEVERIFY;
                    let enabled = if cltv {
                        flags.has(Flags::CHECKLOCKTIMEVERIFY)
                    } else {
                        flags.has(Flags::CHECKSEQUENCEVERIFY)
                    };
                    // Not enabled: a plain NOP2/NOP3, never discouraged (as Core).
                    if enabled {
                        let n = num_decode(top(stack, 1)?, minimal, 5)?;
                        if n < 0 {
                            return Err(NegativeLocktime);
                        }
                        if cltv {
                            if !checker.check_lock_time(n) {
                                return Err(UnsatisfiedLocktime);
                            }
                        } else if n & SEQUENCE_LOCKTIME_DISABLE_FLAG == 0
                            && !checker.check_sequence(n)
                        {
                            return Err(UnsatisfiedLocktime);
                        }
                    }
                }
                OP_NOP1 | 0xb3..=OP_NOP10 => {
                    if flags.has(Flags::DISCOURAGE_UPGRADABLE_NOPS) {
                        return Err(DiscourageUpgradableNops);
                    }
                }
                OP_IF | OP_NOTIF => {
                    let mut value = false;
                    if f_exec {
                        let v = stack.pop().ok_or(UnbalancedConditional)?;
                        value = cast_to_bool(&v);
                        if opcode == OP_NOTIF {
                            value = !value;
                        }
                    }
                    exec.push(value);
                }
                OP_ELSE => {
                    let t = exec.last_mut().ok_or(UnbalancedConditional)?;
                    *t = !*t;
                }
                OP_ENDIF => {
                    exec.pop().ok_or(UnbalancedConditional)?;
                }
                OP_VERIFY => {
                    if cast_to_bool(top(stack, 1)?) {
                        stack.pop();
                    } else {
                        return Err(Verify);
                    }
                }
                OP_RETURN => return Err(OpReturn),
                0x6b => alt.push(pop(stack)?), // TOALTSTACK
                0x6c => stack.push(alt.pop().ok_or(InvalidAltstackOperation)?), // FROMALTSTACK
                0x6d => {
                    // 2DROP
                    need(stack, 2)?;
                    stack.truncate(stack.len() - 2);
                }
                0x6e => {
                    // 2DUP
                    need(stack, 2)?;
                    let (a, b) = (top(stack, 2)?.clone(), top(stack, 1)?.clone());
                    stack.push(a);
                    stack.push(b);
                }
                0x6f => {
                    // 3DUP
                    need(stack, 3)?;
                    for _ in 0..3 {
                        let v = top(stack, 3)?.clone();
                        stack.push(v);
                    }
                }
                0x70 => {
                    // 2OVER
                    need(stack, 4)?;
                    for _ in 0..2 {
                        let v = top(stack, 4)?.clone();
                        stack.push(v);
                    }
                }
                0x71 => {
                    // 2ROT
                    need(stack, 6)?;
                    let at = stack.len() - 6;
                    let moved: Vec<Vec<u8>> = stack.drain(at..at + 2).collect();
                    stack.extend(moved);
                }
                0x72 => {
                    // 2SWAP
                    need(stack, 4)?;
                    let n = stack.len();
                    stack.swap(n - 4, n - 2);
                    stack.swap(n - 3, n - 1);
                }
                0x73 => {
                    // IFDUP
                    let v = top(stack, 1)?;
                    if cast_to_bool(v) {
                        let v = v.clone();
                        stack.push(v);
                    }
                }
                0x74 => stack.push(num_encode(stack.len() as i64)), // DEPTH
                0x75 => {
                    pop(stack)?; // DROP
                }
                0x76 => {
                    let v = top(stack, 1)?.clone(); // DUP
                    stack.push(v);
                }
                0x77 => {
                    // NIP
                    need(stack, 2)?;
                    let n = stack.len();
                    stack.remove(n - 2);
                }
                0x78 => {
                    let v = top(stack, 2)?.clone(); // OVER
                    stack.push(v);
                }
                0x79 | 0x7a => {
                    // PICK ROLL
                    need(stack, 2)?;
                    let n = num_decode(top(stack, 1)?, minimal, 4)?;
                    stack.pop();
                    if n < 0 || n as usize >= stack.len() {
                        return Err(InvalidStackOperation);
                    }
                    let idx = stack.len() - 1 - n as usize;
                    let v = if opcode == 0x7a {
                        stack.remove(idx)
                    } else {
                        stack[idx].clone()
                    };
                    stack.push(v);
                }
                0x7b => {
                    // ROT
                    need(stack, 3)?;
                    let n = stack.len();
                    stack.swap(n - 3, n - 2);
                    stack.swap(n - 2, n - 1);
                }
                0x7c => {
                    // SWAP
                    need(stack, 2)?;
                    let n = stack.len();
                    stack.swap(n - 2, n - 1);
                }
                0x7d => {
                    // TUCK
                    need(stack, 2)?;
                    let v = top(stack, 1)?.clone();
                    let n = stack.len();
                    stack.insert(n - 2, v);
                }
                0x82 => {
                    let n = top(stack, 1)?.len() as i64; // SIZE
                    stack.push(num_encode(n));
                }
                OP_EQUAL | 0x88 => {
                    need(stack, 2)?;
                    let b = pop(stack)?;
                    let a = pop(stack)?;
                    let eq = a == b;
                    if opcode == 0x88 {
                        if !eq {
                            stack.push(bool_vec(false));
                            return Err(EqualVerify);
                        }
                    } else {
                        stack.push(bool_vec(eq));
                    }
                }
                0x8b | 0x8c | 0x8f | 0x90 | 0x91 | 0x92 => {
                    let a = num_decode(top(stack, 1)?, minimal, 4)?;
                    let r = match opcode {
                        0x8b => a + 1,
                        0x8c => a - 1,
                        0x8f => -a,
                        0x90 => a.abs(),
                        0x91 => i64::from(a == 0),
                        _ => i64::from(a != 0),
                    };
                    stack.pop();
                    stack.push(num_encode(r));
                }
                0x93..=0x94 | 0x9a..=0xa4 => {
                    need(stack, 2)?;
                    let a = num_decode(top(stack, 2)?, minimal, 4)?;
                    let b = num_decode(top(stack, 1)?, minimal, 4)?;
                    let r = match opcode {
                        0x93 => a + b,
                        0x94 => a - b,
                        0x9a => i64::from(a != 0 && b != 0),
                        0x9b => i64::from(a != 0 || b != 0),
                        0x9c | 0x9d => i64::from(a == b),
                        0x9e => i64::from(a != b),
                        0x9f => i64::from(a < b),
                        0xa0 => i64::from(a > b),
                        0xa1 => i64::from(a <= b),
                        0xa2 => i64::from(a >= b),
                        0xa3 => a.min(b),
                        _ => a.max(b),
                    };
                    stack.truncate(stack.len() - 2);
                    stack.push(num_encode(r));
                    if opcode == 0x9d {
                        if cast_to_bool(top(stack, 1)?) {
                            stack.pop();
                        } else {
                            return Err(NumEqualVerify);
                        }
                    }
                }
                0xa5 => {
                    // WITHIN
                    need(stack, 3)?;
                    let x = num_decode(top(stack, 3)?, minimal, 4)?;
                    let lo = num_decode(top(stack, 2)?, minimal, 4)?;
                    let hi = num_decode(top(stack, 1)?, minimal, 4)?;
                    stack.truncate(stack.len() - 3);
                    stack.push(bool_vec(lo <= x && x < hi));
                }
                0xa6..=0xaa => {
                    let v = pop(stack)?;
                    let h: Vec<u8> = match opcode {
                        0xa6 => ripemd::Ripemd160::digest(&v).to_vec(),
                        0xa7 => sha1::Sha1::digest(&v).to_vec(),
                        0xa8 => Sha256::digest(&v).to_vec(),
                        0xa9 => ripemd::Ripemd160::digest(Sha256::digest(&v)).to_vec(),
                        _ => crate::sha256d(&v).to_vec(),
                    };
                    stack.push(h);
                }
                OP_CODESEPARATOR => code_begin = pc,
                OP_CHECKSIG | OP_CHECKSIGVERIFY => {
                    need(stack, 2)?;
                    let sig = top(stack, 2)?.clone();
                    let pk = top(stack, 1)?.clone();
                    let mut code = script[code_begin..].to_vec();
                    let mut pat = Vec::with_capacity(sig.len() + 5);
                    push_data(&mut pat, &sig);
                    if find_and_delete(&mut code, &pat) > 0 && flags.has(Flags::CONST_SCRIPTCODE) {
                        return Err(SigFindAndDelete);
                    }
                    check_signature_encoding(&sig, flags)?;
                    check_pubkey_encoding(&pk, flags)?;
                    let ok = !sig.is_empty() && checker.check_ecdsa(&sig, &pk, &code);
                    if !ok && flags.has(Flags::NULLFAIL) && !sig.is_empty() {
                        return Err(NullFail);
                    }
                    stack.truncate(stack.len() - 2);
                    if opcode == OP_CHECKSIGVERIFY {
                        if !ok {
                            return Err(CheckSigVerify);
                        }
                    } else {
                        stack.push(bool_vec(ok));
                    }
                }
                OP_CHECKMULTISIG | OP_CHECKMULTISIGVERIFY => {
                    let mut i = 1usize;
                    need(stack, i)?;
                    let mut n_keys = num_decode(top(stack, i)?, minimal, 4)?;
                    if !(0..=MAX_PUBKEYS_PER_MULTISIG).contains(&n_keys) {
                        return Err(PubkeyCount);
                    }
                    op_count += n_keys as usize;
                    if op_count > MAX_OPS {
                        return Err(OpCount);
                    }
                    i += 1;
                    let mut ikey = i;
                    // how many key slots remain to clean up under NULLFAIL
                    let mut ikey2 = n_keys as usize + 2;
                    i += n_keys as usize;
                    need(stack, i)?;
                    let mut n_sigs = num_decode(top(stack, i)?, minimal, 4)?;
                    if n_sigs < 0 || n_sigs > n_keys {
                        return Err(SigCount);
                    }
                    i += 1;
                    let mut isig = i;
                    i += n_sigs as usize;
                    need(stack, i)?;
                    let mut code = script[code_begin..].to_vec();
                    for k in 0..n_sigs as usize {
                        let mut pat = Vec::new();
                        push_data(&mut pat, top(stack, isig + k)?);
                        if find_and_delete(&mut code, &pat) > 0
                            && flags.has(Flags::CONST_SCRIPTCODE)
                        {
                            return Err(SigFindAndDelete);
                        }
                    }
                    let mut success = true;
                    while success && n_sigs > 0 {
                        let sig = top(stack, isig)?;
                        let pk = top(stack, ikey)?;
                        check_signature_encoding(sig, flags)?;
                        check_pubkey_encoding(pk, flags)?;
                        if !sig.is_empty() && checker.check_ecdsa(sig, pk, &code) {
                            isig += 1;
                            n_sigs -= 1;
                        }
                        ikey += 1;
                        n_keys -= 1;
                        if n_sigs > n_keys {
                            success = false;
                        }
                    }
                    while i > 1 {
                        i -= 1;
                        if !success
                            && flags.has(Flags::NULLFAIL)
                            && ikey2 == 0
                            && !top(stack, 1)?.is_empty()
                        {
                            return Err(NullFail);
                        }
                        ikey2 = ikey2.saturating_sub(1);
                        stack.pop();
                    }
                    let dummy = top(stack, 1)?;
                    if flags.has(Flags::NULLDUMMY) && !dummy.is_empty() {
                        return Err(SigNullDummy);
                    }
                    stack.pop();
                    if opcode == OP_CHECKMULTISIGVERIFY {
                        if !success {
                            return Err(CheckMultisigVerify);
                        }
                    } else {
                        stack.push(bool_vec(success));
                    }
                }
                _ => return Err(BadOpcode),
            }
        }
        if stack.len() + alt.len() > MAX_STACK_SIZE {
            return Err(StackSize);
        }
    }
    if !exec.is_empty() {
        return Err(UnbalancedConditional);
    }
    Ok(())
}

/// Verify a spend: scriptSig then scriptPubKey on one stack, then the P2SH
/// redeem script when P2SH is on (Core's `VerifyScript` without witness).
pub fn verify_script(
    script_sig: &[u8],
    script_pubkey: &[u8],
    flags: Flags,
    checker: &mut dyn SignatureChecker,
) -> Result<(), ScriptError> {
    if flags.has(Flags::SIGPUSHONLY) && !is_push_only(script_sig) {
        return Err(ScriptError::SigPushOnly);
    }
    let mut stack = Vec::new();
    eval_script(&mut stack, script_sig, flags, checker)?;
    let copy = if flags.has(Flags::P2SH) {
        stack.clone()
    } else {
        Vec::new()
    };
    eval_script(&mut stack, script_pubkey, flags, checker)?;
    if !stack.last().is_some_and(|v| cast_to_bool(v)) {
        return Err(ScriptError::EvalFalse);
    }
    if flags.has(Flags::P2SH) && is_p2sh(script_pubkey) {
        if !is_push_only(script_sig) {
            return Err(ScriptError::SigPushOnly);
        }
        stack = copy;
        let redeem = stack.pop().ok_or(ScriptError::EvalFalse)?;
        eval_script(&mut stack, &redeem, flags, checker)?;
        if !stack.last().is_some_and(|v| cast_to_bool(v)) {
            return Err(ScriptError::EvalFalse);
        }
    }
    if flags.has(Flags::CLEANSTACK) && stack.len() != 1 {
        return Err(ScriptError::CleanStack);
    }
    Ok(())
}
