//! The Electrum protocol's framing: JSON-RPC 2.0 objects, one per line (`\n`), over TCP.
//!
//! [`LineBuffer`] cuts a byte stream into lines of at most [`MAX_LINE`] bytes; [`parse_line`]
//! reads one line as a request or a batch (at most [`MAX_BATCH`] requests); [`response`],
//! [`error_response`] and [`notification`] write lines. Malformed input is a typed
//! [`RpcError`] (with JSON-RPC's codes) the server sends back; nothing here panics.
use serde_json::{Value, json};

/// The longest line accepted (a request carrying a 100 kB transaction in hex fits).
pub const MAX_LINE: usize = 1 << 20;
/// The most requests in one batch.
pub const MAX_BATCH: usize = 100;

/// JSON-RPC 2.0 error codes, and Electrum's own.
pub mod code {
    pub const PARSE: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// Electrum's "bad request" (a well-formed call the server cannot answer).
    pub const BAD_REQUEST: i64 = 1;
    /// Electrum's "daemon error": the node refused (e.g. a broadcast).
    pub const DAEMON_ERROR: i64 = 2;
}

/// An error to send back: JSON-RPC code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn params(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_PARAMS, message)
    }
}

/// Framing errors: the connection is closed after reporting them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
}

/// Accumulates bytes and yields complete lines (without the `\n`, a trailing `\r` dropped).
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    pub fn new() -> Self {
        Self::default()
    }
    /// Append received bytes. A partial line already over [`MAX_LINE`] is an error.
    pub fn push(&mut self, data: &[u8]) -> Result<(), LineError> {
        self.buf.extend_from_slice(data);
        let pending = self
            .buf
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(self.buf.len());
        if pending > MAX_LINE {
            self.buf.clear();
            return Err(LineError::TooLong);
        }
        Ok(())
    }
    /// The next complete line, if any.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
            if self.buf.len() > MAX_LINE {
                self.buf.clear();
                return Err(LineError::TooLong);
            }
            return Ok(None);
        };
        if end > MAX_LINE {
            self.buf.clear();
            return Err(LineError::TooLong);
        }
        let mut line: Vec<u8> = self.buf.drain(..=end).collect();
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        Ok(Some(line))
    }
    /// Bytes held (a partial line).
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// One call: `id` absent means a notification from the client (answered by nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub method: String,
    pub params: Vec<Value>,
}

/// A parsed line: one request, or a batch whose members each parsed or failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Single(Request),
    Batch(Vec<Result<Request, (Value, RpcError)>>),
}

/// Read one request object. On failure, the id to answer with (null if unknown) and the error.
pub fn parse_request(v: &Value) -> Result<Request, (Value, RpcError)> {
    let Value::Object(o) = v else {
        return Err((
            Value::Null,
            RpcError::new(code::INVALID_REQUEST, "request must be an object"),
        ));
    };
    let id = o.get("id").cloned();
    let reply_id = id.clone().unwrap_or(Value::Null);
    if let Some(i) = &id {
        if !(i.is_null() || i.is_number() || i.is_string()) {
            return Err((
                Value::Null,
                RpcError::new(code::INVALID_REQUEST, "id must be a number, string or null"),
            ));
        }
    }
    let method = match o.get("method") {
        Some(Value::String(m)) => m.clone(),
        _ => {
            return Err((
                reply_id,
                RpcError::new(code::INVALID_REQUEST, "method must be a string"),
            ));
        }
    };
    let params = match o.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            return Err((
                reply_id,
                RpcError::params("params must be an array (named parameters are not supported)"),
            ));
        }
    };
    Ok(Request { id, method, params })
}

/// Parse one line. A parse failure or an empty/oversized batch is an error to answer with id null.
pub fn parse_line(line: &[u8]) -> Result<Incoming, RpcError> {
    if line.len() > MAX_LINE {
        return Err(RpcError::new(code::INVALID_REQUEST, "request too long"));
    }
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| RpcError::new(code::PARSE, format!("invalid JSON: {e}")))?;
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(RpcError::new(code::INVALID_REQUEST, "empty batch"));
            }
            if items.len() > MAX_BATCH {
                return Err(RpcError::new(
                    code::INVALID_REQUEST,
                    format!("batch of {} requests: at most {MAX_BATCH}", items.len()),
                ));
            }
            Ok(Incoming::Batch(items.iter().map(parse_request).collect()))
        }
        other => parse_request(&other)
            .map(Incoming::Single)
            .map_err(|(_, e)| e),
    }
}

/// A success response object.
pub fn response(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// An error response object.
pub fn error_response(id: &Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
}

/// A server notification object (a subscription's news).
pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

/// One object or batch as a line, `\n` included.
pub fn to_line(v: &Value) -> Vec<u8> {
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_reads_and_crlf_trimmed() {
        let mut b = LineBuffer::new();
        b.push(b"{\"a\":1}\r\n{\"b\"").expect("push");
        assert_eq!(b.next_line().expect("ok"), Some(b"{\"a\":1}".to_vec()));
        assert_eq!(b.next_line().expect("ok"), None);
        b.push(b":2}\n").expect("push");
        assert_eq!(b.next_line().expect("ok"), Some(b"{\"b\":2}".to_vec()));
    }

    #[test]
    fn an_endless_line_is_refused_not_buffered() {
        let mut b = LineBuffer::new();
        let chunk = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..(MAX_LINE / chunk.len() + 2) {
            if b.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(b.len() <= MAX_LINE);
    }

    #[test]
    fn requests_batches_and_malformed_input_get_typed_errors() {
        let r = parse_line(br#"{"jsonrpc":"2.0","id":7,"method":"server.ping","params":[]}"#)
            .expect("parses");
        assert_eq!(
            r,
            Incoming::Single(Request {
                id: Some(json!(7)),
                method: "server.ping".into(),
                params: vec![]
            })
        );
        assert_eq!(
            parse_line(b"{not json").map_err(|e| e.code),
            Err(code::PARSE)
        );
        assert_eq!(
            parse_line(b"[]").map_err(|e| e.code),
            Err(code::INVALID_REQUEST)
        );
        assert_eq!(
            parse_line(br#"{"id":1,"method":5}"#).map_err(|e| e.code),
            Err(code::INVALID_REQUEST)
        );
        let Incoming::Batch(b) =
            parse_line(br#"[{"id":1,"method":"a"},3,{"id":2,"method":"b","params":{"x":1}}]"#)
                .expect("batch")
        else {
            panic!("not a batch");
        };
        assert!(b[0].is_ok());
        assert_eq!(
            b[1].as_ref().map_err(|e| e.1.code),
            Err(code::INVALID_REQUEST)
        );
        assert_eq!(
            b[2].as_ref().map_err(|e| (e.0.clone(), e.1.code)),
            Err((json!(2), code::INVALID_PARAMS))
        );
        let big = format!(
            "[{}]",
            vec!["{\"id\":1,\"method\":\"a\"}"; MAX_BATCH + 1].join(",")
        );
        assert!(parse_line(big.as_bytes()).is_err());
    }
}
