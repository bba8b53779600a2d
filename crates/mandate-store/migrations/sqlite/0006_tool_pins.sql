-- Pinned tool definitions of the MCP gateway: the hash of each tool's definition as first seen (or
-- as last approved), and the changed definition waiting for an administrator, if any.
CREATE TABLE tool_pins (
    name               TEXT PRIMARY KEY,      -- server/tool
    server             TEXT NOT NULL,
    pinned_sha256      TEXT NOT NULL,
    pinned_definition  TEXT NOT NULL,         -- the upstream's own JSON, as received
    pending_sha256     TEXT,                  -- a changed definition, quarantined until approved
    pending_definition TEXT,
    flags              TEXT NOT NULL DEFAULT '[]',  -- JSON array of flags (`hidden_text`, `shadowing`, ...)
    updated_ms         INTEGER NOT NULL,
    updated_by         TEXT NOT NULL
) STRICT;
