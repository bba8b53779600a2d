//! Names of things: agent ids, humans, principals, trust domains and SPIFFE ids.
//!
//! Every name is a newtype built only through `parse`, so a value of one of these types is always
//! well-formed; handlers and the store never re-check them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// An agent id that is not a slug.
    #[error("agent id `{0}` must be 2-63 characters of lower-case letters, digits and single hyphens, starting with a letter and not ending with a hyphen")]
    AgentId(String),
    /// A human id that is not an email-like `local@domain`.
    #[error("human id `{0}` must look like `name@domain` (lower-case letters, digits and `.`, `_`, `-`, `+`)")]
    HumanId(String),
    /// A principal that is not `user:<human id>`.
    #[error("principal `{0}` must be `user:<name@domain>`")]
    Principal(String),
    /// A trust domain that is not a DNS name.
    #[error("trust domain `{0}` must be a lower-case DNS name such as `example.org`")]
    TrustDomain(String),
    /// A group name with characters we do not accept.
    #[error("group `{0}` must be 1-64 characters of lower-case letters, digits and `.`, `_`, `-`")]
    Group(String),
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                String::schema()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

/// An agent's id: a slug such as `finance-close`, unique in the registry and part of its SPIFFE id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(String);
string_newtype!(AgentId);

impl AgentId {
    /// Parses a slug: 2-63 of `[a-z0-9-]`, a letter first, no trailing or doubled hyphen.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        let ok = (2..=63).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
            && !s.ends_with('-')
            && !s.contains("--");
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::AgentId(s.to_owned()))
        }
    }
}

/// A human's id inside the trust domain's IdP, such as `alice@example.org`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanId(String);
string_newtype!(HumanId);

impl HumanId {
    /// Parses `local@domain`; lower-case only, so one person has one spelling.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let local_ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 64
                && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-+".contains(&b))
        };
        let ok = s.len() <= 254
            && match s.split_once('@') {
                Some((local, domain)) => local_ok(local) && is_dns_name(domain),
                None => false,
            };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::HumanId(s.to_owned()))
        }
    }

    /// The principal naming this human: `user:<id>`.
    pub fn principal(&self) -> Principal {
        Principal(format!("user:{}", self.0))
    }
}

/// A human principal as it appears in owners, grants and the ledger: `user:alice@example.org`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal(String);
string_newtype!(Principal);

impl Principal {
    /// Parses `user:<human id>`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        match s.strip_prefix("user:").map(HumanId::parse) {
            Some(Ok(_)) => Ok(Self(s.to_owned())),
            _ => Err(IdError::Principal(s.to_owned())),
        }
    }

    /// The human this principal names.
    pub fn human(&self) -> HumanId {
        // INVARIANT: `parse` and `HumanId::principal` only build `user:` followed by a valid human id.
        HumanId(self.0["user:".len()..].to_owned())
    }
}

/// The organisation's name space, such as `example.org`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TrustDomain(String);
string_newtype!(TrustDomain);

impl TrustDomain {
    /// Parses a lower-case DNS name.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if is_dns_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::TrustDomain(s.to_owned()))
        }
    }

    /// The SPIFFE id of an agent in this domain: `spiffe://<domain>/agent/<id>`.
    pub fn agent_spiffe_id(&self, agent: &AgentId) -> String {
        format!("spiffe://{}/agent/{}", self.0, agent.0)
    }
}

/// A group a human belongs to in the IdP, such as `finance`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group(String);
string_newtype!(Group);

impl Group {
    /// Parses a group name.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Group(s.to_owned()))
        }
    }
}

fn is_dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn check_agent(input: &str, ok: bool) {
        assert_eq!(AgentId::parse(input).is_ok(), ok, "agent id `{input}`");
    }

    #[test]
    fn agent_ids_are_slugs() {
        for good in ["finance-close", "ab", "r2-d2", "a0"] {
            check_agent(good, true);
        }
        let long = "a".repeat(64);
        for bad in ["", "a", "Finance", "-a", "a-", "a--b", "1abc", "a_b", "a/b", "a.b", "ä-b", long.as_str()] {
            check_agent(bad, false);
        }
    }

    #[test]
    fn humans_and_principals() {
        let alice = HumanId::parse("alice@example.org").expect("valid");
        assert_eq!(alice.principal().as_str(), "user:alice@example.org");
        assert_eq!(Principal::parse("user:alice@example.org").map(|p| p.human()), Ok(alice));
        for bad in ["alice", "Alice@example.org", "alice@localhost", "@example.org", "a b@example.org"] {
            assert!(HumanId::parse(bad).is_err(), "human id `{bad}`");
        }
        for bad in ["alice@example.org", "agent:alice@example.org", "user:", "user:Alice@example.org"] {
            assert!(Principal::parse(bad).is_err(), "principal `{bad}`");
        }
    }

    #[test]
    fn spiffe_ids_come_from_the_trust_domain() {
        let domain = TrustDomain::parse("example.org").expect("valid");
        let agent = AgentId::parse("finance-close").expect("valid");
        assert_eq!(domain.agent_spiffe_id(&agent), "spiffe://example.org/agent/finance-close");
        for bad in ["Example.org", "example", "-a.org", "a..org", "a_b.org"] {
            assert!(TrustDomain::parse(bad).is_err(), "trust domain `{bad}`");
        }
    }
}
