-- 0002 regops' own tables: long-running jobs with their checkpoints, and the journal of every change.
-- Small next to the registry tables; not partitioned. (regops_journal grows with every deleted blob:
-- prune old entries by `at`, or partition it by range of `at` in a later migration if it must be kept.)

CREATE TABLE regops_jobs (
  id bigint GENERATED ALWAYS AS IDENTITY,
  -- e.g. import, sweep-blobs, sweep-uploads, audit-regions, replicate, loadtest-pull
  kind text NOT NULL,
  params jsonb NOT NULL DEFAULT '{}'::jsonb,
  shard_index integer NOT NULL DEFAULT 0,
  shard_count integer NOT NULL DEFAULT 1,
  status text NOT NULL DEFAULT 'pending',
  -- where a resumed run starts again (e.g. {"shard": "3f", "after": "sha256:…"})
  checkpoint jsonb,
  -- host / pod and pid running it, for `jobs list` and stale-heartbeat detection
  owner text,
  heartbeat_at timestamptz,
  stats jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  started_at timestamptz,
  finished_at timestamptz,
  error text,
  CONSTRAINT regops_jobs_pkey PRIMARY KEY (id),
  CONSTRAINT regops_jobs_kind_format CHECK (kind ~ '^[a-z][a-z0-9._:-]{0,62}$'),
  CONSTRAINT regops_jobs_status_check CHECK (status IN ('pending', 'running', 'done', 'failed', 'interrupted')),
  CONSTRAINT regops_jobs_shard_check CHECK (shard_count >= 1 AND shard_index >= 0 AND shard_index < shard_count)
);
CREATE INDEX regops_jobs_kind_status_idx ON regops_jobs (kind, status, id);
CREATE INDEX regops_jobs_running_heartbeat_idx ON regops_jobs (heartbeat_at) WHERE status = 'running';

CREATE TABLE regops_journal (
  id bigint GENERATED ALWAYS AS IDENTITY,
  job_id bigint,
  -- an outcome row (phase done/failed) points at the intent row it completes
  intent_id bigint,
  -- delete, quarantine, restore, purge, rescue, repair, copy, link, unlink, … (lower-case word)
  action text NOT NULL,
  phase text NOT NULL,
  region text,
  key text COLLATE "C",
  digest regops_digest,
  size bigint,
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT regops_journal_pkey PRIMARY KEY (id),
  -- no ON DELETE: a job with journal entries is kept
  CONSTRAINT regops_journal_job_id_fkey FOREIGN KEY (job_id) REFERENCES regops_jobs (id),
  CONSTRAINT regops_journal_intent_id_fkey FOREIGN KEY (intent_id) REFERENCES regops_journal (id),
  CONSTRAINT regops_journal_action_format CHECK (action ~ '^[a-z][a-z0-9_-]{0,62}$'),
  CONSTRAINT regops_journal_phase_check CHECK (phase IN ('intent', 'done', 'failed')),
  CONSTRAINT regops_journal_intent_phase_check CHECK (phase <> 'intent' OR intent_id IS NULL),
  CONSTRAINT regops_journal_size_check CHECK (size IS NULL OR size >= 0)
);
CREATE INDEX regops_journal_job_idx ON regops_journal (job_id, id);
CREATE INDEX regops_journal_intent_idx ON regops_journal (intent_id) WHERE intent_id IS NOT NULL;
CREATE INDEX regops_journal_digest_idx ON regops_journal (digest, id) WHERE digest IS NOT NULL;
CREATE INDEX regops_journal_at_idx ON regops_journal (at);
