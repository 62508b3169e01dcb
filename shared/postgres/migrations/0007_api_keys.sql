-- API keys (only a hash of each is kept) and the owner of every upload.
CREATE TABLE api_keys (
    name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    key_hash    text NOT NULL UNIQUE,
    admin       boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The key name that registered an upload, or under whose prefix its object was written; NULL for
-- an object outside every owner's prefix (visible to admin keys only).
ALTER TABLE uploads ADD COLUMN owner text;
CREATE INDEX uploads_by_owner ON uploads (owner);
