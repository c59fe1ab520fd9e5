"""The run folder, read and written: its files and checksums (:mod:`~prunelab.runs.files`), the trust rules for
reading what a folder names (:mod:`~prunelab.runs.trust`), the public readers ``load_run``/``load_model``
(:mod:`~prunelab.runs.api`), folders as report tables (:mod:`~prunelab.runs.folders`), the compact-model codec
(:mod:`~prunelab.runs.compact`) and masks taken from another run (:mod:`~prunelab.runs.masks_from`)."""
