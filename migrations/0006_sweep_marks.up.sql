-- 0006 sharded storage marks. `sweep mark --mark-run ID --shard i/n` walks the manifests of the
-- repositories shard i owns and writes every digest they reference; `sweep blobs --marks ID` reads them
-- per digest prefix instead of walking every manifest itself, so the manifests are read once however
-- many sweep shards there are. A run is usable when all its shards finished; marks of a re-run shard
-- are added to what it wrote before (a superset only protects more).
CREATE TABLE regops_mark_runs (
  id text COLLATE "C" PRIMARY KEY,
  region text NOT NULL,
  shard_count integer NOT NULL CHECK (shard_count BETWEEN 1 AND 256),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE regops_mark_shards (
  run_id text COLLATE "C" NOT NULL REFERENCES regops_mark_runs (id) ON DELETE CASCADE,
  shard_index integer NOT NULL,
  -- storage time: what the shard's walk could not have seen was written after started_at
  started_at timestamptz NOT NULL,
  -- _layers links at or after this instant were marked (they protect pushes in flight)
  cutoff timestamptz NOT NULL,
  finished_at timestamptz,
  -- false: some manifest or listing could not be read; a sweep on this run refuses to act
  complete boolean,
  repositories bigint NOT NULL DEFAULT 0,
  manifests bigint NOT NULL DEFAULT 0,
  young_links bigint NOT NULL DEFAULT 0,
  problems bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, shard_index)
);

-- Read by digest range (one prefix at a time): the primary key's order is the listing's byte order.
CREATE TABLE regops_marks (
  run_id text COLLATE "C" NOT NULL REFERENCES regops_mark_runs (id) ON DELETE CASCADE,
  digest regops_digest NOT NULL,
  PRIMARY KEY (run_id, digest)
);
