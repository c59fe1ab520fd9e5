"""Configs: where they live and their groups (:mod:`~prunelab.config.groups`), the run identity
(:mod:`~prunelab.config.identity`), the typed schemas (:mod:`~prunelab.config.schemas`) and the resolvers that
Hydra needs (:mod:`~prunelab.config.register`). Torch-free."""
