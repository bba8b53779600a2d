//! A policy decision, and how a Cedar answer becomes one.
//!
//! Cedar answers allow or deny with the ids of the determining policies and any evaluation errors.
//! Mandate adds two rules on top. A `@hold("reason")` permit among the determining policies of an
//! allow turns it into [`Outcome::Hold`]. And errors fail closed: Cedar skips a policy whose
//! evaluation errors, which is safe for a plain `permit` (skipping it can only deny more) but not for
//! a `forbid` (it might have denied) or a `@hold` permit (it might have held), so an error in either
//! denies, naming the policy. Facts that could not be turned into a Cedar request deny too.

use std::fmt;

use cedar_policy as cedar;
use serde::{Deserialize, Serialize};

use crate::engine::{policy_id, Engine};
use crate::facts::Built;
use crate::set::{Effect, ValidatedPolicySet};

/// What policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Permitted, and no determining policy asks for a person.
    Allow,
    /// Forbidden, not permitted, or not decidable.
    Deny,
    /// Permitted once a person approves (`approval_required`).
    Hold,
}

impl Outcome {
    /// The name used in JSON and case files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Hold => "hold",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of policy to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDecision {
    /// Allow, deny or hold.
    pub outcome: Outcome,
    /// The `@id` of every policy that determined the outcome, in source order: the satisfied permits
    /// of an allow or a hold, the satisfied forbids of a deny (none when nothing permitted), or the
    /// policies whose errors denied.
    pub matched: Vec<String>,
    /// The `@hold` reasons of a hold, in the order of `matched`.
    pub hold_reasons: Vec<String>,
    /// Every error met, including those that did not change the outcome.
    pub errors: Vec<String>,
}

impl PolicyDecision {
    /// A deny because the request could not be evaluated at all.
    pub(crate) fn failed(error: String) -> Self {
        Self { outcome: Outcome::Deny, matched: Vec::new(), hold_reasons: Vec::new(), errors: vec![error] }
    }
}

/// Authorizes a built request against a set.
pub(crate) fn evaluate(engine: &Engine, set: &ValidatedPolicySet, built: Result<Built, String>) -> PolicyDecision {
    let built = match built {
        Ok(built) => built,
        Err(e) => return PolicyDecision::failed(e),
    };
    let request = match cedar::Request::new(
        built.principal,
        built.action,
        built.resource,
        built.context,
        engine.request_schema(),
    ) {
        Ok(request) => request,
        Err(e) => return PolicyDecision::failed(format!("the request was refused: {}", crate::facts::detail(&e))),
    };
    let response = engine.authorizer.is_authorized(&request, set.cedar(), &built.entities);

    let mut errors = Vec::new();
    let mut failed = Vec::new();
    for error in response.diagnostics().errors() {
        errors.push(crate::facts::detail(error));
        let decisive = match error {
            cedar::AuthorizationError::PolicyEvaluationError(e) => {
                let id = policy_id(e.policy_id());
                match set.info(id) {
                    Some(info) => (info.effect == Effect::Forbid || info.hold.is_some()).then(|| info.id.clone()),
                    // INVARIANT: every policy of the set has an info entry; fail closed if not.
                    None => Some(id.to_owned()),
                }
            }
        };
        failed.extend(decisive);
    }
    if !failed.is_empty() {
        sort_by_source(set, &mut failed);
        failed.dedup();
        return PolicyDecision { outcome: Outcome::Deny, matched: failed, hold_reasons: Vec::new(), errors };
    }

    let mut matched: Vec<String> = response.diagnostics().reason().map(|id| policy_id(id).to_owned()).collect();
    sort_by_source(set, &mut matched);
    let (outcome, hold_reasons) = match response.decision() {
        cedar::Decision::Deny => (Outcome::Deny, Vec::new()),
        cedar::Decision::Allow => {
            let reasons: Vec<String> = matched.iter().filter_map(|id| set.info(id)?.hold.clone()).collect();
            if reasons.is_empty() {
                (Outcome::Allow, reasons)
            } else {
                (Outcome::Hold, reasons)
            }
        }
    };
    PolicyDecision { outcome, matched, hold_reasons, errors }
}

/// Sorts policy ids by where they appear in the set's text; unknown ids go last.
fn sort_by_source(set: &ValidatedPolicySet, ids: &mut [String]) {
    ids.sort_by_key(|id| set.position(id).unwrap_or(usize::MAX));
}
