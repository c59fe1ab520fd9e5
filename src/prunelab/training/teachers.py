"""Losses that act on class damage after pruning, using the run's own dense round 0 (issue 30, item 1).

Each is plain cross-entropy until the runner attaches the dense model (:meth:`DenseRoundLoss.attach`, at the start
of every round after 0; the model is round 0's ``model.pt``, verified against the checksum its ``metrics.json``
recorded). Their state (Lagrange multipliers, replay buffers, the dense model's per-class figures) lives in
buffers of the loss module, so it is part of every Lightning checkpoint and a resumed round continues the same
optimisation. The state changes only in training mode (a validation pass never moves a multiplier).

- :class:`CEAG` (``loss=ceag``): Hashemizadeh, Ramirez et al. 2023, "Balancing Act" (arXiv 2310.20673), as their
  code implements it (merajhashemi/balancing-act, ``src/cmp/uniform_accuracy_gap.py`` at ce918f8): for every
  class c the constraint acc_gap(c) <= mean acc_gap + epsilon, acc_gap(c) = dense acc(c) - acc(c), the dense
  figures computed once on the training split; the gradient comes through the same inequality on per-class
  cross-entropy, (L_c - L_dense,c) - (L - L_dense), for the classes in the batch; the violation that moves the
  multipliers is measured on a per-class replay buffer of per-example correctness; one multiplier per class,
  lambda_c <- max(0, lambda_c + dual_lr * violation_c) after each step (projected dual ascent).
- :class:`Equalized` (``loss=equalized``): the same code's ``equalized_loss.py``: equality constraints
  L_c - L = 0 (the penalty Tran et al. 2022 study), unprojected multipliers.
- :class:`Distill` (``loss=distill``): knowledge distillation from the dense round (Hinton et al. 2015; Blakeney et
  al. 2021 use it against pruning bias): (1 - alpha) CE + alpha T^2 KL(p_dense^T || p^T).
- :class:`PerformanceWeighted` (``loss=pw``): Meyer & Wong 2022 (arXiv 2211.10285; robbiemeyer/pw_loss_pruning,
  ``prune/utils.py: sw_weights, fix_labels`` and ``prune/retrainer.py`` at 88395a7): per-example weight
  m + (1 - m)(1 - p_dense(y|x))^gamma, targets the dense model's probabilities where it is right and the one-hot
  label where it is wrong, loss = mean over the batch of weight x cross-entropy against those targets.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prunelab.errors import PrunelabError


class DenseRoundLoss(nn.Module):
    """Cross-entropy until :meth:`attach`; then :meth:`mitigated` (rounds after 0)."""

    multipliers: Tensor
    dense_acc: Tensor
    dense_loss: Tensor
    dense_avg: Tensor
    ring: Tensor
    ring_pos: Tensor
    _teacher: nn.Module | None
    uses_inputs = True  # the module passes the batch's inputs (a teacher's forward needs them)
    needs_dense = True  # the run must have a dense round 0 (refused otherwise, before training)
    needs_teacher = True

    def __init__(self) -> None:
        super().__init__()
        object.__setattr__(self, "_teacher", None)  # not a submodule: never in the checkpoint
        self.num_classes = 0

    def configure(self, class_counts: Tensor, positive_class: int | None) -> None:
        self.num_classes = len(class_counts)
        self._make_state(self.num_classes)

    def _make_state(self, c: int) -> None:
        """Buffers sized by the class count (registered here so that every checkpoint holds them)."""

    @property
    def active(self) -> bool:
        return bool(getattr(self, "_active", False))

    def attach(self, teacher: nn.Module | None, train: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Round r > 0: the dense model (frozen) and the training split's batches (eval mode, no augmentation)."""
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        object.__setattr__(self, "_teacher", teacher)
        object.__setattr__(self, "_active", True)
        self._start_round(train)

    def release(self) -> None:
        """Round 0: plain cross-entropy."""
        object.__setattr__(self, "_teacher", None)
        object.__setattr__(self, "_active", False)

    def _start_round(self, train: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Reset the round's state (a resumed round's checkpoint restores it afterwards)."""

    @torch.no_grad()
    def teacher_logits(self, inputs: Tensor) -> Tensor:
        teacher = self._teacher
        if teacher is None:
            raise RuntimeError("no dense model attached")
        return teacher(inputs).float()

    def forward(self, logits: Tensor, targets: Tensor, inputs: Tensor | None = None) -> Tensor:
        if not self.active or (self.needs_teacher and inputs is None):
            return F.cross_entropy(logits, targets)
        return self.mitigated(logits, targets, inputs)

    def mitigated(self, logits: Tensor, targets: Tensor, inputs: Tensor | None) -> Tensor:
        raise NotImplementedError


def _fraction(key: str, value: float, low_open: bool = False) -> float:
    value = float(value)
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise PrunelabError(key, f"{value} is outside {'(0, 1]' if low_open else '[0, 1]'}", "e.g. 0.5")
    return value


class Distill(DenseRoundLoss):
    def __init__(self, temperature: float = 4.0, alpha: float = 0.5):
        super().__init__()
        if float(temperature) <= 0:
            raise PrunelabError("loss.temperature", f"{temperature} is not > 0", "e.g. loss.temperature=4")
        self.temperature, self.alpha = float(temperature), _fraction("loss.alpha", alpha)

    def mitigated(self, logits: Tensor, targets: Tensor, inputs: Tensor | None) -> Tensor:
        assert inputs is not None
        ce = F.cross_entropy(logits, targets)
        if self.alpha == 0:
            return ce
        t = self.temperature
        soft = F.log_softmax(self.teacher_logits(inputs) / t, dim=1)
        kl = F.kl_div(F.log_softmax(logits.float() / t, dim=1), soft, reduction="batchmean", log_target=True)
        return (1 - self.alpha) * ce + self.alpha * t * t * kl


class PerformanceWeighted(DenseRoundLoss):
    def __init__(self, min_weight: float = 0.5, gamma: float = 2.0):
        super().__init__()
        if float(gamma) < 0:
            raise PrunelabError("loss.gamma", f"{gamma} is not >= 0", "e.g. loss.gamma=2")
        self.min_weight, self.gamma = _fraction("loss.min_weight", min_weight), float(gamma)

    def weights_and_targets(self, dense_probs: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Meyer & Wong's per-example weights and targets from the dense model's probabilities."""
        p_true = dense_probs.gather(1, targets.view(-1, 1)).view(-1)
        weights = self.min_weight + (1 - self.min_weight) * (1 - p_true) ** self.gamma
        right = (dense_probs.argmax(1) == targets).float().unsqueeze(1)
        onehot = F.one_hot(targets, dense_probs.shape[1]).float()
        return weights, dense_probs * right + onehot * (1 - right)

    def mitigated(self, logits: Tensor, targets: Tensor, inputs: Tensor | None) -> Tensor:
        assert inputs is not None
        weights, soft = self.weights_and_targets(torch.softmax(self.teacher_logits(inputs), 1), targets)
        per_example = -(soft * F.log_softmax(logits.float(), dim=1)).sum(1)
        return (weights * per_example).mean()


def _group_means(values: Tensor, targets: Tensor, c: int) -> tuple[Tensor, Tensor]:
    """(per-class mean of ``values``, per-class count) over the batch; 0 where a class is absent."""
    counts = torch.bincount(targets, minlength=c).to(values.dtype)
    sums = torch.zeros(c, dtype=values.dtype, device=values.device).index_add(0, targets, values)
    return sums / counts.clamp_min(1), counts


class _Constrained(DenseRoundLoss):
    """One Lagrange multiplier per class, updated by dual ascent after each training step."""

    projected = True  # inequality constraints: multipliers stay >= 0

    def __init__(self, dual_lr: float = 0.05):
        super().__init__()
        if float(dual_lr) <= 0:
            raise PrunelabError("loss.dual_lr", f"{dual_lr} is not > 0", "e.g. loss.dual_lr=0.05")
        self.dual_lr = float(dual_lr)

    def _make_state(self, c: int) -> None:
        self.register_buffer("multipliers", torch.zeros(c))

    def _start_round(self, train) -> None:
        self.multipliers.zero_()

    @torch.no_grad()
    def _ascend(self, violation: Tensor, seen: Tensor) -> None:
        if not self.training:
            return
        step = self.multipliers + self.dual_lr * violation.to(self.multipliers)
        if self.projected:
            step = step.clamp_min(0)
        self.multipliers.copy_(torch.where(seen, step, self.multipliers))


class Equalized(_Constrained):
    """Equality constraints L_c - L = 0 for the classes of the batch (no dense model needed)."""

    projected = False
    needs_teacher = False

    def mitigated(self, logits: Tensor, targets: Tensor, inputs: Tensor | None) -> Tensor:
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        mean = ce.mean()
        group, counts = _group_means(ce, targets, self.num_classes)
        seen = counts > 0
        gap = torch.where(seen, group - mean, torch.zeros_like(group))
        lagrangian = mean + (self.multipliers.clone() * gap).sum()  # this step's multipliers (updated after it)
        self._ascend(gap.detach(), seen)
        return lagrangian


class CEAG(_Constrained):
    """Constrained excess accuracy gap (Balancing Act): see the module docstring. The dense model is read once per
    round, for its per-class figures on the training split; the steps need only the compressed model's logits."""

    needs_teacher = False

    def __init__(self, epsilon: float = 0.02, dual_lr: float = 0.05, buffer: int = 64):
        super().__init__(dual_lr)
        if float(epsilon) < 0:
            raise PrunelabError("loss.epsilon", f"{epsilon} is not >= 0", "e.g. loss.epsilon=0.02")
        if int(buffer) < 1:
            raise PrunelabError("loss.buffer", f"{buffer} examples per class", "e.g. loss.buffer=64")
        self.epsilon, self.buffer = float(epsilon), int(buffer)

    def _make_state(self, c: int) -> None:
        super()._make_state(c)
        self.register_buffer("dense_acc", torch.zeros(c))
        self.register_buffer("dense_loss", torch.zeros(c))
        self.register_buffer("dense_avg", torch.zeros(2))  # accuracy, loss over the training split
        self.register_buffer("ring", torch.full((c, self.buffer), -1.0))  # per-example correctness; -1: empty
        self.register_buffer("ring_pos", torch.zeros(c, dtype=torch.long))

    @torch.no_grad()
    def _start_round(self, train) -> None:
        super()._start_round(train)
        self.ring.fill_(-1.0)
        self.ring_pos.zero_()
        c = self.num_classes
        hits, losses, counts = torch.zeros(c), torch.zeros(c), torch.zeros(c)
        for x, y in train:
            logits = self.teacher_logits(x).cpu()
            y = y.cpu()
            ce = F.cross_entropy(logits, y, reduction="none")
            counts += torch.bincount(y, minlength=c).float()
            hits += torch.zeros(c).index_add(0, y, (logits.argmax(1) == y).float())
            losses += torch.zeros(c).index_add(0, y, ce)
        self.dense_acc.copy_(hits / counts.clamp_min(1))
        self.dense_loss.copy_(losses / counts.clamp_min(1))
        self.dense_avg.copy_(torch.stack([hits.sum() / counts.sum(), losses.sum() / counts.sum()]))

    @torch.no_grad()
    def _remember(self, correct: Tensor, targets: Tensor) -> None:
        """Each example's correctness into its class's ring, in batch order (oldest entries overwritten): one
        indexed write per class present, not one per example (this runs at every training step)."""
        for c in torch.unique(targets).tolist():
            values = correct[targets == c][-self.buffer :]  # more than a ring holds: only the last ones stay
            start = int(self.ring_pos[c]) + int((targets == c).sum()) - len(values)
            slots = (start + torch.arange(len(values))) % self.buffer
            self.ring[c, slots] = values.to(self.ring)
            self.ring_pos[c] = start + len(values)

    def violations(self) -> tuple[Tensor, Tensor]:
        """(acc_gap(c) - mean gap - epsilon per class, classes whose ring is full), from the replay buffer. As the
        reference's ``GroupCyclicBuffer.query``: only full buffers count, and the mean accuracy is the mean over
        them (class-balanced once all are full), compared with the dense model's accuracy over the training split
        (example-weighted): the reference code's choice, kept."""
        full = (self.ring >= 0).all(1)
        acc = self.ring.clamp_min(0).mean(1)
        avg = acc[full].mean() if full.any() else torch.tensor(0.0)
        gap_c = self.dense_acc - acc
        return gap_c - (self.dense_avg[0] - avg) - self.epsilon, full

    def mitigated(self, logits: Tensor, targets: Tensor, inputs: Tensor | None) -> Tensor:
        ce = F.cross_entropy(logits.float(), targets, reduction="none")
        mean = ce.mean()
        group, counts = _group_means(ce, targets, self.num_classes)
        seen = counts > 0
        surrogate = (group - self.dense_loss.to(group)) - (mean - self.dense_avg[1].to(mean))
        lam = self.multipliers.to(group).clone()  # this step's multipliers (the dual step below updates them)
        lagrangian = mean + (lam * torch.where(seen, surrogate, torch.zeros_like(group))).sum()
        if self.training:
            self._remember((logits.detach().argmax(1) == targets).float().cpu(), targets.cpu())
            violation, filled = self.violations()
            self._ascend(violation, filled)
        return lagrangian
