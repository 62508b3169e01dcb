-- Shards not yet parsed, by generation: the persister asks at each shard's end whether any is left,
-- which must not read the whole plan (a generation may have thousands of shards).
CREATE INDEX upload_shards_unparsed ON upload_shards (upload_id, generation) WHERE parsed_at IS NULL;
