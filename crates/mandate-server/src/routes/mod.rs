//! HTTP handlers. Each parses its input, calls one operation, and shapes the answer; none decides.

pub mod agents;
pub mod audit;
pub mod decisions;
pub mod gateway;
pub mod humans;
pub mod intents;
pub mod mandates;
pub mod review;
pub mod system;

use crate::error::ApiError;
use mandate_core::id::{AgentId, HumanId};

/// An agent id from a path segment.
pub(crate) fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    AgentId::parse(raw).map_err(|e| ApiError::bad_request("request.invalid_agent_id", e.to_string()))
}

/// A human id from a path segment.
pub(crate) fn human_id(raw: &str) -> Result<HumanId, ApiError> {
    HumanId::parse(raw).map_err(|e| ApiError::bad_request("request.invalid_human_id", e.to_string()))
}
