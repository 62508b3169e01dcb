-- When each stage of the current generation started and ended: shown by the status endpoint and
-- read by the benchmark.
ALTER TABLE uploads
    ADD COLUMN parsing_started_at  timestamptz,
    ADD COLUMN parsed_at           timestamptz,
    ADD COLUMN assembly_started_at timestamptz,
    ADD COLUMN finished_at         timestamptz;
