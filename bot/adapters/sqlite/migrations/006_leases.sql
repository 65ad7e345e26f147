-- Jobs are leased, not owned by whoever created them (README, "Running more than one process"):
-- the process working an unfinished job holds its lease until lease_expires_at (Unix seconds) and
-- renews it while working; once it lapses (the process died) another process takes the job over.
-- NULL owner: nobody works the job yet (just submitted, or released at a clean shutdown).
ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at REAL;
CREATE INDEX jobs_lease ON jobs(lease_owner, lease_expires_at) WHERE status NOT IN ('completed', 'failed', 'cancelled');
