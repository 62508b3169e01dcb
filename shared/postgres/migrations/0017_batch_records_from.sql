-- The first record ordinal a batch carries (NULL for a batch of parts only, and for batches stored
-- before this column). With records_through it names exactly the batch's records: the persister
-- refuses a batch whose ordinals are not consecutive, and the primary key keeps any other batch
-- from holding the same ordinals. The assembler fetches a window at once only when it starts where
-- the batch before it ended, so that a batch claiming a far-off end cannot make it load the
-- records of other batches in one piece (it streams such a window instead).
ALTER TABLE upload_batches ADD COLUMN records_from bigint;
