-- 0003 the candidates of an acting sweep (--delete / --quarantine), so that a sweep killed at any
-- instant resumes from PostgreSQL: the plan is not recomputed, and each candidate is acted on once.
-- One row per (job, digest); rows of finished jobs can be pruned with their job.

CREATE TABLE regops_sweep_candidates (
  job_id bigint NOT NULL REFERENCES regops_jobs (id) ON DELETE CASCADE,
  digest regops_digest NOT NULL,
  -- blob: an unreferenced blob; manifest: an untagged manifest revision (--delete-untagged)
  kind text NOT NULL DEFAULT 'blob',
  repository text COLLATE "C",
  key text COLLATE "C" NOT NULL,
  size bigint NOT NULL,
  last_modified timestamptz NOT NULL,
  -- pending → done | skipped (referenced again, changed, gone) | failed
  state text NOT NULL DEFAULT 'pending',
  note text,
  CONSTRAINT regops_sweep_candidates_pkey PRIMARY KEY (job_id, kind, digest, key),
  CONSTRAINT regops_sweep_candidates_kind_check CHECK (kind IN ('blob', 'manifest')),
  CONSTRAINT regops_sweep_candidates_state_check CHECK (state IN ('pending', 'done', 'skipped', 'failed'))
);
CREATE INDEX regops_sweep_candidates_pending_idx ON regops_sweep_candidates (job_id, kind, digest) WHERE state = 'pending';
