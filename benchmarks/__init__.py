"""prunelab benchmarks: each script prints ratios measured in one process against its baseline (median of reps)."""
