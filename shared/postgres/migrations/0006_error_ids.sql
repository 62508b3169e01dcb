-- A failure shows its code, a safe message and an error id; the detail is in the service's log
-- under that id, never in the status or the result.
ALTER TABLE uploads ADD COLUMN error_id text;
