-- The intent taxonomy as changed through the API or configuration (the shipped categories are in the
-- code; a row here replaces one, or adds one; a row whose body is NULL removes one), and the learned
-- behaviour profile of each category.
CREATE TABLE intent_categories (
    name        TEXT PRIMARY KEY,
    body        TEXT,                  -- the category as JSON; NULL when it was removed
    updated_ms  INTEGER NOT NULL,
    updated_by  TEXT NOT NULL
) STRICT;

CREATE TABLE drift_profiles (
    category    TEXT PRIMARY KEY,
    body        TEXT NOT NULL,         -- the learned profile as JSON
    updated_ms  INTEGER NOT NULL
) STRICT;
