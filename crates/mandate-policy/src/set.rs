//! Policy sets: parsing, the house rules on annotations, validation against the schema, and the
//! decisions a validated set makes.
//!
//! [`ValidatedPolicySet`] can only be built by [`ValidatedPolicySet::parse`], so holding one proves
//! that its text parsed, that every policy has a unique, well-formed `@id`, that every `@hold` is a
//! reason on a `permit`, and that strict validation against [`crate::SCHEMA`] found no error. Inside
//! Cedar each policy is known by its `@id`, so the ids Cedar reports are the ids the authors wrote.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy as cedar;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::decision::{self, PolicyDecision};
use crate::engine::{engine, policy_id};
use crate::facts::{ApproveRequest, CallRequest, GrantRequest};
use crate::memo::Memo;

/// The longest `@id` accepted, in bytes.
const MAX_ID_LEN: usize = 128;

/// Why a policy set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text has problems: syntax, annotations or validation. Every problem found is listed.
    #[error("the policy set was refused: {}", list(.0))]
    Invalid(Vec<Problem>),
    /// The shipped schema could not be loaded, so no policy set can be validated. A build defect.
    #[error("the policy schema could not be loaded: {0}")]
    Schema(String),
}

/// One problem in a policy set's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The `@id` of the policy concerned, when it is known.
    pub policy: Option<String>,
    /// The 1-based line of the text where the problem is, when it is known.
    pub line: Option<usize>,
    /// The 1-based column (in characters) on that line.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        if let Some(policy) = &self.policy {
            write!(f, "policy `{policy}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Whether a policy permits or forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// A `permit` policy.
    Permit,
    /// A `forbid` policy.
    Forbid,
}

/// One policy of a validated set, as the rest of Mandate sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    /// Its `@id`.
    pub id: String,
    /// Permit or forbid.
    pub effect: Effect,
    /// The reason of its `@hold` annotation, if it has one (only permits do).
    pub hold: Option<String>,
    /// The 1-based line where it starts.
    pub line: usize,
}

/// A policy set that parsed, follows the house rules and validated against the schema. The caller
/// keeps it in an `Arc` and swaps it atomically; a set that fails to parse never replaces one.
#[derive(Clone)]
pub struct ValidatedPolicySet {
    text: String,
    version: String,
    cedar: cedar::PolicySet,
    /// In source order.
    policies: Vec<PolicyInfo>,
    index: HashMap<String, usize>,
    warnings: Vec<Problem>,
    /// The decisions of recent `call` requests against this set (shared by its clones, which hold the
    /// same policies); `None` when turned off with [`ValidatedPolicySet::without_call_memo`].
    calls: Option<Arc<Memo<CallRequest, PolicyDecision>>>,
}

/// How many `call` decisions a policy set remembers.
const CALL_MEMO_CAPACITY: usize = 4096;

impl ValidatedPolicySet {
    /// Parses `text`, checks the house rules (a unique `@id` on every policy: letters, digits and
    /// `.`, `_`, `-`, `:`, `/`, at most 128 bytes; `@hold("reason")` only on a `permit`, with a
    /// reason; no templates) and validates every policy against the schema in strict mode.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Invalid`] with every problem found, each with its policy id and line where
    /// known.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let engine = engine().map_err(|e| PolicyError::Schema(e.to_owned()))?;
        let parsed = cedar::PolicySet::from_str(text).map_err(|errors| {
            PolicyError::Invalid(
                errors.iter().map(|e| problem_at(text, None, &cedar::ffi::DetailedError::from(e))).collect(),
            )
        })?;
        let mut problems = Vec::new();
        for template in parsed.templates() {
            let line = text.find(&template.to_cedar()).map(|offset| line_column(text, offset).0);
            problems.push(Problem {
                policy: template.annotation("id").map(str::to_owned),
                line,
                column: None,
                message: "templates (policies with `?principal` or `?resource`) are not supported".to_owned(),
            });
        }

        // Cedar names the policies `policy0`, `policy1`, ... in source order; restore that order and
        // find where each starts, searching the text from the end of the previous one.
        let mut sources: Vec<&cedar::Policy> = parsed.policies().collect();
        sources.sort_by_key(|p| policy_id(p.id()).strip_prefix("policy").and_then(|n| n.parse::<usize>().ok()));
        let mut policies = Vec::with_capacity(sources.len());
        let mut index = HashMap::new();
        let mut names = HashMap::new();
        let mut renamed = cedar::PolicySet::new();
        let mut cursor = 0;
        for policy in sources {
            let offset = policy.to_cedar().and_then(|t| text.get(cursor..)?.find(&t).map(|at| (cursor + at, t.len())));
            let line = match offset {
                Some((start, len)) => {
                    cursor = start + len;
                    line_column(text, start).0
                }
                None => line_column(text, cursor).0,
            };
            let mut problem = |message: String, policy: Option<&str>| {
                problems.push(Problem { policy: policy.map(str::to_owned), line: Some(line), column: None, message })
            };
            let Some(id) = policy.annotation("id") else {
                problem("the policy has no `@id(\"...\")` annotation".to_owned(), None);
                continue;
            };
            names.insert(policy_id(policy.id()).to_owned(), (id.to_owned(), line));
            if let Err(message) = check_id(id) {
                problem(message, Some(id));
                continue;
            }
            if let Some(&first) = index.get(id) {
                let first_line = policies.get(first).map_or(0, |p: &PolicyInfo| p.line);
                problem(format!("the `@id` is already used by the policy on line {first_line}"), Some(id));
                continue;
            }
            let effect = match policy.effect() {
                cedar::Effect::Permit => Effect::Permit,
                cedar::Effect::Forbid => Effect::Forbid,
            };
            let hold = policy.annotation("hold").map(str::to_owned);
            match (&hold, effect) {
                (Some(_), Effect::Forbid) => {
                    problem("`@hold` is only meaningful on a `permit`: a `forbid` denies".to_owned(), Some(id));
                }
                (Some(reason), Effect::Permit) if reason.trim().is_empty() => {
                    problem("`@hold` needs a reason, as in `@hold(\"egress needs approval\")`".to_owned(), Some(id));
                }
                _ => {}
            }
            if let Err(e) = renamed.add(policy.new_id(cedar::PolicyId::new(id))) {
                problem(crate::facts::detail(&e), Some(id));
            }
            index.insert(id.to_owned(), policies.len());
            policies.push(PolicyInfo { id: id.to_owned(), effect, hold, line });
        }

        // Validate what Cedar parsed, so that a policy without an `@id` is still type-checked; report
        // each finding under the `@id` its author wrote.
        let result = engine.validator.validate(&parsed, cedar::ValidationMode::Strict);
        let rename = |cedar_id: &cedar::PolicyId, detail: cedar::ffi::DetailedError| {
            let cedar_id = policy_id(cedar_id);
            let (id, line) = names.get(cedar_id).map_or((None, None), |(id, line)| (Some(id.as_str()), Some(*line)));
            let mut p = problem_at(text, id, &detail);
            p.line = p.line.or(line);
            // Cedar's messages name the policy by its internal id, which the author never wrote.
            p.message = p.message.replace(&format!("for policy `{cedar_id}`, "), "");
            if let Some(id) = id {
                p.message = p.message.replace(&format!("`{cedar_id}`"), &format!("`{id}`"));
            }
            p
        };
        problems.extend(result.validation_errors().map(|e| rename(e.policy_id(), e.into())));
        let warnings = result.validation_warnings().map(|w| rename(w.policy_id(), w.into())).collect();
        if !problems.is_empty() {
            return Err(PolicyError::Invalid(problems));
        }
        let version = hex::encode(Sha256::digest(text.as_bytes()));
        let calls = Some(Arc::new(Memo::new(CALL_MEMO_CAPACITY)));
        Ok(Self { text: text.to_owned(), version, cedar: renamed, policies, index, warnings, calls })
    }

    /// The default policy set, [`crate::DEFAULT_POLICIES`].
    ///
    /// # Errors
    ///
    /// None in practice: the tests parse the shipped set. The `Result` keeps a broken edit of it
    /// from becoming a panic.
    pub fn default_set() -> Result<Self, PolicyError> {
        Self::parse(crate::DEFAULT_POLICIES)
    }

    /// The source text, exactly as parsed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The set's version: the hex SHA-256 of its text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The `@id` of every policy, in source order.
    pub fn ids(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.policies.iter().map(|p| p.id.as_str())
    }

    /// Every policy, in source order.
    pub fn policies(&self) -> &[PolicyInfo] {
        &self.policies
    }

    /// What strict validation warned about without refusing the set (for instance a policy that can
    /// never apply), for `mandate policy validate` to show.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Decides whether a human may put a tool into a mandate (action `grant`).
    pub fn decide_grant(&self, request: &GrantRequest) -> PolicyDecision {
        match engine() {
            Ok(engine) => decision::evaluate(engine, self, request.build(engine)),
            Err(e) => PolicyDecision::failed(e.to_owned()),
        }
    }

    /// Decides whether an agent may make a tool call now (action `call`).
    ///
    /// The answer is remembered under the whole request: a Cedar decision is a pure function of the
    /// policies, the entities and the context, and every one of those is this set or a field of
    /// `request` (the agents, the chain, the root human with groups and roles, the tool, the intent,
    /// the hour and weekday, the risk so far). So an agent repeating a call gets the answer Cedar
    /// gave the first time, without evaluating again, and any changed fact, even under the same ids
    /// (a suspended agent, a human moved between groups, a reclassified tool, a new risk signal), is
    /// another key and is evaluated. A replaced policy set is a new set with a memo of its own.
    pub fn decide_call(&self, request: &CallRequest) -> PolicyDecision {
        let Some(memo) = &self.calls else {
            return self.evaluate_call(request);
        };
        if let Some(hit) = memo.get(request) {
            return hit;
        }
        let decision = self.evaluate_call(request);
        memo.insert(request.clone(), decision.clone());
        decision
    }

    /// Decides a `call` request by evaluating it with Cedar, whatever was decided before.
    pub fn evaluate_call(&self, request: &CallRequest) -> PolicyDecision {
        match engine() {
            Ok(engine) => decision::evaluate(engine, self, request.build(engine)),
            Err(e) => PolicyDecision::failed(e.to_owned()),
        }
    }

    /// This set without the memo of `call` decisions: every [`Self::decide_call`] evaluates (for
    /// measuring the evaluation itself).
    #[must_use]
    pub fn without_call_memo(mut self) -> Self {
        self.calls = None;
        self
    }

    /// Decides whether a human may approve a held call (action `approve`).
    pub fn decide_approve(&self, request: &ApproveRequest) -> PolicyDecision {
        match engine() {
            Ok(engine) => decision::evaluate(engine, self, request.build(engine)),
            Err(e) => PolicyDecision::failed(e.to_owned()),
        }
    }

    pub(crate) fn cedar(&self) -> &cedar::PolicySet {
        &self.cedar
    }

    /// Where the policy `id` is in source order.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    pub(crate) fn info(&self, id: &str) -> Option<&PolicyInfo> {
        self.index.get(id).and_then(|&i| self.policies.get(i))
    }
}

impl fmt::Debug for ValidatedPolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedPolicySet")
            .field("version", &self.version)
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("the `@id` is empty".to_owned());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("the `@id` is longer than {MAX_ID_LEN} bytes"));
    }
    match id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'))) {
        Some(c) => {
            Err(format!("the `@id` contains `{}`: use letters, digits, `.`, `_`, `-`, `:` and `/`", c.escape_default()))
        }
        None => Ok(()),
    }
}

/// A problem from a Cedar diagnostic, placed at its first labelled source location.
fn problem_at(text: &str, policy: Option<&str>, detail: &cedar::ffi::DetailedError) -> Problem {
    let place = detail.source_locations.first().map(|label| line_column(text, label.loc.start));
    let mut message = detail.message.clone();
    if let Some(help) = &detail.help {
        message.push_str(" (help: ");
        message.push_str(help);
        message.push(')');
    }
    Problem { policy: policy.map(str::to_owned), line: place.map(|p| p.0), column: place.map(|p| p.1), message }
}

/// The 1-based line and column (in characters) of a byte offset; past the end means the end.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
