-- FASTQ qualities, kept beside the residues of the record (reads are shorter than one part).
ALTER TABLE sequence_records ADD COLUMN quality bytea;
ALTER TABLE sequence_records ALTER COLUMN quality SET STORAGE EXTERNAL;
