//! Mandate's decision engine: the one place that decides.
//!
//! The HTTP API, the MCP gateway and the console are front doors onto it; none of them decides
//! anything itself. The engine holds the registry's caches, issues and exchanges mandates, verifies
//! what an agent presents, revokes, counts budgets, scores behaviour, keeps the tool catalogue and the
//! active policy set, opens and uses approvals, and records every outcome in the ledger.
//!
//! # Architecture invariants
//!
//! - No HTTP: no axum, hyper or `http` type appears here (`cargo tree -p mandate-engine` shows none).
//!   Errors are [`error::Error`] values with a kind and a stable code; a front door maps the kind to
//!   its own status.
//! - One entry point decides a tool call: [`Engine::decide`], over a typed [`decision::Presented`]
//!   credential (token, proof, and the proof binding the caller expects) and a typed
//!   [`decision::Call`] (tool, canonical arguments, resource, approval id). One
//!   [`Engine::verify_presented`] verifies a mandate and its proof for decisions, for token exchange
//!   and for the gateway alike.
//! - Fail closed: any failure inside a decision is a deny with a reason; an allow is returned only
//!   once its decision event is durable.
//! - Revocation cannot fail open: the in-memory revocation set changes before the revocation is
//!   committed, in one step that no cancellation can split, and no cache holds revocation state.
#![forbid(unsafe_code)]

pub mod admission;
pub mod approvals;
pub mod behaviour;
pub mod budget;
pub mod caller;
pub mod catalogue;
pub mod clock;
pub mod decision;
pub mod discovery;
pub mod engine;
pub mod error;
pub mod expiry;
pub mod feed;
pub mod intents;
pub mod keys;
pub mod ledger;
pub mod mandates;
pub mod metrics;
pub mod oidc;
pub mod pins;
pub mod policy;
pub mod refusals;
pub mod registry;
pub mod replay;

pub use engine::{Engine, Settings};
pub use error::{Error, ErrorKind};
