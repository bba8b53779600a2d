//! JSON-RPC 2.0 framing, on raw JSON: ids, params and results are kept as the bytes received
//! (`RawValue`), so that what is forwarded is what was sent, never a re-serialisation that drops
//! members a typed model does not know.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Parse error.
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// No such method (or not mediated by the gateway).
pub const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid params; also an unknown, hidden or quarantined tool (the MCP specification's choice).
pub const INVALID_PARAMS: i64 = -32602;
/// A fault inside the gateway or its upstream.
pub const INTERNAL_ERROR: i64 = -32603;
/// An HTTP header disagrees with the body (MCP 2026-07-28).
pub const HEADER_MISMATCH: i64 = -32020;
/// A protocol version the gateway does not speak (MCP 2026-07-28).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// One message, as received.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// Must be `"2.0"`.
    pub jsonrpc: Option<String>,
    /// Present on requests and responses; absent on notifications.
    #[serde(default, deserialize_with = "raw_id")]
    pub id: Option<Box<RawValue>>,
    /// Present on requests and notifications.
    pub method: Option<String>,
    /// The request's params.
    pub params: Option<Box<RawValue>>,
    /// A response's result.
    pub result: Option<Box<RawValue>>,
    /// A response's error.
    pub error: Option<Box<RawValue>>,
}

fn raw_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    // `"id": null` is kept as a (refused) id, distinct from no id at all.
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Why a body is not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// `-32700` or `-32600`.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

/// How deeply `bytes` nest arrays and objects (strings skipped), stopping past `limit`.
pub fn depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Reads one message from an agent.
pub fn parse(bytes: &[u8], max_depth: usize) -> Result<Message, FrameError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(FrameError {
            code: INVALID_REQUEST,
            message: "batches are not accepted: send one JSON-RPC message per request".into(),
        });
    }
    if depth_exceeds(bytes, max_depth) {
        return Err(FrameError { code: INVALID_REQUEST, message: format!("JSON nested deeper than {max_depth}") });
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| FrameError { code: PARSE_ERROR, message: "the body is not UTF-8".into() })?;
    // Not JSON at all is a parse error; JSON that is not a message is an invalid request.
    let value: &RawValue = serde_json::from_str(text)
        .map_err(|e| FrameError { code: PARSE_ERROR, message: format!("the body is not JSON: {e}") })?;
    let m: Message = serde_json::from_str(value.get())
        .map_err(|e| FrameError { code: INVALID_REQUEST, message: format!("not a JSON-RPC message: {e}") })?;
    if m.jsonrpc.as_deref() != Some("2.0") {
        return Err(FrameError { code: INVALID_REQUEST, message: "`jsonrpc` must be \"2.0\"".into() });
    }
    if let Some(id) = &m.id {
        let ok = serde_json::from_str::<serde_json::Value>(id.get())
            .is_ok_and(|v| v.is_string() || v.as_i64().is_some() || v.as_u64().is_some());
        if !ok {
            return Err(FrameError { code: INVALID_REQUEST, message: "`id` must be a string or an integer".into() });
        }
    }
    if m.method.is_none() && m.result.is_none() && m.error.is_none() {
        return Err(FrameError { code: INVALID_REQUEST, message: "neither a request nor a response".into() });
    }
    if let Some(p) = &m.params {
        if !p.get().starts_with(['{']) {
            return Err(FrameError { code: INVALID_REQUEST, message: "`params` must be an object".into() });
        }
    }
    Ok(m)
}

/// A JSON string literal of `s`.
pub fn string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` with the raw id and result.
pub fn result(id: Option<&RawValue>, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.map_or("null", RawValue::get))
}

/// `{"jsonrpc":"2.0","id":ID,"error":{"code","message","data"}}`.
pub fn error(id: Option<&RawValue>, code: i64, message: &str, data: Option<serde_json::Value>) -> String {
    let mut e = serde_json::json!({"code": code, "message": message});
    if let (Some(data), Some(map)) = (data, e.as_object_mut()) {
        map.insert("data".into(), data);
    }
    format!(r#"{{"jsonrpc":"2.0","id":{},"error":{e}}}"#, id.map_or("null", RawValue::get))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_refused_with_the_right_code() {
        let code = |b: &[u8]| parse(b, 8).err().map(|e| e.code);
        assert_eq!(code(b"{not json"), Some(PARSE_ERROR));
        assert_eq!(code(b"\xff\xfe"), Some(PARSE_ERROR));
        assert_eq!(code(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1}"#), Some(INVALID_REQUEST));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#), Some(INVALID_REQUEST));
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[[[[[[[[[1]]]]]]]]]}}"#),
            Some(INVALID_REQUEST)
        );
        // Brackets inside strings do not count as nesting.
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"[[[[[[[[[[[[\"[["}}"#), None);
        let m = parse(br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo"}}"#, 8).unwrap();
        assert_eq!(m.id.unwrap().get(), r#""a-1""#);
        assert_eq!(m.params.unwrap().get(), r#"{"name":"echo"}"#);
    }
}
