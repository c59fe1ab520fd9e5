"""Class damage per round (issue 29): the flat record fields against a from-scratch NumPy computation, the
tolerance verdicts and class-safe sparsity, the bad values refused, and a real run with a dense-vs-dense floor whose
records, console table, W&B offline run and load_run agree with the stored predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prunelab.config import checks
from prunelab.errors import PrunelabError
from prunelab.training import damage
from tests.conftest import cli, compose_cfg, run_dirs

NAMES = ["cat", "dog", "bird/x", "fish"]


def _probs(rng, labels, right):
    c = len(NAMES)
    pred = np.where(rng.random(len(labels)) < right, labels, rng.integers(0, c, len(labels)))
    logits = rng.normal(size=(len(labels), c)) + 3.0 * np.eye(c)[pred]
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


@pytest.fixture
def fixture():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, len(NAMES), 300)
    return labels, _probs(rng, labels, 0.9), _probs(rng, labels, 0.7)


def _scratch(ref_probs, probs, labels, bins=15, below=0.9):
    """Every figure written out again with NumPy, class by class."""
    ref, pred = ref_probs.argmax(1), probs.argmax(1)
    out = {}
    acc = (pred == labels).mean()
    gaps = []
    for c, name in enumerate(["cat", "dog", "bird_x", "fish"]):
        mine = labels == c
        out[f"flip/{name}"] = (ref[mine] != pred[mine]).mean()
        gap = (ref[mine] == c).mean() - (pred[mine] == c).mean()
        gaps.append(gap)
        out[f"gap/{name}"] = gap
        fnr = [((p != c) & mine).sum() / mine.sum() for p in (ref, pred)]
        fpr = [((p == c) & ~mine).sum() / (~mine).sum() for p in (ref, pred)]
        out[f"dfnr/{name}"] = fnr[1] - fnr[0]
        out[f"dfpr/{name}"] = fpr[1] - fpr[0]
        out[f"recall_minus_acc/{name}"] = (pred[mine] == c).mean() - acc
    gaps = np.array(gaps)
    out["flip"] = (ref != pred).mean()
    out["gap_mean"], out["gap_std"], out["gap_max"] = gaps.mean(), gaps.std(), gaps.max()
    excess = np.sort(gaps - gaps.mean())
    out["gap_excess_q0"], out["gap_excess_q100"] = excess[0], excess[-1]
    out["gap_excess_q50"] = np.median(excess)
    conf = probs.max(1)
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    out["ece"] = ece
    out["uncertain"] = (conf < below).mean()
    return out


def test_damage_fields_match_a_from_scratch_computation(fixture):
    labels, dense, sparse = fixture
    fields = damage.damage_fields(dense, sparse, labels, NAMES)
    expected = _scratch(dense, sparse, labels)
    for key, value in expected.items():
        assert fields[f"damage/{key}"] == pytest.approx(value, abs=1e-12), key
    assert (
        fields["damage/worst_class"]
        == NAMES[int(np.argmax([expected[f"gap/{n}"] for n in ("cat", "dog", "bird_x", "fish")]))]
    )
    assert damage.damage_fields(dense, sparse, labels, NAMES, "floor", ece_bins=7, uncertain_below=0.6)[
        "floor/uncertain"
    ] == pytest.approx(_scratch(dense, sparse, labels, 7, 0.6)["uncertain"])
    same = damage.damage_fields(dense, dense, labels, NAMES)
    assert same["damage/flip"] == 0 and same["damage/gap_max"] == 0 and same["damage/gap_std"] == 0


def test_damage_fields_refuse_predictions_of_another_test_set(fixture):
    labels, dense, sparse = fixture
    with pytest.raises(ValueError, match="different test sets"):
        damage.damage_fields(dense, sparse[:-1], labels, NAMES)


def _fields(gaps, prefix="damage"):
    mean = float(np.mean(gaps))
    out = {f"{prefix}/gap/{i}": g for i, g in enumerate(gaps)}
    out[f"{prefix}/gap_excess_q100"] = max(gaps) - mean
    return out


def test_tolerance_verdicts_allow_for_the_floor():
    fields = _fields([0.0, 0.01, 0.05, 0.02])  # mean 0.02, largest excess 0.03
    assert not damage.tolerance_fields(fields, None, 0.02)["damage/passes_tolerance"]
    assert damage.tolerance_fields(fields, None, 0.03)["damage/passes_tolerance"]
    floor = _fields([0.0, 0.02, -0.02, 0.0], "floor")  # largest excess 0.02, largest absolute gap 0.02
    verdict = damage.tolerance_fields(fields, floor, 0.02)
    assert verdict["damage/passes_tolerance"] and verdict["damage/has_floor"]  # 0.03 <= 0.02 + 0.02
    assert verdict["damage/tolerance_margin"] == pytest.approx(0.01)
    assert not verdict["damage/passes_own"]  # 0.05 > 0.02 + 0.02
    assert damage.tolerance_fields(fields, floor, 0.03)["damage/passes_own"]
    uniform = _fields([0.2, 0.2, 0.2, 0.2])  # every class lost the same: within epsilon of the mean, not of its own
    both = damage.tolerance_fields(uniform, None, 0.02)
    assert both["damage/passes_tolerance"] and not both["damage/passes_own"]


def test_class_safe_sparsity_is_the_last_sparsity_before_the_first_failure():
    rows = [
        {"sparsity": s, "damage/passes_tolerance": ok} for s, ok in [(0, True), (0.5, True), (0.75, False), (0.9, True)]
    ]
    assert damage.class_safe_sparsity(rows) == 0.5
    assert damage.class_safe_sparsity(rows[:2]) == 0.5
    assert damage.class_safe_sparsity([{"sparsity": 0.0}]) is None
    assert damage.class_safe_sparsity([{"sparsity": 0.0, "damage/passes_tolerance": False}]) is None


@pytest.mark.parametrize(
    "override, key",
    [
        ("class_tolerance=-0.1", "class_tolerance"),
        ("class_metrics.null_seed=0", "class_metrics.null_seed"),  # the run's own seed
        ("class_metrics.null_seed=-3", "class_metrics.null_seed"),
        ("class_metrics.ece_bins=0", "class_metrics.ece_bins"),
        ("class_metrics.uncertain_below=1.5", "class_metrics.uncertain_below"),
    ],
)
def test_bad_class_metric_settings_are_refused_naming_the_key(override, key):
    cfg = compose_cfg([override])
    with pytest.raises(PrunelabError) as err:
        checks.check_config(cfg, machine=False)
    assert err.value.key == key


@pytest.fixture(scope="module")
def floor_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("damage")
    args = ["logger=wandb", "trainer.max_epochs=1", "schedule.rounds=2", "class_metrics.null_seed=5"]
    args += ["quantize=dynamic_int8", "calibrate=thresholds"]
    proc = cli(args, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(out)
    return out, run_dir, proc


def _npz(path):
    with np.load(path) as f:
        return f["probs"].astype(np.float64), f["labels"]


def test_a_run_records_damage_and_its_floor_from_its_own_predictions(floor_run):
    _, run_dir, proc = floor_run
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    dense, labels = _npz(run_dir / "rounds" / "r00" / "predictions.npz")
    null, null_labels = _npz(run_dir / "null" / "rounds" / "r00" / "predictions.npz")
    assert np.array_equal(labels, null_labels) and not np.array_equal(dense, null)  # another seed, same test set
    floor = {k.replace("floor/", "", 1): v for k, v in rows[0].items() if k.startswith("floor/")}
    for r, row in enumerate(rows):
        probs, _ = _npz(run_dir / "rounds" / f"r{r:02d}" / "predictions.npz")
        ref = dense.argmax(1)
        for c in range(10):
            mine = labels == c
            assert row[f"damage/flip/{c}"] == pytest.approx((probs.argmax(1)[mine] != ref[mine]).mean())
            assert row[f"damage/gap/{c}"] == pytest.approx(
                (ref[mine] == c).mean() - (probs.argmax(1)[mine] == c).mean()
            )
            assert row[f"floor/flip/{c}"] == pytest.approx((null.argmax(1)[mine] != ref[mine]).mean())
        assert {k.replace("floor/", "", 1): v for k, v in row.items() if k.startswith("floor/")} == floor
        assert row["damage/has_floor"] is True and row["damage/tolerance"] == 0.02
        bound = 0.02 + max(0.0, floor["gap_excess_q100"])
        assert row["damage/passes_tolerance"] == (row["damage/gap_excess_q100"] <= bound + 1e-12)
    assert rows[0]["damage/flip"] == 0 and rows[0]["damage/passes_tolerance"] is True
    quant = run_dir / "rounds" / "r02" / "quant" / "dynamic_int8"  # a quantized copy: against the dense float model
    qrow = json.loads((quant / "metrics.json").read_text())
    qprobs, _ = _npz(quant / "predictions.npz")
    assert qrow["damage/flip"] == pytest.approx((qprobs.argmax(1) != dense.argmax(1)).mean())
    assert qrow["floor/flip"] == floor["flip"] and "damage/passes_tolerance" in qrow
    expected = damage.class_safe_sparsity(rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["class_safe_sparsity"] == expected
    assert "class-safe sparsity" in proc.stdout and "noise floor, dense vs dense" in proc.stdout
    heads = [line for line in proc.stdout.splitlines() if "class tol." in line]
    assert len(heads) == 1 and "sparsity" in heads[0]  # the final table's head has the damage columns


def test_recorded_thresholds_come_from_the_saved_validation_predictions_alone(floor_run):
    from prunelab.training import calibrate

    _, run_dir, _ = floor_run
    rows = _rows(run_dir)
    for r, row in enumerate(rows):
        val_probs, val_labels = _npz(run_dir / "rounds" / f"r{r:02d}" / "val_predictions.npz")
        test_probs, test_labels = _npz(run_dir / "rounds" / f"r{r:02d}" / "predictions.npz")
        assert len(val_labels) != len(test_labels) or not np.array_equal(val_probs, test_probs)
        offsets = calibrate.fit_offsets(val_probs, val_labels)
        assert [row[f"calibrated/offset/{c}"] for c in range(10)] == pytest.approx(offsets.tolist())
        decided = calibrate.apply(test_probs, offsets).argmax(1)
        assert row["calibrated/test/acc"] == pytest.approx((decided == test_labels).mean())
        assert row["test/acc"] == pytest.approx((test_probs.argmax(1) == test_labels).mean())


def test_the_damage_reaches_wandb_and_load_run(floor_run):
    import prunelab
    from prunelab.analysis.wandb_offline import read_history, read_summary, run_files

    _, run_dir, _ = floor_run
    (wandb_file,) = run_files(run_dir)  # the null model logs nowhere: one W&B run
    history = [row for row in read_history(wandb_file) if "round/damage/flip" in row]
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [h["prune/round"] for h in history] == [0, 1, 2]
    for h, row in zip(history, rows, strict=True):
        assert h["round/damage/flip"] == pytest.approx(row["damage/flip"])
        assert h["round/floor/gap_max"] == pytest.approx(row["floor/gap_max"])
        assert h["round/damage/passes_tolerance"] == float(row["damage/passes_tolerance"])
        assert "round/damage/gap/3" in h and "round/floor/dfnr/3" in h
    run = prunelab.load_run(run_dir)
    assert run.class_safe_sparsity == damage.class_safe_sparsity(rows)
    assert read_summary(wandb_file).get("class_safe_sparsity") == run.class_safe_sparsity
    table = run.class_damage(2)
    assert list(table.index) == [str(c) for c in range(10)]
    assert table.loc["3", "gap"] == pytest.approx(rows[2]["damage/gap/3"])
    assert table.loc["3", "floor_flip"] == pytest.approx(rows[2]["floor/flip/3"])
    assert "damage/gap_std" in run.metrics.columns


STOP = [
    "logger=csv",
    "trainer.max_epochs=1",
    "schedule.rounds=4",
    "class_tolerance=0.0",
    "schedule.stop_when=tolerance",
]


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_stop_when_stops_at_the_first_failing_round_and_resumes_to_the_same_decision(tmp_path):
    import shutil

    proc = cli([*STOP, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "run"
    rows, summary = _rows(run_dir), json.loads((run_dir / "summary.json").read_text())
    first_fail = next(r["round"] for r in rows if not r["damage/passes_tolerance"])
    assert first_fail < 4, "class_tolerance=0 should fail before the last round on digits"
    assert [r["round"] for r in rows] == list(range(first_fail + 1))  # nothing trained after the failing round
    assert summary["stopped"]["after_round"] == first_fail and "damage/passes_tolerance" in summary["stopped"]["reason"]
    assert f"stopped after round {first_fail}" in proc.stdout
    # as if killed with SIGKILL after the failing round was recorded (before the summary), and during that round
    for name, keep in (("after", first_fail + 1), ("during", first_fail)):
        copy = tmp_path / name
        shutil.copytree(run_dir, copy)
        for r in sorted((copy / "rounds").iterdir())[keep:]:
            shutil.rmtree(r)
        (copy / "summary.json").write_text(json.dumps({"status": "running"}))
        again = cli([*STOP, f"hydra.run.dir={copy}"], tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        resumed = json.loads((copy / "summary.json").read_text())
        assert resumed["status"] == "complete" and resumed["stopped"] == summary["stopped"], name
        assert [r["round"] for r in _rows(copy)] == [r["round"] for r in rows]
        assert not (copy / "rounds" / f"r{first_fail + 1:02d}").exists()
    skipped = cli([*STOP, f"hydra.run.dir={run_dir}"], tmp_path)
    assert skipped.returncode == 0 and "nothing to do" in skipped.stdout  # a stopped run is complete


@pytest.mark.parametrize(
    "override, key",
    [
        ("schedule.stop_when={on:test/fn/3}", "schedule.stop_when.on"),  # lower is better
        ("schedule.stop_when={on:test/recall/33}", "schedule.stop_when.on"),  # no such class
        ("schedule.stop_when={on:tolerance,patience:0}", "schedule.stop_when.patience"),
        ("schedule.stop_when={on:test/acc,delta:-1}", "schedule.stop_when.delta"),
        ("schedule.stop_when={when:tolerance}", "schedule.stop_when.when"),
    ],
)
def test_bad_stop_rules_get_one_line_naming_the_key(tmp_path, override, key):
    proc = cli(["logger=none", override], tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prunelab: error: {key}"), proc.stderr
    assert not list(tmp_path.rglob("summary.json"))  # nothing half-written


def test_stop_rule_decisions_on_records():
    from prunelab.pruning.stopping import StopRule

    rows = [{"round": r, "test/recall/a": v} for r, v in enumerate([0.9, 0.88, 0.84, 0.83, 0.95])]
    rule = StopRule.parse({"on": "test/recall/a", "delta": 0.05, "patience": 2})
    assert [rule.decision(rows[: k + 1]) is not None for k in range(5)] == [False, False, False, True, False]
    assert rule.decision(rows[:4])["after_round"] == 3 and "rounds 2..3" in rule.decision(rows[:4])["reason"]
    assert StopRule.parse({"on": "test/recall/a", "delta": 0.08}).decision(rows[:4]) is None  # 0.83 >= 0.9 - 0.08
    verdicts = [{"round": r, "damage/passes_tolerance": ok} for r, ok in enumerate([True, False])]
    assert StopRule.parse("tolerance").decision(verdicts)["after_round"] == 1
    assert StopRule.parse(None) is None


def _skewed(rng, n, c, bias):
    labels = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[labels] + bias
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True), labels


def test_thresholds_match_predicted_counts_to_true_counts_on_validation():
    from prunelab.training import calibrate

    rng = np.random.default_rng(3)
    probs, labels = _skewed(rng, 400, 2, np.array([0.0, -1.2]))  # the positive class under-predicted
    offsets = calibrate.fit_offsets(probs, labels, positive_class=1)
    decided = calibrate.apply(probs, offsets).argmax(1)
    assert (decided == 1).sum() == (labels == 1).sum() != (probs.argmax(1) == 1).sum()
    probs, labels = _skewed(rng, 600, 4, np.array([0.8, 0.0, -0.5, -1.0]))
    raw = np.abs(np.bincount(probs.argmax(1), minlength=4) - np.bincount(labels, minlength=4)).sum()
    decided = calibrate.apply(probs, calibrate.fit_offsets(probs, labels)).argmax(1)
    fitted = np.abs(np.bincount(decided, minlength=4) - np.bincount(labels, minlength=4)).sum()
    assert fitted <= 0.1 * raw and raw > 50


def test_thresholds_never_read_test_labels():
    from prunelab.training import calibrate

    rng = np.random.default_rng(4)
    val = _skewed(rng, 300, 3, np.array([0.5, 0.0, -0.5]))
    test_probs, test_labels = _skewed(rng, 200, 3, np.array([0.5, 0.0, -0.5]))
    names = ["a", "b", "c"]
    one = calibrate.calibrated_fields(val, test_probs, test_labels, names)
    shuffled = calibrate.calibrated_fields(val, test_probs, rng.permutation(test_labels), names)
    nonsense = calibrate.calibrated_fields(val, test_probs, np.zeros_like(test_labels), names)
    for other in (shuffled, nonsense):  # the test labels change the scores, never the thresholds
        assert {k: v for k, v in other.items() if "/offset/" in k} == {k: v for k, v in one.items() if "/offset/" in k}
    assert one["calibrated/test/acc"] != nonsense["calibrated/test/acc"]


def test_calibrate_must_be_known():
    cfg = compose_cfg(["calibrate=platt"])
    with pytest.raises(PrunelabError) as err:
        checks.check_config(cfg, machine=False)
    assert err.value.key == "calibrate"


def test_report_shows_class_damage_beside_its_floor(floor_run):
    import csv

    out, run_dir, _ = floor_run
    rep = cli(["report", str(run_dir), "--out", str(out / "rep")], out)
    assert rep.returncode == 0, rep.stderr[-2000:]
    with open(out / "rep" / "class_damage.csv") as f:
        (row,) = list(csv.DictReader(f))
    last = _rows(run_dir)[-1]
    assert float(row["flip"]) == pytest.approx(last["damage/flip"]) and float(row["floor_flip"]) == pytest.approx(
        last["floor/flip"]
    )
    assert float(row["class_safe_sparsity"]) == pytest.approx(damage.class_safe_sparsity(_rows(run_dir)))
    manifest = json.loads((out / "rep" / "figures.json").read_text())
    (heat,) = [m for m in manifest if m["kind"] == "class_gap_flip"]
    assert heat["gap_scale"][0] == -heat["gap_scale"][1] and heat["flip_scale"][0] == 0
    kinds = {m["kind"] for m in manifest}
    assert {"tolerance_band", "recalibrated_worst_recall"} <= kinds
    for m in manifest:
        assert (out / "rep" / m["file"]).stat().st_size > 5000
    html = (out / "rep" / "report.html").read_text()
    galleries = list((out / "rep").glob("pie_gallery_*.png"))  # iterative runs: PIEs of the last round
    assert "Class damage" in html and html.count("<img ") == len(manifest) + len(galleries)


def test_seed_floor_is_the_symmetric_mean_over_dense_pairs(tmp_path):
    from itertools import permutations

    from prunelab.analysis import class_damage as report_damage
    from prunelab.runs import files
    from prunelab.runs.folders import Run

    rng = np.random.default_rng(7)
    labels = rng.integers(0, len(NAMES), 200)
    runs = []
    for seed in range(3):
        path = tmp_path / f"s{seed}"
        files.save_predictions(path / "rounds" / "r00" / "predictions.npz", _probs(rng, labels, 0.8), labels)
        rows = [
            {"round": 0, "sparsity": 0.0, "damage/gap_excess_q100": 0.0, "damage/tolerance": 0.02},
            {"round": 1, "sparsity": 0.5, "damage/gap_excess_q100": 0.05, "damage/tolerance": 0.02},
        ]
        runs.append(Run(path, "complete", {"seed": seed}, rows, None, NAMES))
    floor = report_damage.seed_floor(runs)
    dense = [r.predictions(0)[0] for r in runs]
    pairs = [damage.damage_fields(a, b, labels, NAMES) for a, b in permutations(dense, 2)]
    assert floor["seed_floor_flip"] == pytest.approx(np.mean([p["damage/flip"] for p in pairs]))
    assert floor["seed_floor_excess_gap"] == pytest.approx(np.mean([p["damage/gap_excess_q100"] for p in pairs]))
    assert report_damage.seed_floor(list(reversed(runs))) == pytest.approx(floor)  # the order does not matter
    assert report_damage.safe_with_floor(runs[0], 0.0) == 0.0  # 0.05 > 0.02: round 1 fails without a floor
    assert report_damage.safe_with_floor(runs[0], 0.04) == 0.5  # and passes once the seed spread is allowed for
