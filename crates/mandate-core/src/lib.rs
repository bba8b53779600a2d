//! Mandate's domain core: who the actors are, what an agent may ever do, and the rules of its lifecycle.
//!
//! Architecture invariant: this crate does no I/O. It never reads the clock, the environment, the
//! random number generator or the disk; time, keys and bytes arrive as arguments. Everything here is
//! therefore deterministic and tested without a runtime.
#![forbid(unsafe_code)]

pub mod agent;
pub mod arguments;
pub mod event;
pub mod human;
pub mod id;
pub mod jose;
pub mod jwk;
pub mod ledger;
pub mod lifecycle;
pub mod mandate;
pub mod oidc;
pub mod pattern;
