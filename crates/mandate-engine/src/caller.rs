//! Who asks the engine for something: the administrator credential or a human, and what each may do.
//!
//! How a caller proves who they are is the front door's business (the HTTP API reads bearer API keys
//! and OIDC ID tokens); the engine decides what an authenticated caller may do, in [`Caller`]'s
//! methods, next to the roles they read.

use crate::error::Error;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use mandate_core::agent::Agent;
use mandate_core::human::{Human, Role};
use rand_core::{OsRng, RngCore};

/// The prefix of every Mandate API key, so that secret scanners can find leaked ones.
pub const API_KEY_PREFIX: &str = "mnd_";

/// A fresh API key: the prefix and 32 random bytes in base64url.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The bootstrap administrator credential.
    Admin,
    /// A human, with an API key or an OIDC ID token.
    Human(Human),
}

impl Caller {
    /// The caller as written in the ledger: `admin` or `user:<id>`.
    pub fn principal(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::Human(h) => h.principal.to_string(),
        }
    }

    /// Whether the caller holds `role`; the administrator credential holds every role.
    pub fn has_role(&self, role: Role) -> bool {
        match self {
            Self::Admin => true,
            Self::Human(h) => h.has_role(role),
        }
    }

    /// Whether the caller is `agent`'s accountable owner.
    pub fn owns(&self, agent: &Agent) -> bool {
        matches!(self, Self::Human(h) if h.principal == agent.owner)
    }

    /// Whether the caller may read every agent, human and event (admins, auditors, approvers).
    pub fn reads_everything(&self) -> bool {
        self.has_role(Role::Admin) || self.has_role(Role::Auditor) || self.has_role(Role::Approver)
    }

    /// Refuses unless the caller is an administrator.
    pub fn require_admin(&self, action: &str) -> Result<(), Error> {
        if self.has_role(Role::Admin) {
            Ok(())
        } else {
            Err(Error::forbidden(format!("{action} needs the `admin` role")))
        }
    }

    /// Refuses unless the caller is an administrator or owns `agent`.
    pub fn require_admin_or_owner(&self, action: &str, agent: &Agent) -> Result<(), Error> {
        if self.has_role(Role::Admin) || self.owns(agent) {
            Ok(())
        } else {
            Err(Error::forbidden(format!("{action} needs the `admin` role or ownership of agent `{}`", agent.id)))
        }
    }

    /// Refuses unless the caller may read everything or owns `agent`.
    pub fn require_reader_of(&self, agent: &Agent) -> Result<(), Error> {
        if self.reads_everything() || self.owns(agent) {
            Ok(())
        } else {
            // Not 404: the caller is authenticated, and agent ids are not secrets.
            Err(Error::forbidden(format!("agent `{}` is not yours to read", agent.id)))
        }
    }
}
