-- Reverts 0004_unresolved_references.up.sql. Dropping a partitioned table drops its partitions.
DROP TABLE unreadable_revisions;
DROP TABLE dangling_manifest_references;
