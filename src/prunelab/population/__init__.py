"""Populations: K seeds trained at once as one stacked model (:mod:`~prunelab.population.engine`) and the
orchestration of their member folders (:mod:`~prunelab.population.run`)."""
