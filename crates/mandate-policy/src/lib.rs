//! Mandate's organisation policy as code: the Cedar schema, validated policy sets, and decisions over
//! plain Rust requests.
//!
//! Three questions are put to policy, one Cedar action each: may this human put this tool into a
//! mandate ([`GrantRequest`], action `grant`), may this agent make this tool call now
//! ([`CallRequest`], action `call`), and may this human approve this held call ([`ApproveRequest`],
//! action `approve`). The caller supplies the facts (registry, token, tool catalogue, clock); this
//! crate turns them into Cedar entities and a context, evaluates the active [`ValidatedPolicySet`]
//! and answers a [`PolicyDecision`]: [`Outcome::Allow`], [`Outcome::Deny`] or [`Outcome::Hold`]
//! (approval required), with the `@id` of every policy that decided it.
//!
//! Goals:
//! - Policies are checked before they decide anything. [`ValidatedPolicySet::parse`] is the only way
//!   to build a set: it parses the text, validates every policy against the shipped [`SCHEMA`] in
//!   strict mode, and insists on a unique `@id` per policy. A set that fails is refused with every
//!   problem listed, by policy id and line, so a bad edit never replaces a good set.
//! - Fail closed. Cedar denies what no policy permits and a `forbid` beats every `permit`. Facts that
//!   cannot be turned into valid entities or context, and evaluation errors that could have changed
//!   the outcome, deny with the error listed.
//! - Holds are policy. A `permit` annotated `@hold("reason")` that helps allow a request turns the
//!   allow into [`Outcome::Hold`] with that reason.
//! - Policy sets are values: the caller keeps an `Arc<ValidatedPolicySet>` and swaps it atomically;
//!   [`ValidatedPolicySet::version`] names each set by the SHA-256 of its text for the ledger.
//! - Fast: the schema is parsed once per process; a decision builds a handful of entities and runs
//!   one Cedar evaluation, about 40 µs for a call against the default set in a release build.
//!
//! Non-goals: the mandate's scope, the chain, revocation and budgets are checked in Rust before
//! policy runs; this crate never reads a store, a clock or a file, and no Cedar type appears in its
//! API, so the Cedar version can change without touching the callers.
//!
//! [`run_cases`] runs a file of requests with expected outcomes against a set (`mandate policy test`),
//! and [`DEFAULT_POLICIES`] is the set shipped with the demo.
//!
//! ```
//! use std::sync::Arc;
//! use mandate_policy::{AgentFacts, CallRequest, HumanFacts, Outcome, ToolFacts, ValidatedPolicySet};
//!
//! let policies = Arc::new(ValidatedPolicySet::default_set()?);
//! let agent = AgentFacts {
//!     id: "finance-close".into(),
//!     class: "enterprise".into(),
//!     environment: "production".into(),
//!     owner: "alice@example.org".into(),
//!     state: "active".into(),
//! };
//! let root = HumanFacts {
//!     id: "alice@example.org".into(),
//!     groups: vec!["finance".into()],
//!     roles: vec![],
//!     sandbox: false,
//! };
//! let tool = ToolFacts {
//!     name: "erp/post_journal".into(),
//!     server: "erp".into(),
//!     server_environment: "production".into(),
//!     data_class: "financial".into(),
//!     risk: "write".into(),
//! };
//! let call = CallRequest {
//!     agent, chain: vec![], root, tool,
//!     category: "finance.close".into(), purpose: "Post the October accruals".into(), depth: 0,
//!     action: "write".into(), resource_uri: Some("erp://journal/2026-10".into()),
//!     hour: 10, weekday: 2, risk_score: 0, signals: vec![], binding: "agent_key".into(),
//! };
//! let decision = policies.decide_call(&call);
//! assert_eq!(decision.outcome, Outcome::Hold);
//! assert_eq!(decision.matched, ["call.within-mandate", "call.hold-financial-write"]);
//! assert_eq!(decision.hold_reasons, ["financial writes need an approver other than the root human"]);
//! # Ok::<(), mandate_policy::PolicyError>(())
//! ```
#![forbid(unsafe_code)]

mod cases;
mod decision;
mod engine;
mod facts;
mod memo;
mod set;

pub use cases::{run_cases, Case, CaseError, CaseKind, CaseReport, CaseResult};
pub use decision::{Outcome, PolicyDecision};
pub use facts::{AgentFacts, ApproveRequest, CallRequest, GrantRequest, HumanFacts, ToolFacts};
pub use set::{Effect, PolicyError, PolicyInfo, Problem, ValidatedPolicySet};

/// The Cedar schema every policy set is validated against: namespace `Mandate`, entities `Group`,
/// `Human`, `Agent`, `Server` and `Tool`, actions `grant`, `call` and `approve`. The file documents
/// every attribute and context field.
pub const SCHEMA: &str = include_str!("../schema/mandate.cedarschema");

/// The default policy set shipped with the demo; every policy carries an `@id` and a comment.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");

#[cfg(test)]
mod tests;
