-- Reverts 0002_regops_jobs_journal.up.sql.
DROP TABLE regops_journal;
DROP TABLE regops_jobs;
