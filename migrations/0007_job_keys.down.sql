ALTER TABLE regops_jobs DROP COLUMN result;
ALTER TABLE regops_jobs DROP CONSTRAINT regops_jobs_job_key_format;
ALTER TABLE regops_jobs DROP CONSTRAINT regops_jobs_job_key_unique;
ALTER TABLE regops_jobs DROP COLUMN job_key;
