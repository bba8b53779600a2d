//! Policy test cases: a file of requests with the outcomes they must get, run against a set
//! (`mandate policy test CASES`, like `opa test`), so an organisation can check its policies in CI.
//!
//! A case file is JSON:
//!
//! ```json
//! {"cases": [
//!   {"name": "finance may grant the ledger", "kind": "grant",
//!    "request": {"human": {...}, "agent": {...}, "tool": {...}},
//!    "expect": "allow", "matched": ["grant.financial-by-finance"]}
//! ]}
//! ```
//!
//! `kind` is `grant`, `call` or `approve`, and `request` is the matching [`GrantRequest`],
//! [`CallRequest`] or [`ApproveRequest`] in JSON, unknown fields refused. `expect` is `allow`, `deny`
//! or `hold`. `matched` is optional: when present, the determining policy ids must be exactly these,
//! in any order.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decision::{Outcome, PolicyDecision};
use crate::facts::{ApproveRequest, CallRequest, GrantRequest};
use crate::set::ValidatedPolicySet;

/// Why a case file could not be run. A case that runs and fails is not an error: it is a failed
/// [`CaseResult`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The file is not JSON of the case file's shape.
    #[error("the case file is malformed: {0}")]
    Malformed(String),
    /// The file has no cases, which would pass without checking anything.
    #[error("the case file has no cases")]
    NoCases,
    /// Some requests do not have the shape their `kind` needs; every one is listed.
    #[error("the case file has malformed requests: {}", .0.join("; "))]
    Requests(Vec<String>),
}

/// Which action a case asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseKind {
    /// Action `grant`, a [`GrantRequest`].
    Grant,
    /// Action `call`, a [`CallRequest`].
    Call,
    /// Action `approve`, an [`ApproveRequest`].
    Approve,
}

/// One case of a case file, as read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A readable name, shown in the report.
    pub name: String,
    /// Which action the request asks about.
    pub kind: CaseKind,
    /// The request, in the JSON of the kind's request type.
    pub request: serde_json::Value,
    /// The outcome the request must get.
    pub expect: Outcome,
    /// If present, exactly the policy ids that must determine the outcome, in any order.
    #[serde(default)]
    pub matched: Option<Vec<String>>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Its kind.
    pub kind: CaseKind,
    /// The expected outcome.
    pub expect: Outcome,
    /// The expected policy ids, if the case named them.
    pub expect_matched: Option<Vec<String>>,
    /// What the policy set decided.
    pub decision: PolicyDecision,
    /// Whether the decision is what the case expected.
    pub passed: bool,
}

/// The results of a case file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseReport {
    /// The version of the policy set the cases ran against.
    pub policy_version: String,
    /// One result per case.
    pub results: Vec<CaseResult>,
}

impl CaseReport {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.passed)
    }
}

impl fmt::Display for CaseReport {
    /// One line per case, `ok` or `FAIL`, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.results {
            let matched = r.decision.matched.join(", ");
            if r.passed {
                writeln!(f, "ok    {}: {} [{matched}]", r.name, r.decision.outcome)?;
            } else {
                write!(f, "FAIL  {}: expected {}", r.name, r.expect)?;
                if let Some(ids) = &r.expect_matched {
                    write!(f, " [{}]", ids.join(", "))?;
                }
                write!(f, ", got {} [{matched}]", r.decision.outcome)?;
                if !r.decision.errors.is_empty() {
                    write!(f, " with errors: {}", r.decision.errors.join("; "))?;
                }
                writeln!(f)?;
            }
        }
        write!(f, "{} passed, {} failed (policy set {})", self.passed(), self.failed(), self.policy_version)
    }
}

/// Runs every case of `cases_json` against `set`.
///
/// # Errors
///
/// [`CaseError`] when the file cannot be run: malformed JSON, no cases, or requests that do not fit
/// their kind (all listed). Failing cases are reported in the [`CaseReport`], not as errors.
pub fn run_cases(set: &ValidatedPolicySet, cases_json: &str) -> Result<CaseReport, CaseError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CaseFile {
        cases: Vec<Case>,
    }

    let file: CaseFile = serde_json::from_str(cases_json).map_err(|e| CaseError::Malformed(e.to_string()))?;
    if file.cases.is_empty() {
        return Err(CaseError::NoCases);
    }
    let mut decisions = Vec::with_capacity(file.cases.len());
    let mut malformed = Vec::new();
    for case in &file.cases {
        match decide(set, case) {
            Ok(decision) => decisions.push(decision),
            Err(e) => malformed.push(format!("case `{}`: {e}", case.name)),
        }
    }
    if !malformed.is_empty() {
        return Err(CaseError::Requests(malformed));
    }
    let results = file
        .cases
        .into_iter()
        .zip(decisions)
        .map(|(case, decision)| {
            let passed = decision.outcome == case.expect
                && case.matched.as_ref().is_none_or(|ids| sorted(ids) == sorted(&decision.matched));
            CaseResult {
                name: case.name,
                kind: case.kind,
                expect: case.expect,
                expect_matched: case.matched,
                decision,
                passed,
            }
        })
        .collect();
    Ok(CaseReport { policy_version: set.version().to_owned(), results })
}

fn decide(set: &ValidatedPolicySet, case: &Case) -> Result<PolicyDecision, serde_json::Error> {
    let request = case.request.clone();
    Ok(match case.kind {
        CaseKind::Grant => set.decide_grant(&serde_json::from_value::<GrantRequest>(request)?),
        CaseKind::Call => set.decide_call(&serde_json::from_value::<CallRequest>(request)?),
        CaseKind::Approve => set.decide_approve(&serde_json::from_value::<ApproveRequest>(request)?),
    })
}

fn sorted(ids: &[String]) -> Vec<&str> {
    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
