-- How many of the generation's records are complete once this batch is committed (its highest
-- record ordinal + 1; NULL for a batch that carries only parts of a record still going on). The
-- assembler writes the records of the committed prefix of batches while the parse goes on.
ALTER TABLE upload_batches ADD COLUMN records_through bigint;
