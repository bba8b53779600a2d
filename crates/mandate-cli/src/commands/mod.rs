//! The client verbs, one module per noun.

pub mod agent;
pub mod audit;
pub mod decide;
pub mod drift;
pub mod gateway;
pub mod human;
pub mod mandate;
pub mod mcp;
pub mod review;

use serde_json::Value;

/// Prints a value as pretty JSON (the `--json` output).
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A JSON value as cell text: strings bare, arrays comma-joined, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => crate::table::visible(s).into_owned(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
