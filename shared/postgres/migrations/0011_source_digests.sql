-- The whole source object's MD5 and SHA-256, computed by the parser as it reads (per generation).
ALTER TABLE uploads ADD COLUMN source_md5 text;
ALTER TABLE uploads ADD COLUMN source_sha256 text;
