DROP TABLE regops_marks;
DROP TABLE regops_mark_shards;
DROP TABLE regops_mark_runs;
