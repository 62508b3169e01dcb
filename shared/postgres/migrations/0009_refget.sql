-- Reading sequences back through the GA4GH refget API and sequence collections (services/refget).

-- A registration may declare its sequences circular (refget serves start > end across the origin).
ALTER TABLE uploads ADD COLUMN circular boolean NOT NULL DEFAULT false;

-- A sequence is addressed by its content: by MD5 or by its GA4GH digest.
CREATE INDEX sequence_records_by_md5 ON sequence_records (md5);
CREATE INDEX sequence_records_by_refget ON sequence_records (refget);

-- One collection per finished generation of an upload: the digest of each attribute (level 1)
-- and of the collection. The arrays themselves are the upload's records, read in order.
CREATE TABLE collections (
    upload_id                uuid PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
    generation               integer NOT NULL,
    digest                   text NOT NULL,
    names                    text NOT NULL,
    lengths                  text NOT NULL,
    sequences                text NOT NULL,
    name_length_pairs        text NOT NULL,
    sorted_name_length_pairs text NOT NULL,
    sorted_sequences         text NOT NULL,
    count                    bigint NOT NULL
);
CREATE INDEX collections_by_digest ON collections (digest);
CREATE INDEX collections_by_names ON collections (names);
CREATE INDEX collections_by_lengths ON collections (lengths);
CREATE INDEX collections_by_sequences ON collections (sequences);
CREATE INDEX collections_by_name_length_pairs ON collections (name_length_pairs);
CREATE INDEX collections_by_sorted_sequences ON collections (sorted_sequences);
