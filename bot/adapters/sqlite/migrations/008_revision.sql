-- Every write to a job's row adds one to its revision: a process re-reads only the jobs that
-- changed since its last look (a sweep with 1,000 jobs in flight read and mapped every row, every
-- sweep), and knows the others are exactly as it last saw them.
ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
