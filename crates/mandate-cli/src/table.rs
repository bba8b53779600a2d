//! Plain aligned tables for people, and the rule that text from the server is shown as it is, never
//! obeyed by the terminal.
//!
//! Tool names, resources, purposes and reasons can come from an agent, and an agent is not trusted:
//! a carriage return, a line feed or an ANSI escape in a refused call's tool name would otherwise
//! let it forge or hide rows on an incident responder's screen. Every value printed for people
//! passes through [`visible`], which writes such characters as escapes (`\u{1b}`, `\n`); `--json`
//! output stays exact (JSON escapes them itself).

use serde_json::Value;
use std::borrow::Cow;

/// Whether the terminal could act on `c`, or a reader could be misled by it: C0 and C1 controls,
/// DEL, and the Unicode controls that reorder or hide text (bidirectional overrides and isolates,
/// zero-width characters, the byte order mark, line and paragraph separators).
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// `text` with every hazardous character written as a visible escape.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hazard(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `value` with every string in it (member names too) passed through [`visible`].
pub fn visible_json(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(visible(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(visible_json).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (visible(k).into_owned(), visible_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Prints rows under headers, each column as wide as its widest cell.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| visible(c).into_owned()).collect()).collect();
    let rows = rows.as_slice();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hazards_are_written_as_escapes_and_plain_text_is_untouched() {
        for (input, shown) in [
            ("erp/read_ledger", "erp/read_ledger"),
            ("Résumé €", "Résumé €"),
            ("a\r\nb\tc", "a\\r\\nb\\tc"),
            ("\u{1b}[2K\u{1b}[1Aforged", "\\u{1b}[2K\\u{1b}[1Aforged"),
            ("x\u{9b}31m\u{7f}", "x\\u{9b}31m\\u{7f}"),
            ("evil\u{202e}gpj.exe", "evil\\u{202e}gpj.exe"),
            ("zero\u{200b}width\u{feff}", "zero\\u{200b}width\\u{feff}"),
        ] {
            assert_eq!(visible(input), shown, "{input:?}");
        }
        assert!(matches!(visible("plain"), Cow::Borrowed(_)));
        let v = visible_json(&serde_json::json!({"k\n": ["\u{1b}"], "n": 1}));
        assert_eq!(v, serde_json::json!({"k\\n": ["\\u{1b}"], "n": 1}));
    }
}
