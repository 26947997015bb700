-- 0006 a job may carry a key chosen by its caller (--job-key, e.g. an Argo workflow name and shard):
-- a second run with the same key resumes that job, or returns its stored result when it is done, so a
-- retried pod never starts the work over. At most one job per key; jobs without a key are unaffected.
ALTER TABLE regops_jobs ADD COLUMN job_key text;
ALTER TABLE regops_jobs ADD CONSTRAINT regops_jobs_job_key_unique UNIQUE (job_key);
ALTER TABLE regops_jobs ADD CONSTRAINT regops_jobs_job_key_format CHECK (job_key ~ '^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$');
-- the result a done job returned, handed back as it was to a re-run with the same key
ALTER TABLE regops_jobs ADD COLUMN result jsonb;
