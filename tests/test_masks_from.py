"""Issue 14: rewind.masks_from, the paper's reinit control (Frankle & Carbin): every round trains the ticket run's
own masks of that round from a fresh initialisation; the run id holds the masks' content, not the folder's path."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from prunelab.config.identity import run_id
from prunelab.errors import PrunelabError
from prunelab.runs import masks_from as source
from tests.conftest import cli, compose_cfg, run_dirs
from tests.test_faults import one_line_error

FAST = ["logger=none", "trainer.max_epochs=1", "schedule.rounds=2"]


@pytest.fixture(scope="module")
def ticket(tmp_path_factory):
    out = tmp_path_factory.mktemp("ticket")
    proc = cli([*FAST, "rewind=init"], out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(out)
    return run


def masks_of(run, r):
    return torch.load(run / "rounds" / f"r{r:02d}" / "masks.pt", weights_only=True)


def test_reinit_trains_the_tickets_masks_each_round(ticket, tmp_path):
    proc = cli([*FAST, "rewind=reinit", f"rewind.masks_from={ticket.parent}"], tmp_path)  # the sweep-style folder
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = run_dirs(tmp_path)
    for r in (1, 2):
        theirs, ours = masks_of(ticket, r), masks_of(run, r)
        assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    model = torch.load(run / "rounds" / "r02" / "model.pt", weights_only=True)
    ticket_model = torch.load(ticket / "rounds" / "r02" / "model.pt", weights_only=True)
    assert any(not torch.equal(model[k], ticket_model[k]) for k in model if k.endswith("original"))  # fresh init
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    ticket_rows = [json.loads(x) for x in (ticket / "results.jsonl").read_text().splitlines()]
    assert [r["sparsity"] for r in rows] == [r["sparsity"] for r in ticket_rows]
    recorded = (run / "run_config.yaml").read_text()
    assert f"masks_sha1: {source.fingerprint(ticket)}" in recorded


def test_the_run_id_follows_the_masks_content_not_the_path(ticket, tmp_path):
    ids = {}
    for name in ("a", "b"):
        shutil.copytree(ticket, tmp_path / name / ticket.name)
        ids[name] = run_id(compose_cfg([*FAST, "rewind=reinit", f"rewind.masks_from={tmp_path / name}"]))
    assert ids["a"] == ids["b"]  # a moved copy: the same masks, the same id
    other = tmp_path / "b" / ticket.name
    masks = masks_of(other, 2)
    name = next(iter(masks))
    masks[name] = torch.zeros_like(masks[name])
    torch.save(masks, other / "rounds" / "r02" / "masks.pt")
    record = json.loads((other / "rounds" / "r02" / "metrics.json").read_text())
    from prunelab.runs.files import digest

    record["files"]["rounds/r02/masks.pt"] = digest(other / "rounds" / "r02" / "masks.pt")
    (other / "rounds" / "r02" / "metrics.json").write_text(json.dumps(record))
    (other / "summary.json").touch()
    changed = run_id(compose_cfg([*FAST, "rewind=reinit", f"rewind.masks_from={tmp_path / 'b'}"]))
    assert changed != ids["a"]  # other masks: another run
    assert run_id(compose_cfg([*FAST, "rewind=reinit"])) == run_id(
        compose_cfg([*FAST, "rewind=reinit", "rewind.masks_from=null"])
    )


def test_the_source_is_chosen_by_seed(ticket, tmp_path):
    model = compose_cfg(FAST).model
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(model, resolve=True)
    assert source.resolve(ticket.parent, 0, tree) == ticket
    with pytest.raises(PrunelabError, match="no finished run with seed 7"):
        source.resolve(ticket.parent, 7, tree)


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["rewind=reinit", "rewind.masks_from=/nonexistent/ticket"], "rewind.masks_from"),
        (["rewind=reinit", "rewind.masks_from={ticket}", "schedule.rounds=4"], "rewind.masks_from"),
        (["rewind=step", "+rewind.masks_from={ticket}"], "rewind.masks_from"),
        (["rewind=reinit", "rewind.masks_from={ticket}", "model.hidden=[16]"], "rewind.masks_from"),
    ],
    ids=["missing", "too-few-rounds", "step", "other-model"],
)
def test_bad_sources_are_refused_in_one_line(ticket, tmp_path, args, key):
    args = [a.replace("{ticket}", str(ticket)) for a in args]
    proc = cli(["logger=none", "trainer.max_epochs=1", "schedule.rounds=2", *args], tmp_path)
    one_line_error(proc, key)
    assert not list(tmp_path.rglob("rounds/r00/metrics.json"))  # nothing trained
