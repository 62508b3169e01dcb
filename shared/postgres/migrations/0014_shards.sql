-- A large FASTA is parsed in shards by several parsers (services/parser, shared/parsing/shards.py).
-- The plan is written once per generation, before any shard is parsed: where each shard starts and
-- ends in the object, the ordinal and line of its first record and how many records it holds. The
-- persister records each shard's end; the generation's parse is over when every shard's is in.
CREATE TABLE upload_shards (
    upload_id uuid NOT NULL REFERENCES uploads (id),
    generation integer NOT NULL,
    shard integer NOT NULL,
    start_offset bigint NOT NULL,
    end_offset bigint NOT NULL,
    first_ordinal bigint NOT NULL,
    first_line bigint NOT NULL,
    records bigint NOT NULL,
    -- bgzip: the range is whole blocks; the shard's content starts skip_bytes into their content
    bgzf boolean NOT NULL,
    skip_bytes bigint NOT NULL,
    content_bytes bigint NOT NULL,
    batch_count integer,
    parsed_at timestamptz,
    PRIMARY KEY (upload_id, generation, shard)
);

-- A batch is numbered within its shard (0 for a generation parsed whole): the same numbers
-- whichever parser parses which shard.
ALTER TABLE upload_batches ADD COLUMN shard integer NOT NULL DEFAULT 0;
ALTER TABLE upload_batches DROP CONSTRAINT upload_batches_pkey;
ALTER TABLE upload_batches ADD PRIMARY KEY (upload_id, generation, shard, batch_no);
