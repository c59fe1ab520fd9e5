"""FairPrune (Wu et al., MICCAI 2022) as a prunelab criterion (issue 30, item 2).

Saliency of each weight: s = 1/2 w^2 (h_a - beta * h_b), with h_g a diagonal curvature estimate of the loss on
class set g's examples, averaged over the batches; the smallest saliencies are pruned: weights that matter to set b
but little to set a go first, so set a (the classes to protect) keeps what it needs. Read in a third-party
reimplementation (AliGhadirii/FairPrune at 03916df, ``FairPrune.py``: saliency ``1/2 * theta**2 * (h0 - beta *
h1)``, BackPACK's exact diagonal GGN per batch of each group, summed over paired batches), not in the paper.
prunelab's readings: the groups are class sets, ``protect`` (set a) and every other class (set b); the curvature is
the diagonal empirical Fisher, the mean over the set's examples of the squared per-example gradient of the
cross-entropy (at most ``max_examples`` examples per set and batch), not the exact GGN (BackPACK is not a
dependency); the paper's outer loop ("prune while the bias metric improves") is ``schedule.stop_when``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn import functional

from prunelab.errors import PrunelabError
from prunelab.pruning import masks as masking
from prunelab.pruning.criteria import ScoringContext, required


def fisher_diagonal(model: nn.Module, names: list[str], x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Mean over the examples of the squared per-example gradient of the cross-entropy for each tensor of ``names``
    (masked tensors: the gradient of their trainable storage, which equals the effective one where unmasked)."""
    masked = set(masking.masked_names(model))
    tensors = {n: masking.original(model, n) if n in masked else model.get_parameter(n) for n in names}
    total = {n: torch.zeros_like(t, dtype=torch.float64) for n, t in tensors.items()}
    for i in range(len(y)):
        model.zero_grad(set_to_none=True)
        functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for n, t in tensors.items():
            if t.grad is not None:
                total[n] += t.grad.detach().double().pow(2)
    model.zero_grad(set_to_none=True)
    return {n: v / max(len(y), 1) for n, v in total.items()}


class FairPrune:
    structured = False
    group_kinds: tuple[str, ...] = ()
    needs_data = True

    def __init__(
        self, protect: list[int] | None = None, beta: float = 1.0, num_batches: int = 2, max_examples: int = 64,
        scope: str = "global",
    ):  # fmt: skip
        self.protect = None if protect is None else [int(c) for c in protect]
        self.beta, self.num_batches, self.max_examples, self.scope = (
            float(beta),
            int(num_batches),
            int(max_examples),
            scope,
        )
        if self.beta < 0:
            raise PrunelabError("criterion.beta", f"{beta} is not >= 0", "e.g. criterion.beta=1")

    @property
    def classes(self) -> list[int] | None:
        """The protected set (checked against the data before training, as criterion.classes)."""
        return self.protect

    def check_sets(self, num_classes: int) -> None:
        if not self.protect or len(set(self.protect)) >= num_classes:
            raise PrunelabError(
                "criterion.protect",
                "names one class set: FairPrune compares the classes to protect with the others",
                f"name some but not all of the {num_classes} classes, e.g. criterion.protect=[1]",
            )

    def scores(self, model: nn.Module, masks: dict[str, Tensor], batches=None, context: ScoringContext | None = None):
        context = required(context)
        if "num_classes" in context.extra:  # through prunelab (the run checked it before training, too)
            self.check_sets(int(context.extra["num_classes"]))
        elif not self.protect:
            self.check_sets(0)
        if batches is None:
            raise PrunelabError("criterion", "this criterion needs training batches", "run it through prunelab")
        names = list(masks)
        h: dict[str, dict[str, Tensor]] = {
            key: {n: torch.zeros_like(masks[n], dtype=torch.float64) for n in names} for key in ("a", "b")
        }
        seen = {"a": 0, "b": 0}
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        protect = torch.tensor(self.protect)
        try:
            for x, y in itertools.islice(batches, self.num_batches):
                inside = torch.isin(y, protect)
                for key, keep in (("a", inside), ("b", ~inside)):
                    xs, ys = x[keep][: self.max_examples].to(device), y[keep][: self.max_examples].to(device)
                    if len(ys):
                        for n, v in fisher_diagonal(model, names, xs, ys).items():
                            h[key][n] += v.to(h[key][n].device)
                        seen[key] += 1
        finally:
            model.train(was_training)
        if not seen["a"] or not seen["b"]:
            missing = "the protected classes" if not seen["a"] else "the other classes"
            raise PrunelabError(
                "criterion.protect", f"the scoring batches hold no example of {missing}", "raise criterion.num_batches"
            )
        out = {}
        for n in names:
            w = (
                masking.effective(model, n).detach().double()
                if n in masking.masked_names(model)
                else model.get_parameter(n).detach().double()
            )
            ha, hb = h["a"][n] / seen["a"], h["b"][n] / seen["b"]
            out[n] = (0.5 * w.pow(2) * (ha - self.beta * hb)).float()
        return out
