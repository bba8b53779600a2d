-- Pending approvals are read per mandate on every held call: one index for that, so the read
-- stays as small as the mandate's own queue however many approvals the organisation has.
CREATE INDEX approvals_mandate ON approvals (mandate_id, status, expires_ms);
