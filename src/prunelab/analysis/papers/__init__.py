"""Each paper's declared claims (:class:`prunelab.analysis.claims.Claim`) and how they are measured, on plain
arrays so that every rule can be fed synthetic nulls and effects (tests/test_claims.py)."""
