//! Strict bencode (BEP 3): a borrowing decoder with bounded depth and size, and an encoder.
//!
//! The decoder never allocates for a string (values borrow from the input), bounds the
//! nesting depth and the total number of values, and rejects everything that is not canonical
//! bencode: integers with leading zeros or `-0`, string lengths with leading zeros, duplicate
//! dictionary keys and trailing bytes. Dictionary keys out of order are rejected under
//! [`Limits::strict`] (the default); [`Limits::lenient_order`] accepts them but still records
//! the fact ([`Dict::is_sorted`]) so callers can demand canonical form where it matters (the
//! info dictionary, whose exact bytes are the info-hash).
//!
//! BitTorrent (metainfo, trackers, the extension protocol of BEP 10) and the Kademlia DHT
//! (BEP 5 KRPC, BEP 44 items) both use this crate.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Why bytes are not (acceptable) bencode. Positions are byte offsets into the input.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencode: input ends inside a value at byte {0}")]
    Eof(usize),
    /// A byte that cannot start or continue a value here.
    #[error("bencode: unexpected byte {byte:#04x} at {pos}")]
    Unexpected {
        /// Offset.
        pos: usize,
        /// The byte.
        byte: u8,
    },
    /// An integer that is empty, has leading zeros, is `-0` or overflows 64 bits.
    #[error("bencode: invalid integer at byte {0}")]
    BadInt(usize),
    /// A string length that is empty, has leading zeros, or is longer than the input.
    #[error("bencode: invalid string length at byte {0}")]
    BadLen(usize),
    /// A dictionary key smaller than the one before it.
    #[error("bencode: dictionary key out of order at byte {0}")]
    Unsorted(usize),
    /// A dictionary key equal to another one in the same dictionary.
    #[error("bencode: duplicate dictionary key at byte {0}")]
    Duplicate(usize),
    /// Lists and dictionaries nested deeper than the limit.
    #[error("bencode: nested deeper than {0}")]
    TooDeep(usize),
    /// More values than the limit.
    #[error("bencode: more than {0} values")]
    TooMany(usize),
    /// Bytes after the top-level value.
    #[error("bencode: {0} bytes after the value")]
    Trailing(usize),
}

/// Bounds on what the decoder accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting of lists and dictionaries.
    pub max_depth: usize,
    /// Maximum number of values (every integer, string, list and dictionary counts one).
    pub max_values: usize,
    /// Reject dictionaries whose keys are not in ascending byte order.
    pub require_sorted: bool,
}

impl Limits {
    /// Canonical bencode only; depth 32, 1 Mi values.
    pub const fn strict() -> Limits {
        Limits {
            max_depth: 32,
            max_values: 1 << 20,
            require_sorted: true,
        }
    }

    /// Like [`Limits::strict`] but dictionary keys may come in any order (still unique).
    pub const fn lenient_order() -> Limits {
        Limits {
            require_sorted: false,
            ..Limits::strict()
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::strict()
    }
}

/// A decoded value borrowing its strings from the input.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i…e`.
    Int(i64),
    /// `len:bytes`.
    Bytes(&'a [u8]),
    /// `l…e`.
    List(Vec<Value<'a>>),
    /// `d…e`.
    Dict(Dict<'a>),
}

/// A decoded dictionary: its entries in input order and its exact bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: &'a [u8],
    sorted: bool,
}

impl<'a> Dict<'a> {
    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        if self.sorted {
            self.entries
                .binary_search_by(|(k, _)| (*k).cmp(key))
                .ok()
                .and_then(|i| self.entries.get(i))
                .map(|(_, v)| v)
        } else {
            self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
        }
    }

    /// The integer under `key`, if there is one.
    pub fn int(&self, key: &[u8]) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }

    /// The string under `key`, if there is one.
    pub fn bytes(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.get(key).and_then(Value::as_bytes)
    }

    /// The UTF-8 string under `key`, if there is one and it is valid UTF-8.
    pub fn str(&self, key: &[u8]) -> Option<&'a str> {
        self.bytes(key).and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list under `key`.
    pub fn list(&self, key: &[u8]) -> Option<&[Value<'a>]> {
        self.get(key).and_then(Value::as_list)
    }

    /// The dictionary under `key`.
    pub fn dict(&self, key: &[u8]) -> Option<&Dict<'a>> {
        self.get(key).and_then(Value::as_dict)
    }

    /// Entries in input order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The exact bytes this dictionary was decoded from (`d` to `e` inclusive).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether the keys of this dictionary (not nested ones) came in ascending order.
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The UTF-8 string, if this is a valid one.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Whether this value and everything inside it is canonical (every dictionary sorted).
    pub fn is_canonical(&self) -> bool {
        match self {
            Value::Int(_) | Value::Bytes(_) => true,
            Value::List(l) => l.iter().all(Value::is_canonical),
            Value::Dict(d) => d.sorted && d.entries.iter().all(|(_, v)| v.is_canonical()),
        }
    }

    /// An owned copy.
    pub fn to_owned_value(&self) -> OwnedValue {
        match self {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Value::to_owned_value).collect()),
            Value::Dict(d) => OwnedValue::Dict(
                d.entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }

    /// Appends the bencoding of this value, in input order (so a canonical value gives back
    /// its input bytes).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => put_int(out, *i),
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in &d.entries {
                    put_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }
}

struct Escaped<'b>(&'b [u8]);

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => write!(
                f,
                "<{} bytes {}>",
                self.0.len(),
                hex::encode(&self.0[..self.0.len().min(20)])
            ),
        }
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => Escaped(b).fmt(f),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (Escaped(k), v)))
            .finish()
    }
}

/// Decodes exactly one value filling all of `input`.
pub fn decode<'a>(input: &'a [u8], limits: &Limits) -> Result<Value<'a>, BencodeError> {
    let (v, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(BencodeError::Trailing(input.len() - used));
    }
    Ok(v)
}

/// Decodes one value at the start of `input`; returns it and how many bytes it took (BEP 9
/// metadata messages carry raw data after their dictionary).
pub fn decode_prefix<'a>(
    input: &'a [u8],
    limits: &Limits,
) -> Result<(Value<'a>, usize), BencodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        values: 0,
        limits,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a, 'l> {
    input: &'a [u8],
    pos: usize,
    values: usize,
    limits: &'l Limits,
}

impl<'a> Decoder<'a, '_> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::Eof(self.pos))
    }

    fn count(&mut self) -> Result<(), BencodeError> {
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(BencodeError::TooMany(self.limits.max_values));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.count()?;
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                if depth >= self.limits.max_depth {
                    return Err(BencodeError::TooDeep(self.limits.max_depth));
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= self.limits.max_depth {
                    return Err(BencodeError::TooDeep(self.limits.max_depth));
                }
                let start = self.pos;
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                let mut sorted = true;
                while self.peek()? != b'e' {
                    let key_pos = self.pos;
                    let b = self.peek()?;
                    if !b.is_ascii_digit() {
                        return Err(BencodeError::Unexpected {
                            pos: key_pos,
                            byte: b,
                        });
                    }
                    self.count()?;
                    let key = self.bytes()?;
                    if let Some((last, _)) = entries.last() {
                        match (*last).cmp(key) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return Err(BencodeError::Duplicate(key_pos));
                            }
                            std::cmp::Ordering::Greater => {
                                if self.limits.require_sorted {
                                    return Err(BencodeError::Unsorted(key_pos));
                                }
                                sorted = false;
                            }
                        }
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((key, v));
                }
                self.pos += 1;
                if !sorted {
                    let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| *k).collect();
                    keys.sort_unstable();
                    if keys.windows(2).any(|w| w.first() == w.get(1)) {
                        return Err(BencodeError::Duplicate(start));
                    }
                }
                let raw = self.input.get(start..self.pos).unwrap_or_default();
                Ok(Value::Dict(Dict {
                    entries,
                    raw,
                    sorted,
                }))
            }
            byte => Err(BencodeError::Unexpected {
                pos: self.pos,
                byte,
            }),
        }
    }

    /// `i<digits>e` at `pos`.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let end = rest
            .iter()
            .position(|&b| b == b'e')
            .ok_or(BencodeError::Eof(self.input.len()))?;
        let digits = rest.get(..end).unwrap_or_default();
        let v = parse_canonical_int(digits).ok_or(BencodeError::BadInt(start))?;
        self.pos += end + 1;
        Ok(v)
    }

    /// `<len>:<bytes>` at `pos`.
    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let colon = rest
            .iter()
            .take(21)
            .position(|&b| b == b':')
            .ok_or(if rest.len() < 21 {
                BencodeError::Eof(self.input.len())
            } else {
                BencodeError::BadLen(start)
            })?;
        let digits = rest.get(..colon).unwrap_or_default();
        if digits.is_empty()
            || !digits.iter().all(u8::is_ascii_digit)
            || (digits.len() > 1 && digits.first() == Some(&b'0'))
        {
            return Err(BencodeError::BadLen(start));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(BencodeError::BadLen(start))?;
        let body_start = self.pos + colon + 1;
        let body_end = body_start
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(BencodeError::Eof(self.input.len()))?;
        self.pos = body_end;
        Ok(self.input.get(body_start..body_end).unwrap_or_default())
    }
}

fn parse_canonical_int(digits: &[u8]) -> Option<i64> {
    let (neg, mag) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if mag.is_empty() || !mag.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if mag.len() > 1 && mag.first() == Some(&b'0') {
        return None;
    }
    if neg && mag == b"0" {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// An owned value for building messages; dictionaries are kept sorted, so encoding is always
/// canonical.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dictionary (sorted by key).
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string from anything byte-like.
    pub fn bytes(b: impl AsRef<[u8]>) -> OwnedValue {
        OwnedValue::Bytes(b.as_ref().to_vec())
    }

    /// An empty dictionary.
    pub fn dict() -> OwnedValue {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Sets `key` in a dictionary (no effect on other kinds); returns `self` for chaining.
    pub fn with(mut self, key: impl AsRef<[u8]>, v: OwnedValue) -> OwnedValue {
        if let OwnedValue::Dict(d) = &mut self {
            d.insert(key.as_ref().to_vec(), v);
        }
        self
    }

    /// Appends the canonical bencoding.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => put_int(out, *i),
            OwnedValue::Bytes(b) => put_bytes(out, b),
            OwnedValue::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    put_bytes(out, k);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The canonical bencoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strict(b: &[u8]) -> Result<Value<'_>, BencodeError> {
        decode(b, &Limits::strict())
    }

    #[test]
    fn golden_values_decode() {
        assert_eq!(strict(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(strict(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(strict(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(strict(b"4:spam"), Ok(Value::Bytes(b"spam")));
        assert_eq!(strict(b"0:"), Ok(Value::Bytes(b"")));
        assert_eq!(
            strict(b"l4:spami42ee"),
            Ok(Value::List(vec![Value::Bytes(b"spam"), Value::Int(42)]))
        );
        let v = strict(b"d3:bar4:spam3:fooi42ee").unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.bytes(b"bar"), Some(&b"spam"[..]));
        assert_eq!(d.int(b"foo"), Some(42));
        assert_eq!(d.raw(), b"d3:bar4:spam3:fooi42ee");
        assert_eq!(strict(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(strict(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
    }

    #[test]
    fn non_canonical_integers_are_rejected() {
        for bad in [
            &b"i-0e"[..],
            b"i03e",
            b"ie",
            b"i-e",
            b"i+3e",
            b"i 3e",
            b"i9223372036854775808e",
            b"i1.5e",
        ] {
            assert!(
                matches!(strict(bad), Err(BencodeError::BadInt(0))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_canonical_lengths_are_rejected() {
        assert_eq!(strict(b"03:abc"), Err(BencodeError::BadLen(0)));
        assert_eq!(strict(b"5:abc"), Err(BencodeError::Eof(5)));
        assert_eq!(
            strict(b"99999999999999999999999:x"),
            Err(BencodeError::BadLen(0))
        );
        assert!(strict(b"18446744073709551615:x").is_err());
    }

    #[test]
    fn dictionary_key_order_and_duplicates_are_enforced() {
        assert_eq!(strict(b"d1:bi1e1:ai2ee"), Err(BencodeError::Unsorted(7)));
        assert_eq!(strict(b"d1:ai1e1:ai2ee"), Err(BencodeError::Duplicate(7)));
        let v = decode(b"d1:bi1e1:ai2ee", &Limits::lenient_order()).unwrap();
        assert!(!v.is_canonical());
        assert_eq!(v.as_dict().unwrap().int(b"a"), Some(2));
        assert_eq!(
            decode(b"d1:bi1e1:ai2e1:bi3ee", &Limits::lenient_order()),
            Err(BencodeError::Duplicate(0))
        );
        assert!(matches!(
            strict(b"di1ei2ee"),
            Err(BencodeError::Unexpected { pos: 1, .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected_but_prefix_decoding_reports_them() {
        assert_eq!(strict(b"i1ei2e"), Err(BencodeError::Trailing(3)));
        let (v, used) = decode_prefix(b"d1:ai1eeRAW", &Limits::strict()).unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.as_dict().unwrap().int(b"a"), Some(1));
    }

    #[test]
    fn depth_and_count_limits_hold() {
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert_eq!(strict(&deep), Err(BencodeError::TooDeep(32)));
        let limits = Limits {
            max_values: 10,
            ..Limits::strict()
        };
        let many = [b"l".to_vec(), b"i1e".repeat(20), b"e".to_vec()].concat();
        assert_eq!(decode(&many, &limits), Err(BencodeError::TooMany(10)));
    }

    #[test]
    fn owned_values_encode_canonically() {
        let v = OwnedValue::dict()
            .with("zeta", OwnedValue::Int(-1))
            .with("alpha", OwnedValue::List(vec![OwnedValue::bytes("x")]));
        assert_eq!(v.encode(), b"d5:alphal1:xe4:zetai-1ee");
    }

    fn arb_owned() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..6),
                    inner,
                    0..6
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&data, &Limits::strict());
            let _ = decode(&data, &Limits::lenient_order());
        }

        #[test]
        fn bencode_like_bytes_never_panic(data in proptest::collection::vec(
            prop_oneof![Just(b'i'), Just(b'e'), Just(b'l'), Just(b'd'), Just(b':'), Just(b'-'), Just(b'0'), Just(b'1'), Just(b'3'), Just(b'9')], 0..64)) {
            if let Ok(v) = decode(&data, &Limits::strict()) {
                let mut out = Vec::new();
                v.encode_into(&mut out);
                prop_assert_eq!(out, data);
            }
        }

        #[test]
        fn encode_decode_round_trips(v in arb_owned()) {
            let bytes = v.encode();
            let back = decode(&bytes, &Limits::strict()).unwrap();
            prop_assert!(back.is_canonical());
            prop_assert_eq!(back.to_owned_value(), v);
            let mut again = Vec::new();
            back.encode_into(&mut again);
            prop_assert_eq!(again, bytes);
        }
    }
}
