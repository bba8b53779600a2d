//! Strict JSON for JOSE headers and claim sets: one object, bounded nesting, no duplicate names.
//!
//! RFC 7515 section 4 and RFC 7519 section 4 let a parser either reject duplicate member names or keep
//! the lexically last one. `serde_json` silently keeps the last, so two parsers in a chain (a gateway
//! in another language, ours) could read different claims from the same bytes. We reject instead.
//!
//! How: a [`DeserializeSeed`] that builds a [`serde_json::Value`] itself, with a visitor that refuses
//! a member name it has already seen in the same object (names are compared after unescaping, so
//! `"exp"` and `"\u0065xp"` collide) and counts nesting as it goes.
//!
//! Options rejected: parsing twice (once into `Value`, once with a counting visitor) costs double;
//! `serde_json`'s `RawValue` needs a feature we do not enable and still needs a second pass; a
//! hand-written JSON parser is more code to trust than a visitor over `serde_json`'s tokenizer.
//!
//! Depth is checked twice. First a byte scan counts brackets outside strings before any parsing or
//! allocation, so a token made of ten thousand `[` costs one pass and no recursion. For valid JSON
//! the scan is exact; for invalid JSON the parser fails anyway. The visitor counts again, so the
//! limit holds even if the scan were wrong. Both are far below `serde_json`'s own limit of 128.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;

/// Why a byte string is not an acceptable JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrictJsonError {
    /// Objects and arrays nest deeper than allowed.
    TooDeep,
    /// An object repeats this member name.
    Duplicate(String),
    /// Valid JSON, but not an object.
    NotAnObject,
    /// Not JSON; the parser's message.
    Syntax(String),
}

/// Parses `bytes` as one JSON object whose containers nest at most `max_depth` deep (the outer
/// object counts as 1) and whose objects never repeat a member name.
pub(crate) fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, StrictJsonError> {
    if scan_depth_exceeds(bytes, max_depth) {
        return Err(StrictJsonError::TooDeep);
    }
    let fault = Cell::new(None);
    let seed = Strict { depth: 0, max_depth, fault: &fault };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = seed.deserialize(&mut deserializer).and_then(|value| {
        // Trailing bytes after the value (a second object, garbage) are a syntax error.
        deserializer.end().map(|()| value)
    });
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(StrictJsonError::NotAnObject),
        // A fault recorded by the visitor is the real reason; the serde error only carried it out.
        Err(error) => Err(fault.take().unwrap_or_else(|| StrictJsonError::Syntax(error.to_string()))),
    }
}

/// Returns true when brackets outside strings nest deeper than `max_depth`.
fn scan_depth_exceeds(bytes: &[u8], max_depth: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max_depth {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Builds a [`Value`] while refusing duplicate names and excess depth.
#[derive(Clone, Copy)]
struct Strict<'f> {
    /// How many containers enclose the value being read.
    depth: usize,
    max_depth: usize,
    fault: &'f Cell<Option<StrictJsonError>>,
}

impl Strict<'_> {
    /// The seed for a value inside the container being read, or a fault if that container is
    /// already too deep.
    fn enter<E: serde::de::Error>(self) -> Result<Self, E> {
        let depth = self.depth + 1;
        if depth > self.max_depth {
            self.fault.set(Some(StrictJsonError::TooDeep));
            return Err(E::custom("nesting too deep"));
        }
        Ok(Self { depth, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity, so this only fails on a parser bug.
        serde_json::Number::from_f64(value).map(Value::Number).ok_or_else(|| E::custom("number is not finite"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.enter()?;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.fault.set(Some(StrictJsonError::Duplicate(name)));
                return Err(A::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(inner)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, StrictJsonError>) {
        let got = parse_object(input.as_bytes(), 4).map(|map| Value::Object(map).to_string());
        assert_eq!(got.as_deref().map_err(Clone::clone), expected, "{input}");
    }

    fn nested(depth: usize) -> String {
        format!(r#"{{"a":{}1{}}}"#, "[".repeat(depth - 1), "]".repeat(depth - 1))
    }

    #[test]
    fn accepts_plain_objects() {
        check(
            r#"{"a":1,"b":[true,null,"x",-2,1.5],"c":{"d":"e"}}"#,
            Ok(r#"{"a":1,"b":[true,null,"x",-2,1.5],"c":{"d":"e"}}"#),
        );
        check(" {} ", Ok("{}"));
        check(r#"{"a":"]]]]]]}}}}}"}"#, Ok(r#"{"a":"]]]]]]}}}}}"}"#));
        check(r#"{"a":"\"[[[[[[[["}"#, Ok(r#"{"a":"\"[[[[[[[["}"#));
    }

    #[test]
    fn refuses_duplicates_at_any_level() {
        check(r#"{"exp":1,"exp":9999999999}"#, Err(StrictJsonError::Duplicate("exp".into())));
        check(r#"{"exp":1,"\u0065xp":2}"#, Err(StrictJsonError::Duplicate("exp".into())));
        check(r#"{"a":[{"b":1,"b":1}]}"#, Err(StrictJsonError::Duplicate("b".into())));
        check(r#"{"a":{"b":{"c":1,"c":2}}}"#, Err(StrictJsonError::Duplicate("c".into())));
    }

    #[test]
    fn refuses_depth_beyond_the_limit() {
        check(&nested(4), Ok(nested(4).as_str()));
        check(&nested(5), Err(StrictJsonError::TooDeep));
        // Far deeper than serde_json's own recursion limit: refused by the scan, no recursion.
        check(&"[".repeat(100_000), Err(StrictJsonError::TooDeep));
    }

    #[test]
    fn the_visitor_enforces_depth_without_the_scan() {
        let fault = Cell::new(None);
        let seed = Strict { depth: 0, max_depth: 2, fault: &fault };
        let mut deserializer = serde_json::Deserializer::from_str(r#"{"a":[[1]]}"#);
        assert!(seed.deserialize(&mut deserializer).is_err());
        assert_eq!(fault.take(), Some(StrictJsonError::TooDeep));
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        check("[1]", Err(StrictJsonError::NotAnObject));
        check("\"x\"", Err(StrictJsonError::NotAnObject));
        assert!(matches!(parse_object(b"{} {}", 4), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse_object(b"{\"a\":1,}", 4), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse_object(b"", 4), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse_object(b"{\"a\":\"\xff\"}", 4), Err(StrictJsonError::Syntax(_))));
        assert!(matches!(parse_object(br#"{"a":"\ud800"}"#, 4), Err(StrictJsonError::Syntax(_))));
    }
}
