DROP TABLE regops_sweep_candidates;
