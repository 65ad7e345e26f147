-- SQLite migration 008: every write to a job's row adds one to its revision, so a process re-reads
-- only the jobs that changed since its last look instead of every job in flight on every sweep.
ALTER TABLE jobs ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
