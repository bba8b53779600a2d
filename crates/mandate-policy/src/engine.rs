//! What is built once per process: the parsed schema (inside a Cedar validator), the authorizer, and
//! the entity type names and action ids of the `Mandate` namespace.
//!
//! The schema is a compile-time constant, so parsing it once and sharing the result is a cache, not
//! global state. Should it ever fail to parse (a broken edit of `schema/mandate.cedarschema`, caught
//! by the tests), nothing panics: every policy set is refused and every decision denies, each with
//! the schema's error.

use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy as cedar;

use crate::SCHEMA;

/// The Cedar machinery shared by every policy set and every decision.
pub(crate) struct Engine {
    /// Holds the parsed schema; policy sets are validated with it and requests checked against it.
    pub(crate) validator: cedar::Validator,
    pub(crate) authorizer: cedar::Authorizer,
    pub(crate) names: Names,
    /// The entities of recent `call` requests.
    pub(crate) call_entities: crate::facts::CallEntitiesCache,
}

/// The entity types and actions of the schema, parsed once.
pub(crate) struct Names {
    pub(crate) group: cedar::EntityTypeName,
    pub(crate) human: cedar::EntityTypeName,
    pub(crate) agent: cedar::EntityTypeName,
    pub(crate) server: cedar::EntityTypeName,
    pub(crate) tool: cedar::EntityTypeName,
    pub(crate) grant: cedar::EntityUid,
    pub(crate) call: cedar::EntityUid,
    pub(crate) approve: cedar::EntityUid,
}

impl Names {
    /// The uid of the entity of type `ty` with id `id`. Any string is a valid Cedar entity id, so
    /// this cannot fail, whatever the caller's facts contain.
    pub(crate) fn uid(ty: &cedar::EntityTypeName, id: &str) -> cedar::EntityUid {
        cedar::EntityUid::from_type_name_and_id(ty.clone(), cedar::EntityId::new(id))
    }
}

/// A Cedar policy id as text.
pub(crate) fn policy_id(id: &cedar::PolicyId) -> &str {
    id.as_ref()
}

static ENGINE: LazyLock<Result<Engine, String>> = LazyLock::new(Engine::build);

/// The process-wide engine, or the reason the shipped schema could not be loaded.
pub(crate) fn engine() -> Result<&'static Engine, &'static str> {
    ENGINE.as_ref().map_err(String::as_str)
}

impl Engine {
    fn build() -> Result<Self, String> {
        let (schema, _warnings) = cedar::Schema::from_cedarschema_str(SCHEMA)
            .map_err(|e| format!("the shipped schema does not parse: {}", crate::facts::detail(&e)))?;
        let ty = |name: &str| {
            cedar::EntityTypeName::from_str(name).map_err(|e| format!("entity type `{name}` does not parse: {e}"))
        };
        let action_type = ty("Mandate::Action")?;
        let action = |id: &str| Names::uid(&action_type, id);
        let names = Names {
            group: ty("Mandate::Group")?,
            human: ty("Mandate::Human")?,
            agent: ty("Mandate::Agent")?,
            server: ty("Mandate::Server")?,
            tool: ty("Mandate::Tool")?,
            grant: action("grant"),
            call: action("call"),
            approve: action("approve"),
        };
        Ok(Self {
            validator: cedar::Validator::new(schema),
            authorizer: cedar::Authorizer::new(),
            names,
            call_entities: crate::memo::Memo::new(crate::facts::CALL_ENTITIES_CAPACITY),
        })
    }

    /// The parsed schema.
    pub(crate) fn schema(&self) -> &cedar::Schema {
        self.validator.schema()
    }

    /// The schema each request's entities and context are checked against: in this crate's tests,
    /// none in production. The shapes are fixed by the code of `facts.rs`, never by the caller's
    /// data (ids and values are opaque strings, numbers and booleans), and the tests build every
    /// kind of request with the check on and fail on any error. Checking again on every decision
    /// would double its cost: measured at about 100 µs with the checks and 40 µs without.
    /// Should a shape ever drift from the schema anyway, evaluation fails on it, and errors deny
    /// (see `decision.rs`).
    pub(crate) fn request_schema(&self) -> Option<&cedar::Schema> {
        if cfg!(test) {
            Some(self.schema())
        } else {
            None
        }
    }
}
