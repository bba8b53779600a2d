//! Tool, resource and data-class patterns: parsing, matching and the subset test.
//!
//! An agent's boundary and a mandate's scope are sets of patterns, and two questions are asked of
//! them. Does a pattern *match* a concrete tool, resource or data class (runtime authorization)? Is
//! one pattern a *subset* of another (a grant must stay inside the agent's boundary, a child mandate
//! inside its parent)? Every type here is built only by its `parse`, so an invalid pattern cannot
//! exist, not even after deserialization.
//!
//! A tool is `server/tool`. The server segment is `[a-z0-9][a-z0-9_-]{0,63}`; the tool segment uses
//! the characters of MCP tool names, `[A-Za-z0-9_.-]`, 1 to 128 of them. A tool pattern has the same
//! two segments, each a literal, `*` or `prefix*`, and no star anywhere else. A literal matches only
//! itself. `prefix*` matches a segment that starts with `prefix` and has at least one more character;
//! `*` is the empty prefix, so it matches any segment. A star never matches the empty string and
//! never crosses the `/`. `*/*` matches every tool; a bare `*` is refused so that nobody writes it
//! believing it means something narrower.
//!
//! A resource is a URI such as `erp://ledger/2026-10/ap`, at most 1024 bytes. Before anything is
//! compared, resources and resource patterns are normalised, so that one resource has one spelling
//! and no trick reaches the matcher: the scheme (`[a-z][a-z0-9+.-]*`) and the authority are
//! lower-cased, percent-encoded unreserved characters (RFC 3986 section 2.3) are decoded, and
//! everything whose meaning could differ between Mandate and the tool server is refused rather than
//! repaired: any other percent-encoding (`%2F`, `%5C`, `%25`, `%00`, non-ASCII), non-ASCII or control
//! characters, whitespace, `\`, `?`, `#`, user information (`@`) in the authority, an empty authority,
//! empty path segments (`//` or a trailing `/`) and the dot segments `.` and `..` of RFC 3986
//! section 5.2.4, also when percent-encoded. The path stays case-sensitive. A resource pattern is a
//! normalised resource with an optional single `*` as its very last character, meaning "this prefix
//! followed by at least one more character". In the path the star crosses `/`: end the prefix with
//! `/` to scope a directory, because `erp://ledger/a*` also matches `erp://ledger/a-archive/x`. A star
//! never crosses the end of the authority: in `erp://led*` (or `erp://*`) it stands for the rest of an
//! authority and nothing after it, so `erp://led*` matches `erp://ledger` but neither
//! `erp://ledger/x` nor `erp://ledger.evil/x`, and a pattern can never reach a host its author did not
//! name. To scope a host's resources, name the host: `erp://ledger/*`.
//!
//! A data class is a name, `[a-z][a-z0-9_-]{0,31}`, and matches only itself.
//!
//! The subset test for one pattern, `a.is_subset_of(&b)`, asks whether everything `a` matches is
//! matched by `b`. Because a star matches at least one character, it reduces to string comparisons: a
//! literal is a subset of `b` when `b` matches it; `p*` is a subset of `q*` when `p` starts with `q`;
//! `p*` is never a subset of a literal. A tool pattern is a subset when both its segments are. For
//! single patterns this is exact. For sets ([`PatternSet`]) the rule is that every element of `A` is
//! a subset of *some single* element of `B`. That is sound, since each element of `A` is covered, but
//! not complete: `erp/r*` is covered by the 130 patterns `erp/rX` and `erp/rX*`, one pair for each
//! character `X` a tool name may contain, together and by none of them alone, and the rule answers
//! "not a subset". That is the fail-safe direction: "not a subset"
//! means "widening", so the request is refused and a person can rewrite it; a widening is never let
//! through.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// The longest resource or resource pattern accepted, in bytes, before normalisation.
pub const MAX_RESOURCE_LEN: usize = 1024;

/// Why a tool name, pattern, resource or data class was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// A tool name without exactly one `/`.
    #[error("tool `{0}` must have the form `server/tool`")]
    ToolShape(String),
    /// A tool pattern without exactly one `/`.
    #[error("tool pattern `{0}` must have the form `server/tool`")]
    ToolPatternShape(String),
    /// The tool pattern `*`, which has no server segment.
    #[error("tool pattern `*` must name a server: write `*/*` for every tool of every server")]
    BareStar,
    /// One segment of a tool name or pattern is empty.
    #[error("the {segment} segment of `{input}` is empty")]
    EmptySegment { input: String, segment: Segment },
    /// One segment of a tool name or pattern is too long.
    #[error("the {segment} segment of `{input}` is longer than {max} characters")]
    SegmentTooLong { input: String, segment: Segment, max: usize },
    /// A character outside the segment's alphabet, including `*` in an exact tool name.
    #[error(
        "the {segment} segment of `{}` contains `{}`, which is not allowed (use {})",
        .input.escape_default(), .found.escape_default(), .segment.alphabet()
    )]
    SegmentChar { input: String, segment: Segment, found: char },
    /// A server segment that starts with `_` or `-`.
    #[error("the server segment of `{0}` must start with a lower-case letter or a digit")]
    ServerStart(String),
    /// A `*` in a tool pattern that does not end its segment, or a `**`.
    #[error("tool pattern `{0}` has a `*` that does not end its segment: only `*` and `prefix*` are supported")]
    MisplacedStar(String),
    /// A resource longer than [`MAX_RESOURCE_LEN`].
    #[error("resource is {len} bytes long, more than the maximum of {MAX_RESOURCE_LEN}")]
    ResourceTooLong { len: usize },
    /// A character that no resource may contain.
    #[error(
        "resource `{}` contains `{}`, which is not allowed: non-ASCII and control characters, \
         whitespace, `\\`, `?`, `#` and characters outside RFC 3986 are refused",
        .input.escape_default(), .found.escape_default()
    )]
    ResourceChar { input: String, found: char },
    /// A resource without `://`.
    #[error("resource `{0}` must have the form `scheme://authority/path`")]
    ResourceShape(String),
    /// A scheme outside `[a-z][a-z0-9+.-]*` (case-insensitively).
    #[error("resource `{0}` has an invalid scheme: it must start with a letter and contain only letters, digits, `+`, `-` and `.`")]
    ResourceScheme(String),
    /// A `%` not followed by two hexadecimal digits.
    #[error("resource `{0}` contains a `%` that is not followed by two hexadecimal digits")]
    ResourceBadPercent(String),
    /// A percent-encoding of anything but an unreserved character.
    #[error("resource `{input}` contains the percent-encoding `{escape}`: only letters, digits, `-`, `.`, `_` and `~` may be percent-encoded")]
    ResourcePercent { input: String, escape: String },
    /// A resource without an authority, such as `erp:///x`.
    #[error("resource `{0}` has an empty authority")]
    ResourceEmptyAuthority(String),
    /// An `@` in the authority.
    #[error("resource `{0}` has user information (`@`) in its authority, which is refused")]
    ResourceUserinfo(String),
    /// An authority that is not `host` or `host:port` (a port of digits up to 65535), or a host that
    /// URL parsers read differently: a trailing dot, or numbers that are not a dotted-quad IPv4
    /// address in its one canonical spelling.
    #[error("resource `{0}` has an authority that is not `host` or `host:port` with a numeric port, or a host that is spelled so URL parsers may read another (a trailing `.`, or an IPv4 address not written as four decimal numbers)")]
    ResourceAuthority(String),
    /// An empty path segment: `//` or a trailing `/`.
    #[error("resource `{0}` contains an empty path segment (`//` or a trailing `/`)")]
    ResourceEmptySegment(String),
    /// A `.` or `..` path segment, also when percent-encoded.
    #[error("resource `{0}` contains a `.` or `..` path segment")]
    ResourceDotSegment(String),
    /// A `*` in an exact resource.
    #[error("resource `{0}` is exact and cannot contain `*`")]
    ResourceStar(String),
    /// A `*` in a resource pattern that is not its last character.
    #[error("resource pattern `{0}` has a `*` that is not its last character")]
    ResourceMisplacedStar(String),
    /// A data class outside `[a-z][a-z0-9_-]{0,31}`.
    #[error("data class `{0}` must start with a lower-case letter and have at most 32 lower-case letters, digits, `_` or `-`")]
    DataClass(String),
}

/// Which half of a tool name a [`PatternError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The MCP server, before the `/`.
    Server,
    /// The tool on that server, after the `/`.
    Tool,
}

impl Segment {
    fn max_len(self) -> usize {
        match self {
            Segment::Server => 64,
            Segment::Tool => 128,
        }
    }

    fn allows(self, c: char) -> bool {
        match self {
            Segment::Server => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-',
            Segment::Tool => c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'),
        }
    }

    fn alphabet(self) -> &'static str {
        match self {
            Segment::Server => "`a-z`, `0-9`, `_` and `-`",
            Segment::Tool => "`A-Z`, `a-z`, `0-9`, `_`, `.` and `-`",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Server => "server",
            Segment::Tool => "tool",
        })
    }
}

/// Something that matches values of type `Target` and can be compared with its own kind.
pub trait Pattern: Sized {
    /// What the pattern matches.
    type Target;
    /// Parses and validates one pattern.
    fn parse(input: &str) -> Result<Self, PatternError>;
    /// Whether `target` is one of the values the pattern stands for.
    fn matches(&self, target: &Self::Target) -> bool;
    /// Whether every value `self` matches is matched by `other`; never true when unsure.
    fn is_subset_of(&self, other: &Self) -> bool;
}

/// An exact tool, `server/tool`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolName {
    text: String,
}

impl ToolName {
    /// Parses `server/tool`.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let (server, tool) = split_tool(input).ok_or_else(|| PatternError::ToolShape(input.to_owned()))?;
        parse_segment(input, server, Segment::Server, false)?;
        parse_segment(input, tool, Segment::Tool, false)?;
        Ok(ToolName { text: input.to_owned() })
    }

    /// The MCP server, before the `/`.
    pub fn server(&self) -> &str {
        // INVARIANT: `parse` checked that the text has exactly one `/`.
        self.text.split_once('/').map_or("", |(server, _)| server)
    }

    /// The tool on that server, after the `/`.
    pub fn tool(&self) -> &str {
        // INVARIANT: `parse` checked that the text has exactly one `/`.
        self.text.split_once('/').map_or("", |(_, tool)| tool)
    }
}

/// A pattern over tools: `server/tool` where each segment is a literal, `*` or `prefix*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolPattern {
    text: String,
    server: Glob,
    tool: Glob,
}

impl ToolPattern {
    /// Parses a tool pattern such as `erp/*`, `erp/read_*` or `*/*`.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        if input == "*" {
            return Err(PatternError::BareStar);
        }
        let (server, tool) = split_tool(input).ok_or_else(|| PatternError::ToolPatternShape(input.to_owned()))?;
        Ok(ToolPattern {
            text: input.to_owned(),
            server: parse_segment(input, server, Segment::Server, true)?,
            tool: parse_segment(input, tool, Segment::Tool, true)?,
        })
    }

    /// Whether `name` is one of the tools this pattern stands for.
    pub fn matches(&self, name: &ToolName) -> bool {
        self.server.matches(name.server()) && self.tool.matches(name.tool())
    }

    /// Whether every tool `self` matches is matched by `other`. Exact: both segments are non-empty
    /// sets, so the product is a subset exactly when each segment is.
    pub fn is_subset_of(&self, other: &ToolPattern) -> bool {
        self.server.is_subset_of(&other.server) && self.tool.is_subset_of(&other.tool)
    }
}

/// An exact resource, normalised as the module documentation describes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceUri {
    text: String,
}

impl ResourceUri {
    /// Parses and normalises a resource such as `erp://ledger/2026-10/ap`.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let glob = normalise_resource(input, false)?;
        Ok(ResourceUri { text: glob.prefix })
    }
}

/// A normalised resource with an optional trailing `*`: the prefix followed by at least one more
/// character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourcePattern {
    text: String,
    glob: Glob,
}

impl ResourcePattern {
    /// Parses and normalises a resource pattern such as `erp://ledger/2026-10/*`.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let glob = normalise_resource(input, true)?;
        let star = if glob.star { "*" } else { "" };
        Ok(ResourcePattern { text: format!("{}{star}", glob.prefix), glob })
    }

    /// Whether `resource` is one of the resources this pattern stands for.
    pub fn matches(&self, resource: &ResourceUri) -> bool {
        self.glob.matches(&resource.text)
    }

    /// Whether every resource `self` matches is matched by `other`.
    pub fn is_subset_of(&self, other: &ResourcePattern) -> bool {
        self.glob.is_subset_of(&other.glob)
    }
}

/// A data class such as `financial`; it matches only itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DataClass {
    text: String,
}

impl DataClass {
    /// Parses a data class name.
    pub fn parse(input: &str) -> Result<Self, PatternError> {
        let mut chars = input.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !first_ok || !rest_ok || input.len() > 32 {
            return Err(PatternError::DataClass(input.to_owned()));
        }
        Ok(DataClass { text: input.to_owned() })
    }
}

/// A deduplicated set of patterns, kept in the order first given.
///
/// It matches a value when any element does. `A.is_subset_of(&B)` holds when every element of `A`
/// is a subset of some single element of `B`: sound, but not complete for unions (see the module
/// documentation), so when unsure it answers "not a subset", which refuses the widening.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PatternSet<P> {
    items: Vec<P>,
}

/// The tools of a boundary or a mandate.
pub type ToolPatterns = PatternSet<ToolPattern>;
/// The resources of a mandate.
pub type ResourcePatterns = PatternSet<ResourcePattern>;
/// The data classes of a boundary or a mandate.
pub type DataClasses = PatternSet<DataClass>;

impl<P: Pattern + PartialEq> PatternSet<P> {
    /// Builds a set, dropping repeated elements.
    pub fn new(items: impl IntoIterator<Item = P>) -> Self {
        let mut set = PatternSet { items: Vec::new() };
        for item in items {
            if !set.items.contains(&item) {
                set.items.push(item);
            }
        }
        set
    }

    /// Parses every element; the first invalid one is the error.
    pub fn parse<S: AsRef<str>>(inputs: impl IntoIterator<Item = S>) -> Result<Self, PatternError> {
        let items = inputs.into_iter().map(|s| P::parse(s.as_ref()));
        Ok(Self::new(items.collect::<Result<Vec<_>, _>>()?))
    }

    /// Whether any element matches `target`.
    pub fn matches(&self, target: &P::Target) -> bool {
        self.items.iter().any(|p| p.matches(target))
    }

    /// Whether every element of `self` is a subset of some element of `other`.
    pub fn is_subset_of(&self, other: &Self) -> bool {
        self.items.iter().all(|a| other.items.iter().any(|b| a.is_subset_of(b)))
    }
}

impl<P> PatternSet<P> {
    /// The elements, in the order first given.
    pub fn as_slice(&self) -> &[P] {
        &self.items
    }

    /// Iterates over the elements.
    pub fn iter(&self) -> std::slice::Iter<'_, P> {
        self.items.iter()
    }

    /// The number of distinct elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the set is empty; an empty set matches nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<P> Default for PatternSet<P> {
    fn default() -> Self {
        PatternSet { items: Vec::new() }
    }
}

impl<P: Pattern + PartialEq> FromIterator<P> for PatternSet<P> {
    fn from_iter<I: IntoIterator<Item = P>>(iter: I) -> Self {
        Self::new(iter)
    }
}

impl<'a, P> IntoIterator for &'a PatternSet<P> {
    type Item = &'a P;
    type IntoIter = std::slice::Iter<'a, P>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<P: Serialize> Serialize for PatternSet<P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(serializer)
    }
}

impl<'de, P: Pattern + PartialEq + Deserialize<'de>> Deserialize<'de> for PatternSet<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<P>::deserialize(deserializer).map(Self::new)
    }
}

impl<P: utoipa::PartialSchema> utoipa::PartialSchema for PatternSet<P> {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new().items(P::schema()).into()
    }
}

impl<P: utoipa::ToSchema> utoipa::ToSchema for PatternSet<P> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("{}Set", P::name()))
    }
}

/// Whether every element of `a` is in `b`, for plain sets such as agent ids.
pub fn is_subset<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    a.iter().all(|x| b.contains(x))
}

impl Pattern for ToolPattern {
    type Target = ToolName;
    fn parse(input: &str) -> Result<Self, PatternError> {
        ToolPattern::parse(input)
    }
    fn matches(&self, target: &ToolName) -> bool {
        ToolPattern::matches(self, target)
    }
    fn is_subset_of(&self, other: &Self) -> bool {
        ToolPattern::is_subset_of(self, other)
    }
}

impl Pattern for ResourcePattern {
    type Target = ResourceUri;
    fn parse(input: &str) -> Result<Self, PatternError> {
        ResourcePattern::parse(input)
    }
    fn matches(&self, target: &ResourceUri) -> bool {
        ResourcePattern::matches(self, target)
    }
    fn is_subset_of(&self, other: &Self) -> bool {
        ResourcePattern::is_subset_of(self, other)
    }
}

impl Pattern for DataClass {
    type Target = DataClass;
    fn parse(input: &str) -> Result<Self, PatternError> {
        DataClass::parse(input)
    }
    fn matches(&self, target: &DataClass) -> bool {
        self == target
    }
    fn is_subset_of(&self, other: &Self) -> bool {
        self == other
    }
}

/// Gives a string-backed type its text accessors, serde as a string through `parse`, and an OpenAPI
/// string schema.
macro_rules! string_type {
    ($ty:ident, $example:literal, $description:literal) => {
        impl $ty {
            /// The canonical text.
            pub fn as_str(&self) -> &str {
                &self.text
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.text
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }
        impl FromStr for $ty {
            type Err = PatternError;
            fn from_str(s: &str) -> Result<Self, PatternError> {
                Self::parse(s)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Cow::<'de, str>::deserialize(deserializer)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($description))
                    .examples([$example])
                    .into()
            }
        }
        impl utoipa::ToSchema for $ty {}
    };
}

string_type!(ToolName, "erp/read_ledger", "An MCP tool, `server/tool`.");
string_type!(ToolPattern, "erp/*", "Tools: `server/tool`, each segment a literal, `*` or `prefix*`.");
string_type!(ResourceUri, "erp://ledger/2026-10/ap", "A resource URI, normalised.");
string_type!(ResourcePattern, "erp://ledger/2026-10/*", "A resource URI with an optional trailing `*`.");
string_type!(DataClass, "financial", "A data class: `[a-z][a-z0-9_-]{0,31}`.");

/// A literal prefix and whether a star follows it. Without a star it matches exactly the prefix;
/// with one, the prefix followed by at least one more character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Glob {
    prefix: String,
    star: bool,
    /// The star stops at a `/`: it stands for the rest of a resource's authority (a tool segment
    /// holds no `/` at all, so there it makes no difference).
    stops_at_slash: bool,
}

impl Glob {
    fn matches(&self, s: &str) -> bool {
        if self.star {
            s.len() > self.prefix.len()
                && s.starts_with(&self.prefix)
                && !(self.stops_at_slash && s[self.prefix.len()..].contains('/'))
        } else {
            s == self.prefix
        }
    }

    fn is_subset_of(&self, other: &Glob) -> bool {
        match (self.star, other.star) {
            (false, _) => other.matches(&self.prefix),
            // Every valid starred glob matches at least two values, so it fits in no literal.
            (true, false) => false,
            // A prefix that extends another's in the authority stops where it does; one that reaches
            // into the path (`erp://ledger/*` against `erp://led*`) matches paths the other cannot.
            (true, true) => self.prefix.starts_with(&other.prefix) && self.stops_at_slash == other.stops_at_slash,
        }
    }
}

/// Splits at the only `/`; `None` when there is none or more than one.
/// MCP methods the gateway decides like tools, as the tool part of a name: `erp/resources/read`
/// decides a `resources/read` at server `erp`, `erp/prompts/get` a `prompts/get`. Only the exact
/// name stands for them: a star in a tool pattern never reaches past a `/`, so `erp/*` is every
/// tool of `erp` but none of these.
pub const METHOD_TOOLS: [&str; 2] = ["resources/read", "prompts/get"];

fn split_tool(input: &str) -> Option<(&str, &str)> {
    input.split_once('/').filter(|(_, tool)| !tool.contains('/') || METHOD_TOOLS.contains(tool))
}

fn parse_segment(input: &str, text: &str, segment: Segment, pattern: bool) -> Result<Glob, PatternError> {
    if segment == Segment::Tool && METHOD_TOOLS.contains(&text) {
        return Ok(Glob { prefix: text.to_owned(), star: false, stops_at_slash: true });
    }
    if text.is_empty() {
        return Err(PatternError::EmptySegment { input: input.to_owned(), segment });
    }
    let (prefix, star) = match text.strip_suffix('*') {
        Some(prefix) if pattern => (prefix, true),
        _ => (text, false),
    };
    for found in prefix.chars() {
        if found == '*' && pattern {
            return Err(PatternError::MisplacedStar(input.to_owned()));
        }
        if !segment.allows(found) {
            return Err(PatternError::SegmentChar { input: input.to_owned(), segment, found });
        }
    }
    if segment == Segment::Server && prefix.starts_with(['_', '-']) {
        return Err(PatternError::ServerStart(input.to_owned()));
    }
    // The star counts, so `p*` is refused when no name of the maximum length could match it.
    if text.len() > segment.max_len() {
        return Err(PatternError::SegmentTooLong { input: input.to_owned(), segment, max: segment.max_len() });
    }
    // In a tool segment the star stops at a `/`, so that it never stands for a method (METHOD_TOOLS).
    Ok(Glob { prefix: prefix.to_owned(), star, stops_at_slash: segment == Segment::Tool })
}

/// RFC 3986 section 2.3.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Unreserved characters, sub-delimiters, `:`, `@`, `/` and `%` (RFC 3986 section 3.3).
fn is_resource_char(c: char) -> bool {
    is_unreserved(c) || "!$&'()*+,;=:@/%".contains(c)
}

fn normalise_resource(input: &str, pattern: bool) -> Result<Glob, PatternError> {
    let owned = || input.to_owned();
    if input.len() > MAX_RESOURCE_LEN {
        return Err(PatternError::ResourceTooLong { len: input.len() });
    }
    if let Some(found) = input.chars().find(|&c| !is_resource_char(c)) {
        return Err(PatternError::ResourceChar { input: owned(), found });
    }
    let (body, star) = match input.strip_suffix('*') {
        Some(body) if pattern => (body, true),
        _ => (input, false),
    };
    if body.contains('*') {
        return Err(if pattern {
            PatternError::ResourceMisplacedStar(owned())
        } else {
            PatternError::ResourceStar(owned())
        });
    }
    let (scheme, rest) = body.split_once("://").ok_or_else(|| PatternError::ResourceShape(owned()))?;
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(PatternError::ResourceScheme(owned()));
    }
    let decoded = percent_decode(input, rest)?;
    let (authority, path) = match decoded.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (decoded.as_str(), None),
    };
    // `erp://*` may leave the authority to the star; anything longer must name one.
    if authority.is_empty() && (path.is_some() || !star) {
        return Err(PatternError::ResourceEmptyAuthority(owned()));
    }
    if authority.contains('@') {
        return Err(PatternError::ResourceUserinfo(owned()));
    }
    // `host[:port]` (RFC 3986 section 3.2.2 and 3.2.3), so that every URL parser finds the same host
    // in it; a pattern's star may stand for the rest of the port or of the host.
    let open_end = star && path.is_none();
    let host = authority.split_once(':').map_or(authority, |(h, _)| h);
    if !host_is_canonical(host, open_end && !authority.contains(':')) {
        return Err(PatternError::ResourceAuthority(owned()));
    }
    if let Some((host, port)) = authority.split_once(':') {
        let digits = port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        let in_range = port.is_empty() || port.parse::<u32>().is_ok_and(|p| p <= 65_535);
        let port_ok = digits && in_range && (open_end || !port.is_empty());
        if host.is_empty() || !port_ok {
            return Err(PatternError::ResourceAuthority(owned()));
        }
    }
    let mut text = format!("{}://{}", scheme.to_ascii_lowercase(), authority.to_ascii_lowercase());
    if let Some(path) = path {
        let segments: Vec<&str> = path.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            // Only the last segment of a pattern may be empty, where the star will fill it.
            if segment.is_empty() && !(star && i + 1 == segments.len()) {
                return Err(PatternError::ResourceEmptySegment(owned()));
            }
            // A segment's path parameters (`..;x`) are dropped by some servers before they resolve
            // dot segments, so `..;` is a dot segment too: judged by what precedes the first `;`.
            let bare = segment.split(';').next().unwrap_or(segment);
            if bare == "." || bare == ".." {
                return Err(PatternError::ResourceDotSegment(owned()));
            }
        }
        text.push('/');
        text.push_str(path);
    }
    // Without a path, the star is inside the authority and must not leave it.
    Ok(Glob { prefix: text, star, stops_at_slash: path.is_none() })
}

/// Whether `host` means one thing to every URL parser. WHATWG parsers (browsers, most HTTP clients)
/// read a host whose last label is a number as an IPv4 address in any of its spellings (`0x7f.1`,
/// `2130706433`, `127.1`), and ignore a trailing dot; a tool server could then reach another host
/// than the one a pattern names. So a trailing dot is refused, and a host whose last label starts
/// with a digit must be a dotted-quad IPv4 address with no leading zeros. `partial` (the host of a
/// pattern whose star ends the authority) lets the last label be incomplete.
fn host_is_canonical(host: &str, partial: bool) -> bool {
    if host.ends_with('.') && !partial {
        return false;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let Some(last) = labels.last() else { return true };
    if !last.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    let octet = |l: &str| {
        l.len() <= 3
            && l.bytes().all(|b| b.is_ascii_digit())
            && (l == "0" || !l.starts_with('0'))
            && l.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    if partial {
        // Everything written so far must be able to become a canonical address.
        return labels.len() <= 4
            && labels.iter().enumerate().all(|(i, l)| octet(l) || (i + 1 == labels.len() && l.is_empty()));
    }
    labels.len() == 4 && labels.iter().all(|l| octet(l))
}

/// Decodes percent-encoded unreserved characters and refuses every other percent-encoding.
fn percent_decode(input: &str, text: &str) -> Result<String, PatternError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take(2).collect();
        let value = match u8::from_str_radix(&hex, 16) {
            Ok(value) if hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()) => value,
            _ => return Err(PatternError::ResourceBadPercent(input.to_owned())),
        };
        let decoded = char::from(value);
        if !is_unreserved(decoded) {
            return Err(PatternError::ResourcePercent { input: input.to_owned(), escape: format!("%{hex}") });
        }
        out.push(decoded);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
