-- The result document's SHA-256, computed by the assembler as it streams the document to the store
-- (per generation): a client checks its download against it. Null for documents written before.
-- No grant of its own: the services' privileges are per table (shared/postgres/migrate.py).
ALTER TABLE uploads ADD COLUMN result_sha256 text;
