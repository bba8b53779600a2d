//! The intent taxonomy: for each kind of task, what such a task needs. A mandate's
//! `intent.category` names one; drift is measured from it.
//!
//! A category says which tools a task of its kind uses, which data classes it needs, where its
//! egress may go as a matter of course, and how much it does (calls a minute, distinct resources per
//! chain, agents per chain). Anything beyond that is not refused by the taxonomy: it raises a named
//! signal, and organisation policy decides what a signal costs.
//!
//! Mandate ships the categories of [`shipped`]; `mandate.toml` (`[[intents.categories]]`) and
//! `PUT /v1/intents/{category}` add, change or remove them.

use mandate_core::pattern::{ToolName, ToolPattern};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Whether a category's signals reach policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Scores are computed, recorded and alerted on, but policy sees a score of 0 and no signals:
    /// nothing is held or denied for drift. Every allowed call teaches the baseline.
    #[default]
    Learn,
    /// Policy sees the score and the signals.
    Enforce,
}

impl Mode {
    /// `learn` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Learn => "learn",
            Self::Enforce => "enforce",
        }
    }
}

/// A category as configured: what `PUT /v1/intents/{category}` takes and `GET /v1/intents` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategorySpec {
    /// What tasks of this kind are, for people.
    #[serde(default)]
    pub description: String,
    /// Patterns of the tools such a task uses (`hr/read_employee`, `erp/read_*`).
    pub tools: Vec<String>,
    /// The data classes such a task needs.
    pub data_classes: Vec<String>,
    /// Where its egress goes as a matter of course: domains (`example.org` covers its subdomains
    /// too), or `*` for "new external destinations are ordinary" (it quiets `new_destination`, not
    /// the exfiltration shape). The organisation's own domains (`[intents] internal_domains`) are
    /// always internal.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// Calls a minute per chain beyond which `volume` is raised (1 to 1000).
    #[serde(default = "default_calls_per_minute")]
    pub max_calls_per_minute: u32,
    /// Distinct resources per chain beyond which `bulk_access` is raised (1 to 1000).
    #[serde(default = "default_resources")]
    pub max_resources: u32,
    /// Agents per chain beyond which `fan_out` is raised (1 to 16).
    #[serde(default = "default_agents")]
    pub max_agents: u32,
    /// `learn` (the default for a new category) or `enforce`.
    #[serde(default)]
    pub mode: Mode,
}

fn default_calls_per_minute() -> u32 {
    60
}
fn default_resources() -> u32 {
    25
}
fn default_agents() -> u32 {
    3
}

/// The most calls a minute, resources or agents a category may name: the per-chain state that
/// counts them is bounded by these (see [`super::MAX_RECENT`]).
pub const MAX_CALLS_PER_MINUTE: u32 = 1_000;
/// See [`MAX_CALLS_PER_MINUTE`].
pub const MAX_RESOURCES: u32 = 1_000;
/// See [`MAX_CALLS_PER_MINUTE`].
pub const MAX_AGENTS: u32 = 16;

/// A category, checked and ready for decisions.
#[derive(Debug, Clone)]
pub struct Category {
    /// Its name.
    pub name: String,
    /// As configured.
    pub spec: CategorySpec,
    tools: Vec<ToolPattern>,
    /// The highest sensitivity among its data classes.
    pub ceiling: u8,
    /// Its data classes as a set of bits (see [`super::class_bit`]).
    pub class_bits: u8,
}

/// Why a category was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidCategory(pub String);

/// Whether `name` may name a category: lowercase letters, digits, `.`, `_` and `-`, 1 to 64
/// characters, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

fn valid_destination(d: &str) -> bool {
    d == "*"
        || (!d.is_empty()
            && d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }))
}

impl Category {
    /// Checks a category.
    pub fn new(name: &str, spec: CategorySpec) -> Result<Self, InvalidCategory> {
        let bad = |m: String| Err(InvalidCategory(m));
        if !valid_name(name) {
            return bad(format!(
                "category `{}` must be 1 to 64 lowercase letters, digits, `.`, `_` or `-`",
                name.escape_debug()
            ));
        }
        if spec.tools.is_empty() || spec.tools.len() > 256 {
            return bad(format!("category `{name}`: `tools` must name 1 to 256 tool patterns"));
        }
        let mut tools = Vec::with_capacity(spec.tools.len());
        for t in &spec.tools {
            match ToolPattern::parse(t) {
                Ok(p) => tools.push(p),
                Err(e) => return bad(format!("category `{name}`: tool pattern `{}`: {e}", t.escape_debug())),
            }
        }
        if spec.data_classes.is_empty() || spec.data_classes.len() > 32 {
            return bad(format!("category `{name}`: `data_classes` must name 1 to 32 data classes"));
        }
        for c in &spec.data_classes {
            if mandate_core::pattern::DataClass::parse(c).is_err() {
                return bad(format!("category `{name}`: `{}` is not a data class", c.escape_debug()));
            }
        }
        if spec.destinations.len() > 256 {
            return bad(format!("category `{name}`: at most 256 `destinations`"));
        }
        for d in &spec.destinations {
            if !valid_destination(d) {
                return bad(format!(
                    "category `{name}`: destination `{}` must be a lowercase domain such as `example.org`, or `*`",
                    d.escape_debug()
                ));
            }
        }
        let limits = [
            ("max_calls_per_minute", spec.max_calls_per_minute, MAX_CALLS_PER_MINUTE),
            ("max_resources", spec.max_resources, MAX_RESOURCES),
            ("max_agents", spec.max_agents, MAX_AGENTS),
        ];
        for (field, value, max) in limits {
            if value == 0 || value > max {
                return bad(format!("category `{name}`: `{field}` must be 1 to {max}, not {value}"));
            }
        }
        let ceiling = spec.data_classes.iter().map(|c| super::sensitivity(c)).max().unwrap_or(0);
        let class_bits = spec.data_classes.iter().fold(0, |bits, c| bits | super::class_bit(c));
        Ok(Self { name: name.to_owned(), spec, tools, ceiling, class_bits })
    }

    /// Whether a task of this kind uses `tool`.
    pub fn uses(&self, tool: &ToolName) -> bool {
        self.tools.iter().any(|p| p.matches(tool))
    }

    /// Whether the category names `domain` (or a parent of it) as a destination of its egress;
    /// `*` names none.
    pub fn names_destination(&self, domain: &str) -> bool {
        self.spec.destinations.iter().any(|d| d != "*" && super::destinations::within(domain, d))
    }
}

fn spec(
    description: &str,
    tools: &[&str],
    data_classes: &[&str],
    destinations: &[&str],
    (max_calls_per_minute, max_resources, max_agents): (u32, u32, u32),
) -> CategorySpec {
    let strings = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    CategorySpec {
        description: description.to_owned(),
        tools: strings(tools),
        data_classes: strings(data_classes),
        destinations: strings(destinations),
        max_calls_per_minute,
        max_resources,
        max_agents,
        mode: Mode::Enforce,
    }
}

/// The categories Mandate ships with, in `enforce`: the common tasks of a finance, HR, sales and IT
/// organisation. Each is an ordinary `[[intents.categories]]` entry that configuration can replace.
pub fn shipped() -> Vec<(String, CategorySpec)> {
    vec![
        (
            "finance.close".to_owned(),
            spec(
                "Month-end close: read the ledger and invoices, reconcile, convert currency, post adjusting \
                 entries, report",
                &[
                    "erp/read_ledger",
                    "erp/read_invoices",
                    "erp/match_entries",
                    "erp/post_journal",
                    "fx/convert",
                    "reports/*",
                    "mail/send",
                ],
                &["internal", "financial"],
                &[],
                (60, 20, 3),
            ),
        ),
        (
            "hr.onboarding".to_owned(),
            spec(
                "Onboard a new hire: read and complete the employee record, create accounts and groups, \
                 order equipment, book introductions, send welcome mail",
                &[
                    "hr/read_employee",
                    "hr/create_employee",
                    "directory/create_account",
                    "directory/add_to_group",
                    "it/order_equipment",
                    "calendar/*",
                    "mail/send",
                ],
                &["internal", "pii"],
                &[],
                (30, 10, 3),
            ),
        ),
        (
            "sales.research".to_owned(),
            spec(
                "Research accounts and prospects: read the CRM, search the web, draft and send outreach",
                &["crm/read_*", "crm/update_opportunity", "web/*", "docs/*", "mail/send"],
                &["public", "internal", "pii"],
                &["*"],
                (60, 15, 3),
            ),
        ),
        (
            "it.operations".to_owned(),
            spec(
                "Operate services: read metrics and logs, restart and deploy, manage tickets, post status",
                &["monitoring/*", "logs/*", "deploy/*", "tickets/*", "config/read", "chat/post"],
                &["public", "internal"],
                &[],
                (120, 25, 4),
            ),
        ),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_categories_are_valid() {
        for (name, spec) in shipped() {
            Category::new(&name, spec).unwrap();
        }
    }

    #[test]
    fn a_category_is_checked() {
        let (_, good) = shipped().remove(0);
        let refused = |name: &str, f: fn(&mut CategorySpec)| {
            let mut s = good.clone();
            f(&mut s);
            Category::new(name, s).unwrap_err().0
        };
        assert!(refused("Finance", |_| {}).contains("lowercase"));
        assert!(refused("x", |s| s.tools = vec!["*".into()]).contains("tool pattern"));
        assert!(refused("x", |s| s.tools.clear()).contains("1 to 256"));
        assert!(refused("x", |s| s.data_classes = vec!["Bad Class".into()]).contains("not a data class"));
        assert!(refused("x", |s| s.destinations = vec!["Evil.COM".into()]).contains("lowercase domain"));
        assert!(refused("x", |s| s.destinations = vec!["localhost".into()]).contains("lowercase domain"));
        assert!(refused("x", |s| s.max_resources = 0).contains("`max_resources` must be 1 to 1000"));
        assert!(refused("x", |s| s.max_calls_per_minute = 1_001).contains("1 to 1000"));
        assert!(refused("x", |s| s.max_agents = 17).contains("1 to 16"));
        let c = Category::new("finance.close", good).unwrap();
        assert_eq!(c.ceiling, 2);
        assert!(c.uses(&ToolName::parse("erp/read_ledger").unwrap()));
        assert!(!c.uses(&ToolName::parse("erp/create_vendor").unwrap()));
        assert!(!c.names_destination("evil.example"));
    }
}
