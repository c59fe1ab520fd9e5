"""Analysis of run folders (results, per-class deltas, W&B offline runs)."""
