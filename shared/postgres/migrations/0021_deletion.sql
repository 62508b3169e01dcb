-- DELETE /uploads/{id}: the upload's row stays as a tombstone in state 'deleted' (no rows, no
-- object, no result); the store's part of the delete (its object, a multipart upload, its result
-- documents) is the watchdog's purge, asked for at purge_requested_at (by the delete, and again by
-- an object or a result that arrives afterwards) and finished at purged_at.
ALTER TABLE uploads DROP CONSTRAINT uploads_state_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check CHECK (state IN
    ('awaiting_upload', 'queued', 'parsing', 'persisting', 'assembling', 'done', 'failed', 'expired', 'revoked',
     'deleted'));

ALTER TABLE uploads ADD COLUMN deleted_at timestamptz;
ALTER TABLE uploads ADD COLUMN purge_requested_at timestamptz;
ALTER TABLE uploads ADD COLUMN purged_at timestamptz;

-- The watchdog's sweep asks each second for the purges owed: only those are indexed, so that the
-- tombstones, which accumulate, cost it nothing.
CREATE INDEX uploads_purges_owed ON uploads (purge_requested_at) WHERE state = 'deleted' AND purged_at IS NULL;
