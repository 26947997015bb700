-- 0001 registry metadata: the storage of a distribution v2 registry, as rows.
-- Modeled on GitLab container registry's metadata schema (premigrations 20210503*), simplified.
--
-- Digests are text COLLATE "C" ('sha256:<64 hex>' / 'sha512:<128 hex>'), through the domain
-- regops_digest. The C collation compares bytes, so ORDER BY digest is the byte order of the storage
-- keys blobs/<alg>/<2 hex>/<hex>/data that S3 LIST returns: a sorted query and a sorted listing can be
-- merge-joined shard by shard. (bytea would sort the same but is unreadable in psql and logs.)
--
-- Partitioning, as in GitLab:
--   blobs                                   PARTITION BY HASH (digest): global content store
--   repository_blobs, manifests, manifest_references, layers, tags
--                                           PARTITION BY HASH (top_level_namespace_id): every row
--                                           of one namespace lives in one partition, and every
--                                           primary/unique/foreign key of those tables starts with
--                                           top_level_namespace_id, as PostgreSQL requires.
-- Partition count: the setting regops.hash_partitions, default 64 (GitLab's production count),
-- read once, when this migration runs; it must be a power of two (1..1024) so that partitions can
-- later be split 2:1 without a full rewrite. Tests use 4 (GitLab's integration tests do too):
--   ALTER DATABASE registry SET regops.hash_partitions = 4;   -- before `regops db migrate up`
-- Changing it afterwards means re-partitioning (a new migration that copies the data).
-- top_level_namespaces, repositories and media_types are small and not partitioned; repositories
-- keeps a global UNIQUE (path) that a partitioned table could not enforce.

CREATE DOMAIN regops_digest AS text COLLATE "C"
  CONSTRAINT regops_digest_format CHECK (VALUE ~ '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$');
COMMENT ON DOMAIN regops_digest IS 'content digest sha256:<hex64> or sha512:<hex128>; collation C = storage key byte order';

CREATE TABLE media_types (
  id smallint GENERATED ALWAYS AS IDENTITY,
  media_type text NOT NULL,
  CONSTRAINT media_types_pkey PRIMARY KEY (id),
  CONSTRAINT media_types_media_type_key UNIQUE (media_type),
  CONSTRAINT media_types_media_type_length CHECK (char_length(media_type) BETWEEN 1 AND 255)
);
COMMENT ON TABLE media_types IS 'known media types; seeded below, unknown types are inserted by import. smallint ids (as GitLab) keep layers rows narrow';

INSERT INTO media_types (media_type) VALUES
  ('application/vnd.docker.distribution.manifest.v1+json'),
  ('application/vnd.docker.distribution.manifest.v1+prettyjws'),
  ('application/vnd.docker.distribution.manifest.v2+json'),
  ('application/vnd.docker.distribution.manifest.list.v2+json'),
  ('application/vnd.docker.container.image.v1+json'),
  ('application/vnd.docker.image.rootfs.diff.tar.gzip'),
  ('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'),
  ('application/vnd.docker.plugin.v1+json'),
  ('application/vnd.oci.image.manifest.v1+json'),
  ('application/vnd.oci.image.index.v1+json'),
  ('application/vnd.oci.image.config.v1+json'),
  ('application/vnd.oci.image.layer.v1.tar'),
  ('application/vnd.oci.image.layer.v1.tar+gzip'),
  ('application/vnd.oci.image.layer.v1.tar+zstd'),
  ('application/vnd.oci.image.layer.nondistributable.v1.tar'),
  ('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'),
  ('application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'),
  ('application/vnd.oci.empty.v1+json'),
  ('application/vnd.oci.artifact.manifest.v1+json'),
  ('application/vnd.cncf.helm.config.v1+json'),
  ('application/vnd.cncf.helm.chart.content.v1.tar+gzip'),
  ('application/vnd.cncf.helm.chart.provenance.v1.prov'),
  ('application/vnd.in-toto+json'),
  ('application/vnd.dev.cosign.simplesigning.v1+json'),
  ('application/vnd.dev.sigstore.bundle.v0.3+json'),
  ('application/octet-stream'),
  ('application/json');

CREATE TABLE top_level_namespaces (
  id bigint GENERATED ALWAYS AS IDENTITY,
  name text COLLATE "C" NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz,
  CONSTRAINT top_level_namespaces_pkey PRIMARY KEY (id),
  CONSTRAINT top_level_namespaces_name_key UNIQUE (name),
  CONSTRAINT top_level_namespaces_name_format CHECK (
    char_length(name) <= 255 AND name ~ '^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$')
);
COMMENT ON TABLE top_level_namespaces IS 'first path component of repository names; the partitioning key of repository-owned tables';

CREATE TABLE repositories (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  path text COLLATE "C" NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz,
  CONSTRAINT repositories_pkey PRIMARY KEY (id),
  -- target of the composite foreign keys from the partitioned tables
  CONSTRAINT repositories_tlns_id_key UNIQUE (top_level_namespace_id, id),
  CONSTRAINT repositories_path_key UNIQUE (path),
  CONSTRAINT repositories_top_level_namespace_id_fkey FOREIGN KEY (top_level_namespace_id)
    REFERENCES top_level_namespaces (id) ON DELETE CASCADE,
  -- OCI distribution spec name grammar
  CONSTRAINT repositories_path_format CHECK (
    char_length(path) <= 255
    AND path ~ '^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$')
);
COMMENT ON TABLE repositories IS 'repositories/<path>/ in storage';

CREATE TABLE blobs (
  digest regops_digest NOT NULL,
  size bigint NOT NULL,
  media_type_id smallint,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT blobs_pkey PRIMARY KEY (digest),
  CONSTRAINT blobs_size_check CHECK (size >= 0),
  CONSTRAINT blobs_media_type_id_fkey FOREIGN KEY (media_type_id) REFERENCES media_types (id)
) PARTITION BY HASH (digest);
-- media_type_id is nullable: storage does not record a blob's media type; it is known only once a
-- manifest references the blob.

CREATE TABLE repository_blobs (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  blob_digest regops_digest NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT repository_blobs_pkey PRIMARY KEY (top_level_namespace_id, repository_id, id),
  CONSTRAINT repository_blobs_repository_blob_key UNIQUE (top_level_namespace_id, repository_id, blob_digest),
  CONSTRAINT repository_blobs_repository_fkey FOREIGN KEY (top_level_namespace_id, repository_id)
    REFERENCES repositories (top_level_namespace_id, id) ON DELETE CASCADE,
  CONSTRAINT repository_blobs_blob_digest_fkey FOREIGN KEY (blob_digest)
    REFERENCES blobs (digest) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);
CREATE INDEX repository_blobs_blob_digest_idx ON repository_blobs (blob_digest);

CREATE TABLE manifests (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  digest regops_digest NOT NULL,
  media_type_id smallint NOT NULL,
  schema_version smallint NOT NULL,
  payload bytea NOT NULL,
  configuration_blob_digest regops_digest,
  configuration_media_type_id smallint,
  subject_digest regops_digest,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT manifests_pkey PRIMARY KEY (top_level_namespace_id, repository_id, id),
  CONSTRAINT manifests_repository_digest_key UNIQUE (top_level_namespace_id, repository_id, digest),
  CONSTRAINT manifests_schema_version_check CHECK (schema_version IN (1, 2)),
  CONSTRAINT manifests_repository_fkey FOREIGN KEY (top_level_namespace_id, repository_id)
    REFERENCES repositories (top_level_namespace_id, id) ON DELETE CASCADE,
  CONSTRAINT manifests_media_type_id_fkey FOREIGN KEY (media_type_id) REFERENCES media_types (id),
  CONSTRAINT manifests_configuration_media_type_id_fkey FOREIGN KEY (configuration_media_type_id)
    REFERENCES media_types (id),
  -- no ON DELETE: a configuration blob cannot be deleted while a manifest uses it
  CONSTRAINT manifests_configuration_blob_digest_fkey FOREIGN KEY (configuration_blob_digest)
    REFERENCES blobs (digest)
) PARTITION BY HASH (top_level_namespace_id);
-- subject_digest (OCI referrers) has no foreign key: the subject may be pushed later, or never.
CREATE INDEX manifests_digest_idx ON manifests (digest);
CREATE INDEX manifests_configuration_blob_digest_idx ON manifests (configuration_blob_digest)
  WHERE configuration_blob_digest IS NOT NULL;
CREATE INDEX manifests_subject_digest_idx ON manifests (subject_digest) WHERE subject_digest IS NOT NULL;

CREATE TABLE manifest_references (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  parent_id bigint NOT NULL,
  child_id bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT manifest_references_pkey PRIMARY KEY (top_level_namespace_id, repository_id, id),
  CONSTRAINT manifest_references_parent_child_key UNIQUE (top_level_namespace_id, repository_id, parent_id, child_id),
  CONSTRAINT manifest_references_parent_child_check CHECK (parent_id <> child_id),
  CONSTRAINT manifest_references_parent_fkey FOREIGN KEY (top_level_namespace_id, repository_id, parent_id)
    REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE,
  -- no ON DELETE: a child of an index cannot be deleted while the index exists (multi-arch safety).
  -- Checked at commit, so that deleting a whole repository (which cascades to parent and child in
  -- one go) still works.
  CONSTRAINT manifest_references_child_fkey FOREIGN KEY (top_level_namespace_id, repository_id, child_id)
    REFERENCES manifests (top_level_namespace_id, repository_id, id) DEFERRABLE INITIALLY DEFERRED
) PARTITION BY HASH (top_level_namespace_id);
CREATE INDEX manifest_references_child_idx ON manifest_references (top_level_namespace_id, repository_id, child_id);

CREATE TABLE layers (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  manifest_id bigint NOT NULL,
  position integer NOT NULL,
  digest regops_digest NOT NULL,
  size bigint NOT NULL,
  media_type_id smallint NOT NULL,
  CONSTRAINT layers_pkey PRIMARY KEY (top_level_namespace_id, repository_id, id),
  -- position, not digest: a manifest may list the same layer twice
  CONSTRAINT layers_manifest_position_key UNIQUE (top_level_namespace_id, repository_id, manifest_id, position),
  CONSTRAINT layers_position_check CHECK (position >= 0),
  CONSTRAINT layers_size_check CHECK (size >= 0),
  CONSTRAINT layers_manifest_fkey FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id)
    REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE,
  -- no ON DELETE: a layer blob cannot be deleted while a manifest uses it
  CONSTRAINT layers_digest_fkey FOREIGN KEY (digest) REFERENCES blobs (digest),
  CONSTRAINT layers_media_type_id_fkey FOREIGN KEY (media_type_id) REFERENCES media_types (id)
) PARTITION BY HASH (top_level_namespace_id);
-- "who uses this blob" probes this index in every partition (64 index lookups in production); fine
-- for per-digest checks. A sweep streams digests in order instead of probing one by one.
CREATE INDEX layers_digest_idx ON layers (digest);

CREATE TABLE tags (
  id bigint GENERATED ALWAYS AS IDENTITY,
  top_level_namespace_id bigint NOT NULL,
  repository_id bigint NOT NULL,
  manifest_id bigint NOT NULL,
  name text COLLATE "C" NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz,
  CONSTRAINT tags_pkey PRIMARY KEY (top_level_namespace_id, repository_id, id),
  CONSTRAINT tags_repository_name_key UNIQUE (top_level_namespace_id, repository_id, name),
  -- OCI distribution spec tag grammar
  CONSTRAINT tags_name_format CHECK (name ~ '^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$'),
  CONSTRAINT tags_manifest_fkey FOREIGN KEY (top_level_namespace_id, repository_id, manifest_id)
    REFERENCES manifests (top_level_namespace_id, repository_id, id) ON DELETE CASCADE
) PARTITION BY HASH (top_level_namespace_id);
CREATE INDEX tags_manifest_idx ON tags (top_level_namespace_id, repository_id, manifest_id);

-- The partitions. Indexes, constraints and foreign keys declared on the parents above apply to each.
DO $$
DECLARE
  setting text := nullif(current_setting('regops.hash_partitions', true), '');
  n integer;
  t text;
  i integer;
BEGIN
  IF setting IS NULL THEN
    n := 64;
  ELSIF setting !~ '^[0-9]{1,4}$' THEN
    RAISE EXCEPTION 'regops.hash_partitions must be a power of two between 1 and 1024, got %', setting;
  ELSE
    n := setting::integer;
  END IF;
  IF n < 1 OR n > 1024 OR (n & (n - 1)) <> 0 THEN
    RAISE EXCEPTION 'regops.hash_partitions must be a power of two between 1 and 1024, got %', n;
  END IF;
  FOREACH t IN ARRAY ARRAY['blobs', 'repository_blobs', 'manifests', 'manifest_references', 'layers', 'tags'] LOOP
    FOR i IN 0 .. n - 1 LOOP
      EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES WITH (MODULUS %s, REMAINDER %s)', t || '_p' || i, t, n, i);
    END LOOP;
    EXECUTE format('COMMENT ON TABLE %I IS %L', t,
      format('hash-partitioned by %s into %s partitions (%s_p0 .. %s_p%s)',
        CASE t WHEN 'blobs' THEN 'digest' ELSE 'top_level_namespace_id' END, n, t, t, n - 1));
  END LOOP;
END
$$;
