-- What an owner says an upload is (sample, run, project): string keys and values, bounded by the
-- intake (shared/domain/listing.py); shown in the status, the listing, the result and the collection.
ALTER TABLE uploads ADD COLUMN labels jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Idempotent registration: an owner's Idempotency-Key and the fingerprint of the request it came
-- with. The unique index is what makes two concurrent requests with one key register once.
ALTER TABLE uploads ADD COLUMN idempotency_key text;
ALTER TABLE uploads ADD COLUMN request_hash text;
CREATE UNIQUE INDEX uploads_idempotency ON uploads (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- The listing, newest first by (created_at, id), one page after another from where the last ended
-- (keyset): an owner's through this index, with no sort; it serves the quotas' look-ups by owner
-- and by recent registration as well, which the index it replaces served.
CREATE INDEX uploads_by_owner_listing ON uploads (owner, created_at DESC, id DESC);
DROP INDEX uploads_by_owner_created;
-- An admin's listing of every owner's uploads.
CREATE INDEX uploads_listing ON uploads (created_at DESC, id DESC);
