//! A tool call's arguments in canonical form: RFC 8785, the JSON Canonicalization Scheme (JCS).
//!
//! An approval is bound to the SHA-256 of the arguments' canonical form, so two documents must share a
//! digest exactly when every reader would take them for the same call. Two things stand in the way,
//! and both are refused here rather than canonicalised away:
//!
//! - **Duplicate member names.** RFC 8259 section 4 leaves their meaning open; `serde_json` keeps the
//!   last, others keep the first. An upstream tool that keeps the first would run something other
//!   than what a human approved, so a document that repeats a name in any object is refused.
//! - **Numbers that do not round-trip.** JCS (RFC 8785 section 3.2.2.3) writes every number as the
//!   IEEE 754 double nearest to it, as ECMAScript prints it. `12345678901234567890123` and
//!   `12345678901234567890124` are the same double, so they would share an approval. A number is
//!   accepted only when the decimal value of its text equals the decimal value of its canonical form
//!   (`1.0` and `1e2` are fine; `9007199254740993` and `1e400` are not).
//!
//! The encoding itself is `serde_json_canonicalizer`'s, so any JCS library in another language
//! (Python's `rfc8785`, say) reproduces the digest from the same document.
//!
//! Options rejected: `serde_json`'s `arbitrary_precision` feature would keep number text exactly, but
//! it is a feature of the whole build and changes every number everywhere; a home-made canonical
//! form (sorted members, `serde_json`'s number printing) is what this replaced: no other language
//! could reproduce it.

use crate::jose::json::{parse_object, StrictJsonError};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How deeply an arguments document may nest (the outer object counts as 1).
pub const MAX_DEPTH: usize = 32;

/// Why an arguments document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentsError {
    /// Not JSON.
    #[error("the arguments are not JSON: {0}")]
    Syntax(String),
    /// JSON, but not an object.
    #[error("the arguments must be a JSON object")]
    NotAnObject,
    /// Nested too deep.
    #[error("the arguments nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An object repeats a member name.
    #[error("the arguments repeat the member name `{0}`; each name may appear once per object")]
    DuplicateMember(String),
    /// A number that a double cannot hold exactly enough to print it back.
    #[error("the number `{0}` does not round-trip through an IEEE 754 double (RFC 8785 section 3.2.2.3); send it as a string")]
    InexactNumber(String),
}

impl ArgumentsError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax(_) | Self::NotAnObject | Self::TooDeep => "request.invalid_arguments",
            Self::DuplicateMember(_) => "request.duplicate_argument",
            Self::InexactNumber(_) => "request.inexact_number",
        }
    }
}

/// A tool call's arguments, parsed strictly, with their RFC 8785 canonical form and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalArguments {
    value: Value,
    canonical: String,
    sha256: [u8; 32],
}

impl CanonicalArguments {
    /// Parses one JSON object: no duplicate member names at any level, at most [`MAX_DEPTH`] deep,
    /// every number exactly representable in its canonical form.
    pub fn parse(text: &str) -> Result<Self, ArgumentsError> {
        let map = parse_object(text.as_bytes(), MAX_DEPTH).map_err(|e| match e {
            StrictJsonError::TooDeep => ArgumentsError::TooDeep,
            StrictJsonError::Duplicate(name) => ArgumentsError::DuplicateMember(name),
            StrictJsonError::NotAnObject => ArgumentsError::NotAnObject,
            StrictJsonError::Syntax(s) => ArgumentsError::Syntax(s),
        })?;
        for number in number_tokens(text) {
            if !round_trips(number) {
                return Err(ArgumentsError::InexactNumber(number.chars().take(64).collect()));
            }
        }
        let value = Value::Object(map);
        // INVARIANT: every number was checked finite above, and a `Value` holds nothing else that
        // JCS cannot write, so canonicalising cannot fail; an error is still refused, not unwrapped.
        let canonical =
            serde_json_canonicalizer::to_string(&value).map_err(|e| ArgumentsError::Syntax(e.to_string()))?;
        let sha256 = Sha256::digest(canonical.as_bytes()).into();
        Ok(Self { value, canonical, sha256 })
    }

    /// The empty object, `{}`.
    pub fn empty() -> Self {
        let canonical = "{}".to_owned();
        let sha256 = Sha256::digest(canonical.as_bytes()).into();
        Self { value: Value::Object(serde_json::Map::new()), canonical, sha256 }
    }

    /// The parsed document.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The RFC 8785 canonical text.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The SHA-256 of the canonical text, in lower-case hex: what an approval is bound to.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The number tokens of a JSON text already known to parse: runs of number characters outside
/// strings.
fn number_tokens(text: &str) -> impl Iterator<Item = &str> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut in_string = false;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let b = bytes[i];
            if in_string {
                match b {
                    b'\\' => i += 2,
                    b'"' => {
                        in_string = false;
                        i += 1;
                    }
                    _ => i += 1,
                }
                continue;
            }
            if b == b'"' {
                in_string = true;
                i += 1;
                continue;
            }
            if b == b'-' || b.is_ascii_digit() {
                let start = i;
                while i < bytes.len() && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                    i += 1;
                }
                return text.get(start..i);
            }
            i += 1;
        }
        None
    })
}

/// A decimal number as sign, significant digits (no leading or trailing zeros) and the power of ten
/// of the last digit; zero is `(false, "", 0)` whatever its sign.
fn decimal(text: &str) -> Option<(bool, String, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], rest[at + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int}{frac}");
    let mut power = exponent.checked_sub(i64::try_from(frac.len()).ok()?)?;
    let trimmed = digits.trim_start_matches('0').to_owned();
    digits = trimmed;
    while digits.ends_with('0') {
        digits.pop();
        power = power.checked_add(1)?;
    }
    if digits.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, digits, power))
}

/// Whether the number `text` has the same decimal value as its RFC 8785 form.
fn round_trips(text: &str) -> bool {
    let Ok(parsed) = text.parse::<f64>() else { return false };
    if !parsed.is_finite() {
        return false;
    }
    let Ok(canonical) = serde_json_canonicalizer::to_string(&parsed) else { return false };
    match (decimal(text), decimal(&canonical)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
