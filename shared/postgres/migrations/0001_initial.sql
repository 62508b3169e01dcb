-- Uploads, their records and the residues, stored so that nothing needs a whole chromosome in memory.

CREATE TABLE uploads (
    id                uuid PRIMARY KEY,
    bucket            text NOT NULL,
    key               text NOT NULL,
    filename          text NOT NULL,
    registered        boolean NOT NULL,
    declared_format   text,
    alphabet          text NOT NULL DEFAULT 'nucleotide',
    state             text NOT NULL CHECK (state IN
                        ('awaiting_upload', 'queued', 'parsing', 'persisting', 'assembling', 'done', 'failed')),
    generation        integer NOT NULL DEFAULT 0,
    etag              text,
    sequencer         text,
    event_time        timestamptz,
    format            text,
    bytes_total       bigint,
    bytes_done        bigint NOT NULL DEFAULT 0,
    records_done      bigint NOT NULL DEFAULT 0,
    records_total     bigint,
    batches_done      integer NOT NULL DEFAULT 0,
    batches_total     integer,
    records_assembled bigint NOT NULL DEFAULT 0,
    duplicate_names   bigint,
    error_code        text,
    error_message     text,
    error_line        bigint,
    error_column      bigint,
    result_bucket     text,
    result_key        text,
    result_size       bigint,
    result_records    bigint,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket, key)
);

-- One row per committed batch: the persister's idempotency key.
CREATE TABLE upload_batches (
    upload_id   uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    generation  integer NOT NULL,
    batch_no    integer NOT NULL,
    PRIMARY KEY (upload_id, generation, batch_no)
);

-- No foreign keys below: a per-row trigger would halve COPY speed; rows go with their upload
-- explicitly (new generation, failure).
CREATE TABLE sequence_records (
    upload_id    uuid NOT NULL,
    ordinal      bigint NOT NULL,
    line_number  bigint NOT NULL,
    gene_name    text NOT NULL,
    seq_id       text NOT NULL,
    description  text NOT NULL,
    length       bigint NOT NULL,
    part_count   integer NOT NULL,
    md5          text NOT NULL,
    refget       text NOT NULL,
    -- A sequence shorter than one part is kept here, in the record's own row; a longer one is
    -- split into part_count ordered rows of sequence_parts. Most records of a typical file are
    -- short: one row and one index entry each instead of two.
    residues     bytea,
    PRIMARY KEY (upload_id, ordinal)
);

CREATE TABLE sequence_parts (
    upload_id  uuid NOT NULL,
    ordinal    bigint NOT NULL,
    part_no    integer NOT NULL,
    residues   bytea NOT NULL,
    PRIMARY KEY (upload_id, ordinal, part_no)
);

-- Residues compress poorly with pglz and pglz caps COPY at ~40 MB/s on these machines
-- (perf-envelope.md); stored out of line and uncompressed, loading runs at ~130 MB/s.
ALTER TABLE sequence_parts ALTER COLUMN residues SET STORAGE EXTERNAL;
ALTER TABLE sequence_records ALTER COLUMN residues SET STORAGE EXTERNAL;
