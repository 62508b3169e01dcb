-- A registered upload above the multipart threshold: the store's multipart upload id, so that the
-- intake can sign its parts and the watchdog can abort it when its ticket expires unused.
ALTER TABLE uploads ADD COLUMN multipart_upload_id text;
