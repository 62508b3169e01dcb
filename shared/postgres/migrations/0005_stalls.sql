-- Stalled work: the watchdog re-issues the message of a stage that made no progress for a while
-- (a lost message, a worker that died with its lock) and counts how often it had to.
ALTER TABLE uploads
    ADD COLUMN pickups      integer NOT NULL DEFAULT 0,
    ADD COLUMN picked_up_at timestamptz;

-- The watchdog's sweep reads only live uploads, oldest progress first.
CREATE INDEX uploads_live_by_progress ON uploads (updated_at)
    WHERE state IN ('queued', 'parsing', 'persisting', 'assembling');
