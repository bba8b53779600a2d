//! Pinned tool definitions: what the gateway lets agents see and call is the definition an
//! administrator accepted, never whatever an upstream says today.
//!
//! A tool's definition (name, title, description, input and output schemas, annotations) is hashed
//! in RFC 8785 canonical form. The first time the gateway sees a tool it is pinned
//! (`tool.definition_pinned`), unless its text looks like an attack on the model (hidden Unicode,
//! terminal escapes, instructions aimed at the model): then it waits for an administrator from the
//! start (`tool.definition_flagged`). A later definition with another hash (a "rug pull", a
//! poisoned description) is quarantined (`tool.definition_changed`, once per new hash): the tool is
//! hidden and its calls refused until `mandate tools approve` pins the new definition
//! (`tool.definition_approved`). A name that another server also offers is flagged `shadowing`
//! (`tool.shadowing`), so that an administrator sees which server an agent may be confused with.
//!
//! Pins are kept in memory (read on every list and call) and written through to the store.

use crate::caller::Caller;
use crate::clock::millis;
use crate::engine::Engine;
use crate::error::Error;
use mandate_core::arguments::CanonicalArguments;
use mandate_core::event::NewEvent;
use mandate_core::pattern::ToolName;
use mandate_store::PinRecord;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::RwLock;
use utoipa::ToSchema;

/// The members of a tool definition that are pinned; others (`_meta`, `icons`, ...) are forwarded
/// but do not change what the model is told.
pub const PINNED_MEMBERS: &[&str] = &["name", "title", "description", "inputSchema", "outputSchema", "annotations"];

/// Pins in memory.
#[derive(Debug, Default)]
pub struct Pins {
    map: RwLock<HashMap<String, PinRecord>>,
}

impl Pins {
    /// Replaces every pin (at start).
    pub fn load(&self, pins: Vec<PinRecord>) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.clear();
        map.extend(pins.into_iter().map(|p| (p.name.clone(), p)));
    }

    /// One pin.
    pub fn get(&self, name: &str) -> Option<PinRecord> {
        self.map.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every pin, by name.
    pub fn all(&self) -> Vec<PinRecord> {
        let mut all: Vec<PinRecord> = self.map.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Whether `name`'s pinned definition is the one hashing to `sha256` (read on every list and
    /// call, so under the lock, without copying the record).
    pub fn is_current(&self, name: &str, sha256: &str) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|p| !p.pinned_sha256.is_empty() && p.pinned_sha256 == sha256)
    }

    /// Whether a server other than `tool`'s has pinned a tool of the same name.
    fn shadows(&self, tool: &ToolName) -> bool {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|p| p.server != tool.server() && ToolName::parse(&p.name).is_ok_and(|n| n.tool() == tool.tool()))
    }

    fn put(&self, pin: PinRecord) {
        self.map.write().unwrap_or_else(|p| p.into_inner()).insert(pin.name.clone(), pin);
    }
}

/// A tool definition as an upstream sent it.
#[derive(Debug, Clone)]
pub struct SeenTool {
    /// `server/tool`.
    pub name: ToolName,
    /// The definition object, as received.
    pub raw: String,
}

/// What the gateway may do with a tool it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinState {
    /// The definition is the pinned one: shown and callable.
    Pinned,
    /// The definition waits for an administrator (changed, or flagged at first sight): hidden.
    Quarantined,
}

/// The hash of a definition's pinned members, or why it cannot be read.
pub fn definition_sha256(raw: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| format!("not JSON: {e}"))?;
    let object = value.as_object().ok_or("not an object")?;
    let pinned: serde_json::Map<String, serde_json::Value> = object
        .iter()
        .filter(|(k, _)| PINNED_MEMBERS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = serde_json::to_string(&pinned).map_err(|e| e.to_string())?;
    // The strict reader: a duplicate member or an inexact number would give two readers two
    // definitions under one hash.
    let canonical = CanonicalArguments::parse(&text).map_err(|e| e.to_string())?;
    Ok(canonical.sha256_hex())
}

/// Flags on a definition's text that warrant a human's look before any model reads it.
pub fn suspicious(raw: &str) -> Vec<&'static str> {
    let mut flags = Vec::new();
    let Ok(value) = serde_json::from_str::<serde_json::Value>(raw) else {
        return vec!["unreadable"];
    };
    let mut texts = Vec::new();
    collect_strings(&value, &mut texts);
    let hidden = |c: char| {
        (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
    };
    if texts.iter().any(|t| t.chars().any(hidden)) {
        flags.push("hidden_text");
    }
    const PHRASES: &[&str] = &[
        "ignore previous",
        "ignore all previous",
        "ignore the above",
        "disregard previous",
        "disregard all",
        "<important>",
        "<system>",
        "system prompt",
        "do not tell the user",
        "don't tell the user",
        "do not mention this",
        "without telling",
        "before using this tool",
        "instead of the user",
        "~/.ssh",
        "id_rsa",
    ];
    if texts.iter().any(|t| {
        let lower = t.to_lowercase();
        PHRASES.iter().any(|p| lower.contains(p))
    }) {
        flags.push("model_instructions");
    }
    flags
}

fn collect_strings<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match v {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| {
            out.push(k);
            collect_strings(v, out)
        }),
        _ => {}
    }
}

/// A pinned definition against the one waiting, for `mandate tools diff`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PinDiff {
    /// `server/tool`.
    pub name: String,
    /// The hash of the pinned definition (absent: never approved).
    pub pinned_sha256: Option<String>,
    /// The pinned definition.
    pub pinned: Option<serde_json::Value>,
    /// The hash of the definition waiting for approval (absent: none waits).
    pub pending_sha256: Option<String>,
    /// The definition waiting for approval.
    pub pending: Option<serde_json::Value>,
    /// Flags raised (`hidden_text`, `model_instructions`, `shadowing`, `unreadable`).
    pub flags: Vec<String>,
    /// When it last changed (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
    /// Who changed it last.
    pub updated_by: String,
}

impl PinDiff {
    fn of(pin: &PinRecord) -> Self {
        let parse = |t: &str| serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.to_owned()));
        let pinned = (!pin.pinned_sha256.is_empty()).then(|| parse(&pin.pinned_definition));
        Self {
            name: pin.name.clone(),
            pinned_sha256: (!pin.pinned_sha256.is_empty()).then(|| pin.pinned_sha256.clone()),
            pinned,
            pending_sha256: pin.pending_sha256.clone(),
            pending: pin.pending_definition.as_deref().map(parse),
            flags: pin.flags.clone(),
            updated_at: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(pin.updated_ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            updated_by: pin.updated_by.clone(),
        }
    }
}

impl Engine {
    /// Loads the pins at start.
    pub async fn load_pins(&self) -> Result<(), Error> {
        self.pins.load(self.decisions.pins().await?);
        Ok(())
    }

    /// Compares what an upstream offers now with the pins, pinning, flagging or quarantining as the
    /// module documentation says, and answers what each tool may be used for.
    pub async fn pin_definitions(&self, seen: &[SeenTool]) -> Result<Vec<PinState>, Error> {
        let mut states = Vec::with_capacity(seen.len());
        for tool in seen {
            states.push(self.pin_one(tool).await?);
        }
        Ok(states)
    }

    async fn pin_one(&self, tool: &SeenTool) -> Result<PinState, Error> {
        let name = tool.name.as_str();
        let now = millis(self.clock.now());
        let (sha, mut flags): (String, Vec<String>) = match definition_sha256(&tool.raw) {
            Ok(sha) => (sha, suspicious(&tool.raw).into_iter().map(str::to_owned).collect()),
            Err(e) => {
                tracing::warn!(tool = name, error = %e, "an upstream tool definition cannot be read; quarantined");
                (format!("unreadable:{}", hex::encode(sha2_of(&tool.raw))), vec!["unreadable".to_owned()])
            }
        };
        let shadowed = self.pins.shadows(&tool.name);
        if shadowed {
            flags.push("shadowing".to_owned());
        }
        match self.pins.get(name) {
            Some(pin) if pin.pinned_sha256 == sha => {
                if shadowed && !pin.flags.iter().any(|f| f == "shadowing") {
                    let mut pin = pin.clone();
                    pin.flags.push("shadowing".to_owned());
                    pin.updated_ms = now;
                    self.write_pin(pin, "tool.shadowing", serde_json::json!({"sha256": sha}), "gateway").await?;
                }
                Ok(PinState::Pinned)
            }
            Some(pin) if pin.pending_sha256.as_deref() == Some(sha.as_str()) => Ok(PinState::Quarantined),
            Some(pin) => {
                let detail = serde_json::json!({"pinned_sha256": pin.pinned_sha256, "new_sha256": sha, "flags": flags});
                let mut pin = pin.clone();
                pin.pending_sha256 = Some(sha);
                pin.pending_definition = Some(tool.raw.clone());
                pin.flags = flags;
                pin.updated_ms = now;
                pin.updated_by = "gateway".to_owned();
                tracing::warn!(
                    tool = name,
                    "a tool definition changed; quarantined until an administrator approves it"
                );
                self.write_pin(pin, "tool.definition_changed", detail, "gateway").await?;
                Ok(PinState::Quarantined)
            }
            None => {
                let held = flags.iter().any(|f| f != "shadowing");
                let pin = PinRecord {
                    name: name.to_owned(),
                    server: tool.name.server().to_owned(),
                    pinned_sha256: if held { String::new() } else { sha.clone() },
                    pinned_definition: if held { String::new() } else { tool.raw.clone() },
                    pending_sha256: held.then(|| sha.clone()),
                    pending_definition: held.then(|| tool.raw.clone()),
                    flags: flags.clone(),
                    updated_ms: now,
                    updated_by: "gateway".to_owned(),
                };
                let detail = serde_json::json!({"sha256": sha, "flags": flags});
                if held {
                    tracing::warn!(
                        tool = name,
                        ?flags,
                        "a new tool's definition is flagged; held for an administrator"
                    );
                    self.write_pin(pin, "tool.definition_flagged", detail, "gateway").await?;
                    Ok(PinState::Quarantined)
                } else {
                    let kind = if shadowed { "tool.shadowing" } else { "tool.definition_pinned" };
                    self.write_pin(pin, kind, detail, "gateway").await?;
                    Ok(PinState::Pinned)
                }
            }
        }
    }

    async fn write_pin(&self, pin: PinRecord, kind: &str, detail: serde_json::Value, actor: &str) -> Result<(), Error> {
        let mut event = NewEvent::new(kind, actor, pin.updated_ms, &detail);
        event.tool = Some(pin.name.clone());
        self.decisions.upsert_pin(&pin, event).await?;
        self.pins.put(pin);
        self.metrics.event(kind);
        Ok(())
    }

    /// A tool's pin against its waiting definition.
    pub fn pin_diff(&self, caller: &Caller, tool: &ToolName) -> Result<PinDiff, Error> {
        caller.require_admin("see a tool's pinned definition")?;
        let pin = self
            .pins
            .get(tool.as_str())
            .ok_or_else(|| Error::not_found("tool.not_pinned", format!("the gateway never saw tool `{tool}`")))?;
        Ok(PinDiff::of(&pin))
    }

    /// Every pin, for `mandate tools list`.
    pub fn pin_diffs(&self, caller: &Caller) -> Result<Vec<PinDiff>, Error> {
        caller.require_admin("list pinned tool definitions")?;
        Ok(self.pins.all().iter().map(PinDiff::of).collect())
    }

    /// Pins the definition waiting for `tool` (the one `sha256` names, so that an administrator
    /// approves what they saw, not what arrived since).
    pub async fn approve_pin(&self, caller: &Caller, tool: &ToolName, sha256: Option<&str>) -> Result<PinDiff, Error> {
        caller.require_admin("approve a tool definition")?;
        let pin = self
            .pins
            .get(tool.as_str())
            .ok_or_else(|| Error::not_found("tool.not_pinned", format!("the gateway never saw tool `{tool}`")))?;
        let (Some(pending_sha), Some(pending)) = (pin.pending_sha256.clone(), pin.pending_definition.clone()) else {
            return Err(Error::conflict(
                "tool.nothing_to_approve",
                format!("no definition of `{tool}` waits for approval"),
            ));
        };
        if let Some(expected) = sha256 {
            if expected != pending_sha {
                return Err(Error::conflict(
                    "tool.definition_moved",
                    format!("the waiting definition of `{tool}` is `{pending_sha}`, not `{expected}`; look again"),
                ));
            }
        }
        let detail = serde_json::json!({"before": pin.pinned_sha256, "sha256": pending_sha, "flags": pin.flags});
        let approved = PinRecord {
            pinned_sha256: pending_sha,
            pinned_definition: pending,
            pending_sha256: None,
            pending_definition: None,
            flags: pin.flags.iter().filter(|f| f.as_str() == "shadowing").cloned().collect(),
            updated_ms: millis(self.clock.now()),
            updated_by: caller.principal(),
            ..pin
        };
        self.write_pin(approved.clone(), "tool.definition_approved", detail, &caller.principal()).await?;
        Ok(PinDiff::of(&approved))
    }
}

fn sha2_of(text: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes()).into()
}
