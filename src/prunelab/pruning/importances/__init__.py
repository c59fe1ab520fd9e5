"""Score functions for :class:`prunelab.pruning.criteria.group_score.GroupScore`: ``fn(model, group) -> scores``.

Each is a plain function of a model and a :class:`~prunelab.pruning.criteria.group_score.GroupView`, usable as
``criterion=group_score criterion.fn=prunelab.pruning.importances.<module>.<function>``, and each has its YAML in
conf/criterion/.
"""
