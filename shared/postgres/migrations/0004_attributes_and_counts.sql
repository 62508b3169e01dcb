-- Extra CSV/TSV columns kept per record, and the count of records with an empty sequence.
ALTER TABLE sequence_records ADD COLUMN attributes jsonb;
ALTER TABLE uploads ADD COLUMN empty_sequences bigint;
