//! Human principals: who they are, which groups and roles they hold, and whether they are still here.
//!
//! Roles are global (`admin`, `approver`, `auditor`); being the `owner` of an agent is a relation read
//! from the registry, not a role a human holds.

use crate::id::{Group, HumanId, Principal};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A global role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the registry, the policies and the keys.
    Admin,
    /// Approves held actions.
    Approver,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// The name used in JSON and policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
        }
    }
}

/// What an administrator sends to create a development human (`POST /v1/humans`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanSpec {
    /// The human's id, `name@domain`.
    #[schema(value_type = String, example = "alice@example.org")]
    pub id: HumanId,
    /// IdP groups.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["finance"]))]
    pub groups: Vec<Group>,
    /// Global roles.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// A sandbox identity (a test or experiment account), which should never own a production agent.
    #[serde(default)]
    pub sandbox: bool,
}

/// A human as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Human {
    /// The human's id.
    #[schema(value_type = String)]
    pub id: HumanId,
    /// `user:<id>`.
    #[schema(value_type = String)]
    pub principal: Principal,
    /// IdP groups.
    #[schema(value_type = Vec<String>)]
    pub groups: Vec<Group>,
    /// Global roles.
    pub roles: Vec<Role>,
    /// A sandbox identity.
    pub sandbox: bool,
    /// False once deactivated (a leaver); the human's credentials stop working.
    pub active: bool,
    /// When the human was created.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl Human {
    /// Builds a new, active human from its spec.
    pub fn new(spec: HumanSpec, now: OffsetDateTime) -> Self {
        let mut groups = spec.groups;
        groups.sort();
        groups.dedup();
        let mut roles = spec.roles;
        roles.sort();
        roles.dedup();
        Self {
            principal: spec.id.principal(),
            id: spec.id,
            groups,
            roles,
            sandbox: spec.sandbox,
            active: true,
            created_at: now,
        }
    }

    /// Whether the human holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}
