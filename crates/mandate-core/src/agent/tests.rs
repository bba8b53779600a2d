//! Registration, mover and leaver rules, and the review computation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::lifecycle::{review, transition, LifecycleAction, LifecycleError, OwnerStatus, ReviewSettings};
use serde_json::json;
use time::macros::datetime;
use time::Duration;

const T0: OffsetDateTime = datetime!(2026-11-01 09:00 UTC);
const KEY_A: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

fn key_b() -> serde_json::Value {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    Ed25519PublicJwk::from_verifying_key(key.verifying_key()).to_json()
}

fn spec(overrides: serde_json::Value) -> Result<AgentSpec, serde_json::Error> {
    let mut base = json!({
        "id": "finance-close", "name": "Finance close agent", "owner": "user:alice@example.org",
        "purpose": "Prepare the monthly close report", "class": "enterprise", "environment": "production",
        "boundary": {"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial"],
                     "may_delegate_to": ["reconciler"], "max_depth": 2},
        "public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": KEY_A}, "certify_every_days": 90
    });
    for (k, v) in overrides.as_object().unwrap() {
        base[k] = v.clone();
    }
    serde_json::from_value(base)
}

fn agent() -> Agent {
    register(spec(json!({})).unwrap(), T0).unwrap()
}

#[test]
fn the_spec_example_registers() {
    let a = agent();
    assert_eq!(a.state, AgentState::Active);
    assert_eq!(a.version, 1);
    assert_eq!(a.boundary.environments, vec![Environment::Production], "empty environments mean its own");
    assert_eq!(a.certified_at, None);
}

#[test]
fn registration_refusals() {
    fn check(overrides: serde_json::Value, expected: AgentError) {
        assert_eq!(register(spec(overrides.clone()).unwrap(), T0).unwrap_err(), expected, "{overrides}");
    }
    check(json!({"name": ""}), AgentError::BadText { field: "name", max: 200 });
    check(json!({"purpose": "a\u{0}b"}), AgentError::BadText { field: "purpose", max: 2000 });
    check(json!({"certify_every_days": 0}), AgentError::BadCertificationPeriod(0));
    check(json!({"certify_every_days": 366}), AgentError::BadCertificationPeriod(366));
    check(
        json!({"environment": "sandbox", "boundary": {"tools": ["x/y"], "environments": ["production"]}}),
        AgentError::EnvironmentEscalation { agent: "sandbox", boundary: "production" },
    );
    check(json!({"boundary": {"tools": ["x/y"], "max_depth": 9}}), AgentError::DepthTooLarge(9));
    check(
        json!({"boundary": {"tools": ["x/y"], "may_delegate_to": ["finance-close"], "max_depth": 1}}),
        AgentError::SelfDelegation("finance-close".into()),
    );
    check(json!({"boundary": {"tools": ["x/y"], "may_delegate_to": ["other"]}}), AgentError::DelegationWithoutDepth);
}

#[test]
fn malformed_specs_do_not_parse() {
    for overrides in [
        json!({"id": "Finance Close"}),
        json!({"owner": "alice"}),
        json!({"class": "robot"}),
        json!({"environment": "prod"}),
        json!({"boundary": {"tools": ["erp"]}}),
        json!({"boundary": {"tools": ["erp/*"], "unknown": 1}}),
        json!({"public_key_jwk": {"kty": "OKP", "crv": "Ed25519", "x": KEY_A, "d": KEY_A}}),
        json!({"surprise": true}),
    ] {
        assert!(spec(overrides.clone()).is_err(), "{overrides} should not parse");
    }
}

fn patch(value: serde_json::Value) -> AgentPatch {
    serde_json::from_value(value).unwrap()
}

#[test]
fn mover_rule() {
    fn check(change: serde_json::Value, expected: &[ReviewReason]) {
        let moved = apply_patch(&agent(), patch(change.clone()), T0 + Duration::hours(1)).unwrap();
        assert_eq!(moved.raised, expected, "{change}");
        assert_eq!(moved.agent.pending_review, expected, "{change}");
    }
    use ReviewReason::*;
    check(json!({"name": "Close agent"}), &[]);
    check(json!({"purpose": "Close the books"}), &[]);
    // Narrowing is not a widening.
    check(
        json!({"boundary": {"tools": ["erp/read_ledger"], "data_classes": ["financial"], "may_delegate_to": ["reconciler"], "max_depth": 1}}),
        &[],
    );
    check(
        json!({"boundary": {"tools": ["erp/*", "fx/*"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler"], "max_depth": 2}}),
        &[BoundaryChanged],
    );
    check(
        json!({"boundary": {"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial", "pii"], "may_delegate_to": ["reconciler"], "max_depth": 2}}),
        &[BoundaryChanged],
    );
    check(
        json!({"boundary": {"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler", "mailer"], "max_depth": 2}}),
        &[BoundaryChanged],
    );
    check(
        json!({"boundary": {"tools": ["erp/*", "fx/convert"], "data_classes": ["internal", "financial"], "may_delegate_to": ["reconciler"], "max_depth": 3}}),
        &[BoundaryChanged],
    );
    // The boundary follows the agent to pilot tools, which it could not reach before.
    check(json!({"environment": "pilot"}), &[BoundaryChanged, EnvironmentChanged]);
    check(json!({"public_key_jwk": key_b()}), &[KeyChanged]);
    check(json!({"owner": "user:bob@example.org"}), &[OwnerChanged]);
    check(json!({"class": "coding"}), &[ClassChanged]);
    check(json!({"owner": "user:bob@example.org", "public_key_jwk": key_b()}), &[KeyChanged, OwnerChanged]);
}

#[test]
fn a_patch_that_changes_nothing_is_not_a_version() {
    let moved = apply_patch(&agent(), patch(json!({"name": "Finance close agent"})), T0).unwrap();
    assert!(!moved.changed);
    assert_eq!(moved.agent.version, 1);
    let moved = apply_patch(&agent(), patch(json!({"name": "Other"})), T0).unwrap();
    assert_eq!(moved.agent.version, 2);
}

#[test]
fn moving_environment_takes_the_boundary_along_but_never_above_the_agent() {
    let moved = apply_patch(&agent(), patch(json!({"environment": "sandbox"})), T0).unwrap().agent;
    assert_eq!(moved.boundary.environments, vec![Environment::Sandbox]);
    let mut wide = agent();
    wide.boundary.environments = vec![Environment::Sandbox, Environment::Pilot, Environment::Production];
    let moved = apply_patch(&wide, patch(json!({"environment": "pilot"})), T0).unwrap().agent;
    assert_eq!(moved.boundary.environments, vec![Environment::Sandbox, Environment::Pilot]);
    // An explicit boundary above the agent's environment is still refused.
    let err = apply_patch(
        &agent(),
        patch(json!({"environment": "sandbox", "boundary": {"tools": ["x/y"], "environments": ["production"]}})),
        T0,
    )
    .unwrap_err();
    assert_eq!(err, AgentError::EnvironmentEscalation { agent: "sandbox", boundary: "production" });
}

#[test]
fn certify_clears_mover_reasons_only() {
    let moved = apply_patch(&agent(), patch(json!({"owner": "user:bob@example.org"})), T0).unwrap().agent;
    let settings = ReviewSettings { stale_after_days: 30 };
    let before = review(&moved, OwnerStatus::Inactive, settings, T0);
    assert_eq!(before.pending, vec![ReviewReason::OwnerChanged, ReviewReason::OwnerInactive]);
    let certified = transition(&moved, LifecycleAction::Certify, T0 + Duration::days(1)).unwrap().agent;
    let after = review(&certified, OwnerStatus::Inactive, settings, T0 + Duration::days(1));
    assert_eq!(after.pending, vec![ReviewReason::OwnerInactive], "an orphan stays an orphan until reassigned");
    assert_eq!(after.due_at, T0 + Duration::days(91));
}

#[test]
fn review_finds_overdue_stale_and_sandbox_owned_agents() {
    let a = agent();
    let settings = ReviewSettings { stale_after_days: 30 };
    let active = OwnerStatus::Active { sandbox: false };
    assert_eq!(review(&a, active, settings, T0).pending, vec![]);
    assert_eq!(review(&a, active, settings, T0 + Duration::days(31)).pending, vec![ReviewReason::Stale]);
    assert_eq!(
        review(&a, active, settings, T0 + Duration::days(91)).pending,
        vec![ReviewReason::CertificationOverdue, ReviewReason::Stale]
    );
    assert_eq!(
        review(&a, OwnerStatus::Active { sandbox: true }, settings, T0).pending,
        vec![ReviewReason::SandboxOwner]
    );
    assert_eq!(review(&a, OwnerStatus::Unknown, settings, T0).pending, vec![ReviewReason::OwnerUnknown]);
    let retired = transition(&a, LifecycleAction::Retire, T0).unwrap().agent;
    assert_eq!(review(&retired, OwnerStatus::Unknown, settings, T0 + Duration::days(400)).pending, vec![]);
}

#[test]
fn lifecycle_transitions() {
    let a = agent();
    let suspended = transition(&a, LifecycleAction::Suspend, T0).unwrap();
    assert!(suspended.changed && suspended.blocks_mandates);
    assert_eq!(suspended.agent.state, AgentState::Suspended);
    let again = transition(&suspended.agent, LifecycleAction::Suspend, T0).unwrap();
    assert!(!again.changed && !again.blocks_mandates, "suspending twice is one event");
    let resumed = transition(&suspended.agent, LifecycleAction::Resume, T0).unwrap();
    assert_eq!(resumed.agent.state, AgentState::Active);
    assert!(!resumed.blocks_mandates);
    assert_eq!(
        transition(&a, LifecycleAction::Resume, T0).unwrap_err(),
        LifecycleError::NotSuspended("finance-close".into())
    );
    let retired = transition(&suspended.agent, LifecycleAction::Retire, T0).unwrap();
    assert!(retired.blocks_mandates);
    for action in [LifecycleAction::Resume, LifecycleAction::Suspend, LifecycleAction::Retire, LifecycleAction::Certify]
    {
        assert_eq!(
            transition(&retired.agent, action, T0).unwrap_err(),
            LifecycleError::Retired("finance-close".into()),
            "{action:?} after retire"
        );
    }
}
