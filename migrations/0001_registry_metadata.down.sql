-- Reverts 0001_registry_metadata.up.sql. Dropping a partitioned table drops its partitions.
DROP TABLE tags;
DROP TABLE layers;
DROP TABLE manifest_references;
DROP TABLE manifests;
DROP TABLE repository_blobs;
DROP TABLE blobs;
DROP TABLE repositories;
DROP TABLE top_level_namespaces;
DROP TABLE media_types;
DROP DOMAIN regops_digest;
