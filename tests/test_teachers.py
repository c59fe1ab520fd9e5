"""Losses that act after pruning (issue 30, item 1): each formula against a direct computation, the multipliers'
dual ascent, and a real run per loss that resumes after kill -9 to identical results."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelab.training import teachers
from tests.conftest import cli, kill_when


class Fixed(nn.Module):
    """A 'dense model' whose logits are its inputs (the tests choose what it predicts)."""

    def forward(self, x):
        return x


def _attached(loss, c, batches):
    loss.configure(torch.ones(c), None)
    loss.attach(Fixed(), batches)
    return loss.train()


def test_distill_at_alpha_0_is_cross_entropy_and_otherwise_adds_the_scaled_kl():
    torch.manual_seed(0)
    logits, teacher, y = torch.randn(16, 5), torch.randn(16, 5), torch.randint(0, 5, (16,))
    plain = _attached(teachers.Distill(temperature=3.0, alpha=0.0), 5, [])
    assert torch.equal(plain(logits, y, teacher), F.cross_entropy(logits, y))
    kd = _attached(teachers.Distill(temperature=3.0, alpha=0.3), 5, [])
    p_t = torch.softmax(teacher / 3, 1)
    kl = (p_t * (p_t.log() - torch.log_softmax(logits / 3, 1))).sum(1).mean()
    expected = 0.7 * F.cross_entropy(logits, y) + 0.3 * 9 * kl
    assert kd(logits, y, teacher) == pytest.approx(float(expected), rel=1e-5)
    kd.release()
    assert torch.equal(kd(logits, y, teacher), F.cross_entropy(logits, y))  # round 0: plain cross-entropy


def test_pw_weights_and_targets_follow_meyer_and_wong():
    torch.manual_seed(1)
    dense = torch.softmax(torch.randn(12, 4), 1)
    y = torch.randint(0, 4, (12,))
    loss = teachers.PerformanceWeighted(min_weight=0.2, gamma=3.0)
    weights, soft = loss.weights_and_targets(dense, y)
    for i in range(12):
        p = float(dense[i, y[i]])
        assert float(weights[i]) == pytest.approx(0.2 + 0.8 * (1 - p) ** 3)
        right = int(dense[i].argmax()) == int(y[i])
        assert torch.allclose(soft[i], dense[i] if right else F.one_hot(y[i], 4).float())
    logits = torch.randn(12, 4)
    _attached(loss, 4, [])
    value = loss(logits, y, dense.log())  # the fixed 'dense model' returns log-probabilities as its logits
    per_example = -(soft * torch.log_softmax(logits, 1)).sum(1)
    assert float(value) == pytest.approx(float((weights * per_example).mean()), rel=1e-5)


def _batches(c, n, wrong_class):
    """Training batches where the dense model is always right and the compressed one wrong on one class."""
    y = torch.arange(n) % c
    right = F.one_hot(y, c).float() * 10
    return [(right, y)], y, wrong_class


def test_ceag_multipliers_grow_for_a_violated_class_and_stay_zero_for_satisfied_ones():
    c = 3
    train, y, bad = _batches(c, 30, 0)
    loss = _attached(teachers.CEAG(epsilon=0.05, dual_lr=0.1, buffer=5), c, train)
    assert torch.equal(loss.dense_acc, torch.ones(c))  # the dense figures, from the training batches
    logits = F.one_hot(y, c).float() * 5
    logits[y == bad] = F.one_hot(torch.full((int((y == bad).sum()),), 1), c).float() * 5  # class 0 -> 1
    history = []
    for _ in range(6):
        loss(logits.clone().requires_grad_(True), y).backward()
        history.append(loss.multipliers.clone())
    assert float(history[-1][bad]) > float(history[2][bad]) > 0  # violated: grows step after step
    assert torch.equal(history[-1][1:], torch.zeros(c - 1))  # satisfied: projected at 0
    violation, full = loss.violations()
    assert bool(full.all()) and float(violation[bad]) == pytest.approx(1 - (1 - 2 / 3) - 0.05)
    loss.eval()
    before = loss.multipliers.clone()
    loss(logits, y)
    assert torch.equal(loss.multipliers, before)  # evaluation never moves a multiplier


def test_equalized_drives_class_loss_gaps_toward_zero():
    torch.manual_seed(0)
    n = 600
    y = (torch.rand(n) < 0.15).long()  # an imbalanced toy problem: class 1 is the minority
    x = torch.randn(n, 2) + torch.stack([y.float() * 1.2, torch.zeros(n)], 1)

    def train(loss):
        torch.manual_seed(1)
        model = nn.Linear(2, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for _ in range(400):
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            ce = F.cross_entropy(model(x), y, reduction="none")
        return abs(float(ce[y == 1].mean() - ce[y == 0].mean()))

    plain = train(lambda logits, t: F.cross_entropy(logits, t))
    eq = _attached(teachers.Equalized(dual_lr=0.05), 2, [])
    equalized = train(lambda logits, t: eq(logits, t))
    assert equalized < 0.05 * plain, (equalized, plain)
    assert float(eq.multipliers[1]) > 0 > float(eq.multipliers[0])  # the minority's loss pulled down


def test_teacher_losses_are_refused_without_a_dense_round(tmp_path):
    proc = cli(["logger=none", "loss=ceag", "schedule=one_shot", "schedule.at_init=true"], tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("prunelab: error: loss: CEAG acts on rounds after a dense round 0")
    proc = cli(["logger=none", "loss=distill", "schedule=dense", "population=2"], tmp_path)
    assert proc.returncode != 0 and "loss=Distill" in proc.stderr


@pytest.mark.parametrize("loss", ["ceag", "equalized", "distill"])
def test_a_killed_round_resumes_to_identical_results(tmp_path, loss):
    """Multipliers and buffers come back from the checkpoint; the dense teacher is attached again."""
    args = ["logger=none", f"loss={loss}", "data.batch_size=8", "trainer.max_epochs=4", "schedule.rounds=1"]
    args += ["share_round0=false"] + (["loss.buffer=16"] if loss == "ceag" else [])
    ref = cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run = tmp_path / "killed"
    target = run / "rounds" / "r01" / "checkpoints" / "last.ckpt"
    kill_when([*args, f"hydra.run.dir={run}"], tmp_path, target)
    assert not (run / "rounds" / "r01" / "metrics.json").exists(), "the kill came too late to test a resume"
    ckpt = torch.load(target, weights_only=True)
    kept = {"ceag": ["loss_fn.multipliers", "loss_fn.ring"], "equalized": ["loss_fn.multipliers"], "distill": []}
    assert all(k in ckpt["state_dict"] for k in kept[loss])
    resumed = cli([*args, f"hydra.run.dir={run}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name in ("model.pt", "masks.pt"):
        a = torch.load(tmp_path / "ref" / "rounds" / "r01" / name, weights_only=True)
        b = torch.load(run / "rounds" / "r01" / name, weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads((d / "rounds" / "r01" / "metrics.json").read_text()) for d in (tmp_path / "ref", run)]
    lam = [[row.get(f"loss/multiplier/{c}") for c in range(10)] for row in rows]
    assert lam[0] == lam[1] and rows[0]["test/acc"] == rows[1]["test/acc"]
