-- What an upload is for, chosen at registration: 'store' (rows and a result document) or 'validate'
-- (parsed and reported, nothing stored, the object removed afterwards). An object written straight
-- to the bucket is always 'store'.
ALTER TABLE uploads ADD COLUMN mode text NOT NULL DEFAULT 'store' CHECK (mode IN ('store', 'validate'));
-- A validated generation's report (records, format, bytes, the source's digests, the collection
-- digest), and when the watchdog removed its object.
ALTER TABLE uploads ADD COLUMN validation jsonb;
ALTER TABLE uploads ADD COLUMN object_removed_at timestamptz;
-- The watchdog's sweep for validated objects still in the store: few rows, found without a scan.
CREATE INDEX uploads_validated_objects ON uploads (updated_at)
    WHERE mode = 'validate' AND object_removed_at IS NULL AND etag IS NOT NULL AND state IN ('done', 'failed');
