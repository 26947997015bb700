-- Reverts 0008_set_based_blob_references.up.sql: the foreign keys back (each validated: a scan of its
-- table), the triggers and their functions gone, the digest rule as 0001 wrote it (validated: a scan of
-- every digest column), so that the catalog is 0007's exactly.
ALTER TABLE layers ADD CONSTRAINT layers_digest_fkey FOREIGN KEY (digest) REFERENCES blobs (digest);
ALTER TABLE repository_blobs ADD CONSTRAINT repository_blobs_blob_digest_fkey FOREIGN KEY (blob_digest)
  REFERENCES blobs (digest) ON DELETE CASCADE;
ALTER TABLE manifests ADD CONSTRAINT manifests_configuration_blob_digest_fkey FOREIGN KEY (configuration_blob_digest)
  REFERENCES blobs (digest);

DROP TRIGGER blobs_truncated ON blobs;
DROP TRIGGER blobs_digest_unchanged ON blobs;
DROP TRIGGER blobs_deleted ON blobs;
DROP TRIGGER manifests_configuration_blob_updated ON manifests;
DROP TRIGGER manifests_configuration_blob_inserted ON manifests;
DROP TRIGGER repository_blobs_blob_updated ON repository_blobs;
DROP TRIGGER repository_blobs_blob_inserted ON repository_blobs;
DROP TRIGGER layers_blob_updated ON layers;
DROP TRIGGER layers_blob_inserted ON layers;
DROP FUNCTION regops_blobs_truncated();
DROP FUNCTION regops_blobs_digest_unchanged();
DROP FUNCTION regops_blobs_deleted();
DROP FUNCTION regops_check_blob_references();

ALTER DOMAIN regops_digest DROP CONSTRAINT regops_digest_format;
ALTER DOMAIN regops_digest ADD CONSTRAINT regops_digest_format
  CHECK (VALUE ~ '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$');
