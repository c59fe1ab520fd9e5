"""One module per reproduced paper: its sweeps (``SPEC``) and its table (``table(runs, root)``), read by
``prunelab reproduce`` (:mod:`prunelab.cli.reproduce`); shared helpers in :mod:`prunelab.analysis.tables.common`."""
