-- 0004 references the import could not resolve are still references.
--
-- dangling_manifest_references: an index's edge to a child, by digest, when the child is not a manifest
-- of the index's repository (its revision link was deleted, or never written). The registry's GC marks an
-- index's children by digest whether or not they are linked, so the child's manifest blob stays wanted;
-- manifest_references cannot hold such an edge (its child is a manifests row).
--
-- unreadable_revisions: manifest revisions of a repository the import could not read (garbage, over the
-- size limit, the manifest blob missing, a descriptor with an unknown digest algorithm) and keys under
-- _manifests/revisions that name no digest regops can represent. What they reference is unknown, so the
-- metadata strategy counts the revision's own digest as referenced and refuses to act unless it reads
-- them again successfully. A re-import of the repository replaces its rows.
--
-- Both are repository-owned: PARTITION BY HASH (top_level_namespace_id) with as many partitions as
-- manifests has (the count 0001 chose from regops.hash_partitions), so a namespace's rows stay together.

CREATE TABLE dangling_manifest_references (
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  parent_id bigint NOT NULL,
  child_digest regops_digest NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT dangling_manifest_references_pkey PRIMARY KEY (top_level_namespace_id, repository_id, parent_id, child_digest),
  CONSTRAINT dangling_manifest_references_parent_fkey FOREIGN KEY (top_level_namespace_id, repository_id, parent_id)
    REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);
-- the sweep's per-prefix query and its re-check look edges up by child digest
CREATE INDEX dangling_manifest_references_child_digest_idx ON dangling_manifest_references (child_digest);

CREATE TABLE unreadable_revisions (
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  -- the revision link, or the key that did not parse
  key text COLLATE "C" NOT NULL,
  -- NULL when the key names no digest regops can represent (an unknown digest algorithm)
  digest regops_digest,
  -- the import problem kind (bad-manifest, missing-manifest-blob, invalid-key) and its message
  problem text NOT NULL,
  message text NOT NULL,
  -- the revision link's lastModified
  revision_modified timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT unreadable_revisions_pkey PRIMARY KEY (top_level_namespace_id, repository_id, key),
  CONSTRAINT unreadable_revisions_repository_fkey FOREIGN KEY (top_level_namespace_id, repository_id)
    REFERENCES repositories (top_level_namespace_id, id) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);
CREATE INDEX unreadable_revisions_digest_idx ON unreadable_revisions (digest) WHERE digest IS NOT NULL;

DO $$
DECLARE
  n integer := (SELECT count(*) FROM pg_inherits WHERE inhparent = 'manifests'::regclass);
  t text;
  i integer;
BEGIN
  IF n < 1 THEN
    RAISE EXCEPTION 'manifests has no partitions: 0001 did not run as expected';
  END IF;
  FOREACH t IN ARRAY ARRAY['dangling_manifest_references', 'unreadable_revisions'] LOOP
    FOR i IN 0 .. n - 1 LOOP
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)', t || '_p' || i, t, n, i);
    END LOOP;
    EXECUTE format('COMMENT ON TABLE %I IS %L', t,
      format('hash-partitioned by top_level_namespace_id into %s partitions (%s_p0 .. %s_p%s), as manifests', n, t, t, n - 1));
  END LOOP;
END
$$;
