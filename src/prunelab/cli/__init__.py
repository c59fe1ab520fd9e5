"""The commands: ``prunelab`` (routing and the Hydra task, :mod:`~prunelab.cli.main`), ``prunelab help``
(:mod:`~prunelab.cli.help`), ``prunelab export`` (ONNX/TorchScript/pt2, :mod:`~prunelab.cli.export`) and
``prunelab reproduce`` (:mod:`~prunelab.cli.reproduce`)."""
