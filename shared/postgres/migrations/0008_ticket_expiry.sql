-- A registered upload's ticket has a lifetime: once it is over (plus a grace period) and no object
-- came, the watchdog ends the upload as 'expired' instead of leaving it awaiting_upload forever.
ALTER TABLE uploads ADD COLUMN ticket_expires_at timestamptz;
ALTER TABLE uploads DROP CONSTRAINT uploads_state_check;
ALTER TABLE uploads ADD CONSTRAINT uploads_state_check CHECK (state IN
    ('awaiting_upload', 'queued', 'parsing', 'persisting', 'assembling', 'done', 'failed', 'expired'));
CREATE INDEX uploads_awaiting_tickets ON uploads (ticket_expires_at) WHERE state = 'awaiting_upload';
