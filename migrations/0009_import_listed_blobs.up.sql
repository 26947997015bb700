-- 0009 the blob listing of an import job. An import must know, for every blob its manifests name and
-- the database does not have yet, whether storage holds it, its size and its time. Asked one stat per
-- blob, that was most of an S3 import's requests (17,673 stats for 3,789 manifests); one listing of
-- blobs/ answers them all at a thousand keys a request. The rows are the job's own: written at the
-- start of each run, deleted when the job finishes, and with the job when it is pruned. Unlogged: a
-- crash loses them, and the next run lists again anyway.
CREATE UNLOGGED TABLE regops_import_listed_blobs (
  job_id bigint NOT NULL REFERENCES regops_jobs (id) ON DELETE CASCADE,
  digest text COLLATE "C" NOT NULL,
  size bigint NOT NULL,
  last_modified timestamptz NOT NULL,
  PRIMARY KEY (job_id, digest)
);
