//! Humans who present an OpenID Connect ID token from the organisation's IdP instead of an API key.
//!
//! The checks themselves are `mandate_core::oidc`'s; this module holds what the server adds: the
//! configured issuer, its keys (swappable while running, so an operator can hand over a rotated JWKS
//! without a restart), the mapping from IdP groups to Mandate roles, and the rule that merges a token's
//! human with the registry's.
//!
//! **Where the keys come from.** Only from a JWKS file the operator configures (`[oidc] jwks_file`),
//! read by the CLI at start and on SIGHUP. The server never fetches the issuer's discovery document
//! or JWKS: no outbound network from the authentication path, so an attacker who can influence DNS or
//! the IdP's URL cannot hand us keys, and a slow IdP cannot stall requests. Rejected: fetching with a
//! cache, which is what most OIDC relying parties do, because it needs a network policy, a fetch
//! timeout, and a rule for refetching on an unknown `kid` that cannot be abused to make us hammer the
//! IdP; an operator's file is simpler and auditable.
//!
//! **Merging with the registry.** The IdP is the source of truth for who the human is and which groups
//! they are in today: the token's groups replace the registry's, so leaving a group at the IdP takes
//! effect with the next ID token. Roles are Mandate's own (`admin`, `approver`, `auditor`): a human
//! holds the registry's roles and the ones the mapping gives their token's groups. A human the registry
//! knows and has deactivated is refused, whatever the IdP says (a leaver stays out). A human the
//! registry does not know is accepted just in time, as the token describes them, and is not stored.

use mandate_core::human::{Human, HumanSpec, Role};
use mandate_core::id::Group;
use mandate_core::oidc::{verify_id_token, IssuerKeys, OidcError, OidcIdentity, OidcSettings};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

/// The configured OIDC issuer, as validated at start (see the CLI's `[oidc]` section).
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer, audience, claims and skew ID tokens are checked against.
    pub settings: OidcSettings,
    /// The issuer's keys, read from `jwks_file` at start.
    pub keys: IssuerKeys,
    /// The JWKS file the keys came from; replacing it and sending SIGHUP reloads them.
    pub jwks_file: PathBuf,
    /// IdP groups that give a Mandate role: a human in any group listed for a role holds that role.
    pub roles: BTreeMap<Role, Vec<Group>>,
}

/// Verifies ID tokens for the configured issuer and turns them into humans.
#[derive(Debug)]
pub struct OidcAuthenticator {
    settings: OidcSettings,
    jwks_file: PathBuf,
    roles: BTreeMap<Role, Vec<Group>>,
    keys: RwLock<Arc<IssuerKeys>>,
}

impl OidcAuthenticator {
    /// An authenticator over `config`'s keys.
    pub fn new(config: OidcConfig) -> Self {
        Self {
            settings: config.settings,
            jwks_file: config.jwks_file,
            roles: config.roles,
            keys: RwLock::new(Arc::new(config.keys)),
        }
    }

    /// The JWKS file the keys are read from.
    pub fn jwks_file(&self) -> &Path {
        &self.jwks_file
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Replaces the issuer's keys (after the operator replaced the JWKS file). Requests already
    /// verifying finish with the keys they started with.
    pub fn replace_keys(&self, keys: IssuerKeys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// The keys in use.
    pub fn keys(&self) -> Arc<IssuerKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Verifies `token` at `now` (unix seconds) against the current keys.
    pub fn verify(&self, token: &str, now: i64) -> Result<OidcIdentity, OidcError> {
        verify_id_token(token, &self.keys(), &self.settings, now)
    }

    /// The roles the mapping gives to `groups`, sorted.
    pub fn mapped_roles(&self, groups: &[Group]) -> Vec<Role> {
        self.roles
            .iter()
            .filter(|(_, mapped)| mapped.iter().any(|group| groups.contains(group)))
            .map(|(role, _)| *role)
            .collect()
    }

    /// The human a verified token stands for, given what the registry holds for that id: `None` when
    /// the registry has a deactivated human of that id (the caller refuses), otherwise the merged
    /// human (see the module documentation). `now` is the creation time of a human the registry does
    /// not know.
    pub fn human(&self, identity: OidcIdentity, registered: Option<Human>, now: OffsetDateTime) -> Option<Human> {
        let mapped = self.mapped_roles(&identity.groups);
        match registered {
            Some(human) if !human.active => None,
            Some(human) => {
                let mut roles = human.roles;
                roles.extend(mapped);
                roles.sort();
                roles.dedup();
                Some(Human { groups: identity.groups, roles, ..human })
            }
            None => Some(Human::new(
                HumanSpec { id: identity.human, groups: identity.groups, roles: mapped, sandbox: false },
                now,
            )),
        }
    }
}
