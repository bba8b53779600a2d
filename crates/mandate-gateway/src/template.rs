//! Resource templates: the resource a call acts on, read from its arguments, never from the
//! agent's claim. `erp://ledger/{period}/{account}` takes the top-level arguments `period` and
//! `account`.
//!
//! Expansion is RFC 6570 level 1 (simple string expansion): every character of a value other than
//! the unreserved ones (`A-Z a-z 0-9 - . _ ~`) is percent-encoded, so a value cannot add a path
//! segment (`2026-10/../payroll` becomes `2026-10%2F..%2Fpayroll`, which the engine's resource
//! parser refuses outright: `request.invalid_resource`), a query, or an authority. A
//! value must be a non-empty string or an integer; anything else, or a missing argument, leaves the
//! template unfilled and the call is denied (`gateway.resource_unresolved`).

use serde_json::Value;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceTemplate {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resource template `{template}`: {problem}")]
pub struct TemplateError {
    template: String,
    problem: &'static str,
}

impl ResourceTemplate {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let err = |problem| TemplateError { template: text.to_owned(), problem };
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest.as_bytes()[open] == b'}' {
                return Err(err("a `}` without its `{`"));
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_owned()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| err("a `{` without its `}`"))?;
            let name = &after[..close];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err("a variable is a name of `A-Z`, `a-z`, `0-9` and `_` (no operators)"));
            }
            parts.push(Part::Variable(name.to_owned()));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Variable(_))) {
            return Err(err("it reads no argument; a fixed resource needs no template"));
        }
        let authority_closed =
            |l: &str| l.split_once("://").is_some_and(|(_, rest)| rest.find('/').is_some_and(|i| i > 0));
        if !matches!(parts.first(), Some(Part::Literal(l)) if authority_closed(l)) {
            return Err(err("it must start with a scheme and authority (`erp://...`) that no argument fills"));
        }
        Ok(Self { text: text.to_owned(), parts })
    }

    /// The template's text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The arguments it reads.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(v) => Some(v.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// The resource of a call with `arguments`, or why there is none.
    pub fn fill(&self, arguments: &Value) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Variable(name) => {
                    let value = arguments.get(name).ok_or_else(|| format!("the call has no argument `{name}`"))?;
                    match value {
                        Value::String(s) if !s.is_empty() => encode(s, &mut out),
                        Value::Number(n) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
                        _ => return Err(format!("argument `{name}` must be a non-empty string or an integer")),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Appends `s` to `out` with every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded (RFC 6570 simple expansion).
pub(crate) fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fills_from_arguments_and_never_lets_a_value_add_structure() {
        let t = ResourceTemplate::parse("erp://ledger/{period}/{account}").unwrap();
        assert_eq!(t.variables().collect::<Vec<_>>(), ["period", "account"]);
        assert_eq!(t.fill(&json!({"period": "2026-10", "account": "ap"})).unwrap(), "erp://ledger/2026-10/ap");
        assert_eq!(t.fill(&json!({"period": 2026, "account": "ap"})).unwrap(), "erp://ledger/2026/ap");
        // A value cannot climb out of its segment, nor start a query or fragment.
        assert_eq!(
            t.fill(&json!({"period": "2026-10/../payroll", "account": "x?y#z"})).unwrap(),
            "erp://ledger/2026-10%2F..%2Fpayroll/x%3Fy%23z"
        );
        // Missing, empty, or not a scalar: no resource.
        assert!(t.fill(&json!({"period": "2026-10"})).is_err());
        assert!(t.fill(&json!({"period": "", "account": "ap"})).is_err());
        assert!(t.fill(&json!({"period": ["2026-10"], "account": "ap"})).is_err());
        assert!(t.fill(&json!({"period": 1.5, "account": "ap"})).is_err());
        assert!(t.fill(&json!("not an object")).is_err());
    }

    #[test]
    fn refuses_templates_an_argument_could_steer() {
        for bad in [
            "erp://ledger/{period",
            "erp://ledger/}x",
            "{host}/x",
            "erp://{host}/x",
            "erp://x/{a+b}",
            "erp://x/y",
            "erp://x/{}",
        ] {
            assert!(ResourceTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(ResourceTemplate::parse("erp://ledger/{period}").is_ok());
    }
}
