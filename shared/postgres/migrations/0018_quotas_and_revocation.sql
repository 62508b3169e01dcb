-- Revoking an owner's keys ends its outstanding tickets: a registered upload still waiting for its
-- object, or an object that arrives afterwards, ends 'revoked' (with the code owner_revoked).
ALTER TABLE uploads DROP CONSTRAINT uploads_state_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check CHECK (state IN
    ('awaiting_upload', 'queued', 'parsing', 'persisting', 'assembling', 'done', 'failed', 'expired', 'revoked'));

-- gzip content the current generation's parse inflated, drawn from the owner's quota before it is
-- parsed (GENOBASE_QUOTA_INFLATED_BYTES); the owner's total is the sum over its uploads.
ALTER TABLE uploads ADD COLUMN inflated_bytes bigint NOT NULL DEFAULT 0;

-- The registration quotas read an owner's uploads, the rate its latest registrations: both by
-- owner, the latter by time.
CREATE INDEX uploads_by_owner_created ON uploads (owner, created_at);
-- It serves every lookup by owner alone too.
DROP INDEX uploads_by_owner;
