-- An owner may hold several keys: each key gets an id of its own (its primary key), the former
-- name becomes the owner, and a key's last use is kept.
ALTER TABLE api_keys RENAME COLUMN name TO owner;
ALTER TABLE api_keys RENAME CONSTRAINT api_keys_name_check TO api_keys_owner_check;
ALTER TABLE api_keys DROP CONSTRAINT api_keys_pkey;

-- A key's id is 'k_' and the first 16 hex digits of its hash (shared/domain/access.py: key_id).
ALTER TABLE api_keys ADD COLUMN id text;
UPDATE api_keys SET id = 'k_' || substr(key_hash, 1, 16);
ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_id_check CHECK (id ~ '^k_[0-9a-f]{16}$');

-- Written at most once a minute per key, on authentication.
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;

-- An owner's keys: whether it is revoked or admin, whether a name is an owner, its keys listed.
CREATE INDEX api_keys_by_owner ON api_keys (owner, created_at);
