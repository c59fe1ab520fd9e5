"""What ``prunelab --help``, ``--version``, ``prunelab list [group]`` and shell completion show.

Hydra's own help lists every node of the config repository, including the typed schemas prunelab stores as
``<group>/schema_<option>`` and shared files such as ``data/_base_.yaml``: neither is an option a user can pick.
Here only the real options are listed, each with the first sentence of its YAML header (its one-line description).
Hydra's own flags are listed by ``prunelab --hydra-help``.
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from prunelab import __version__
from prunelab.analysis.papers import names as paper_names
from prunelab.analysis.papers import registry
from prunelab.config.groups import config_groups, option_file


def hidden(option: str) -> bool:
    """Nodes that are not options: typed schemas and shared ``_name_`` files."""
    return option.startswith(("schema_", "_"))


def description(path: Path) -> str:
    """The first sentence of a YAML file's header comment (``# @package`` lines skipped)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if text.startswith("@package"):
            continue
        lines.append(text)
    text = " ".join(lines)
    match = re.match(r"(.+?(?<!\bal)(?<!\be\.g)(?<!\bi\.e)(?<!\bvs)(?<!\bFig)(?<!\bEq)[.:])(\s|$)", text)
    first = (match.group(1) if match else text).rstrip(":.")
    return first if len(first) <= 110 else first[:107].rstrip() + "..."


def options(group: str) -> list[tuple[str, str]]:
    out = []
    for name in config_groups().get(group, []):
        path = option_file(group, name)
        out.append((name, description(path) if path is not None else ""))
    return out


def list_text(group: str | None = None) -> str:
    groups = config_groups()
    if group is not None and group not in groups:
        raise KeyError(group)
    out = []
    for g in [group] if group else list(groups):
        opts = options(str(g))
        width = max((len(n) for n, _ in opts), default=0)
        out.append(f"{g}:")
        out += [f"  {n.ljust(width)}  {d}".rstrip() for n, d in opts]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def list_main(argv: list[str]) -> None:
    if len(argv) > 1 or (argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        print(
            f"prunelab: error: list: takes one group name, got {' '.join(argv)} (fix: prunelab list [group])",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: prunelab list [group]\n\nEach option of each config group (or of one), with its description.")
        return
    try:
        print(list_text(argv[0] if argv else None), end="")
    except KeyError:
        groups = ", ".join(config_groups())
        print(f"prunelab: error: list: unknown group {argv[0]!r} (fix: use one of {groups})", file=sys.stderr)
        raise SystemExit(2) from None


def main_help() -> str:
    groups = config_groups()
    width = max(len(g) for g in groups)
    group_lines = [
        textwrap.fill(", ".join(opts), 116, initial_indent=f"  {g.ljust(width)}  ", subsequent_indent=" " * (width + 4))
        for g, opts in groups.items()
    ]
    papers = ", ".join(paper_names())
    return f"""prunelab {__version__}: class-aware neural-network compression experiments (Hydra + Lightning).

usage:
  prunelab [group=option ...] [key=value ...]   run one experiment into outputs/runs/<name>/<run id>
                                                (rerunning the same command resumes or skips it)
  prunelab -m key=a,b [...]                     a sweep (Hydra multirun); a relaunch skips finished jobs
  prunelab list [group]                         every option of each config group, with its description
  prunelab report <folder> [...]                per-class report of runs and sweeps (prunelab report --help)
  prunelab reproduce <paper> [...]              a paper's CPU-scale reproduction: {papers}
                                                (prunelab reproduce --help: what each runs and how long)
  prunelab export <run> --format onnx|torchscript|pt2 [--round N]
                                                a round's model (compacted if structured), outputs checked
  prunelab --cfg job [overrides]                the composed config of a command, without running it
  prunelab --version                            prunelab's version
  prunelab --hydra-help                         Hydra's own flags (--multirun, --cfg, --info, completion, ...)

config groups (group=option; `prunelab list <group>` describes each option):
{chr(10).join(group_lines)}

examples:
  prunelab                                      the embedded default: digits, MLP, lottery-ticket pruning
  prunelab data=fashion_mnist model=cnn_small_bn criterion=l1_filter schedule.rate=0.5
  prunelab -m criterion=magnitude,random seed=0,1,2 && prunelab report outputs/multirun/digits-mlp
  prunelab experiment=lth_mnist rewind=reinit rewind.masks_from=<ticket run folder>

data: PRUNELAB_DATA_DIR or paths.data_dir; outputs: PRUNELAB_OUTPUT_DIR or paths.output_dir.
"""


def reproduce_help() -> str:
    rows = "\n".join(f"  {p.ljust(10)} {m.SPEC['seeds']:>2} seeds  {m.SPEC['time']}" for p, m in registry().items())
    return f"""usage: prunelab reproduce <paper> [--out DIR] [--seeds N] [--jobs J] [--sequential] [--doc FILE]
                          [override ...]

Runs one paper's CPU-scale sweep (Hydra multiruns: a relaunch skips finished jobs), then writes <out>/report
(the generic per-class report) and <out>/paper.md: a table shaped like the paper's, the paper's numbers beside
ours, and a verdict per claim (held / did not hold / inconclusive), each with its rule declared before the runs
(<out>/declaration.json), an interval, a t-based and an exact p, Holm over the secondary claims and the MDE.

papers, their declared seeds per setting and wall time on a 2-core CPU (each section of docs/reproductions.md
records the measured time of the launch that wrote it):
{rows}

options:
  --out DIR       where the runs and tables go (default: outputs/reproduce/<paper>)
  --seeds N       runs per setting (default: the paper's declared seeds; other counts make the table exploratory)
  --jobs J        jobs at once, each at the declared thread count (2 on a 2-core machine; results do not change)
  --sequential    one job per seed, even where the paper's command trains each population at once (hooker)
  --doc FILE      also write the stamped table into FILE's section for the paper (docs/reproductions.md)
  override ...    extra Hydra overrides for every job (e.g. trainer.max_epochs=2 for a quick look; exploratory)
"""


def filter_completion(text: str) -> str:
    """Shell-completion candidates without schemas and shared files (``criterion=schema_magnitude``)."""
    words = text.split(" ")
    keep = [w for w in words if not hidden(w.split("=", 1)[1] if "=" in w else "x")]
    return " ".join(keep)
