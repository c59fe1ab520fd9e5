"""Training machinery inside a fit: the LightningModule (:mod:`~prunelab.training.module`), per-class metrics,
losses, the console, loggers, quantization, and the fast paths that use private Lightning/torch internals (the lean
loop, the round checkpoint)."""
