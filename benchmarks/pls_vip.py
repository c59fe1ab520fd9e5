"""P3 PLS criterion: prunelab's PLS + VIP scoring against scikit-learn ``PLSRegression`` + VIP.

The problem size of Jordao et al.'s VGG-16: N = 10,000 samples of F = 4,224 pooled filter responses (every filter of
VGG-16's 13 convs), C = 10 one-hot classes, two components, ``scale=True``. Features are synthetic (a few hundred
informative filters, the rest noise, some dead = constant), float32 as the network would emit them.
- scikit-learn: ``PLSRegression(n_components=2, scale=True).fit(X, Y)`` with its default NIPALS tolerance (the
  authors' call), then VIP from its ``x_scores_``, ``x_weights_``, ``y_loadings_`` (vectorised, as prunelab's test);
- prunelab: ``prunelab.pruning.pls.pls_vip`` (closed-form dominant singular vector per component).
Ranking agreement: Spearman correlation and the overlap of the lowest-VIP 10% (the filters a step removes), against
scikit-learn at its default tolerance and run to convergence (``tol=1e-13``). Target: >= 10x faster, same ranking.

    python -m benchmarks.pls_vip [--reps 3] [--n 10000] [--f 4224]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.cross_decomposition import PLSRegression

from benchmarks.common import interleaved, print_table, timed, verdict
from prunelab.pruning.pls import pls_vip


def features(n: int, f: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(seed)
    labels = gen.integers(0, c, n)
    y = np.eye(c)[labels]
    x = gen.normal(size=(n, f)).astype(np.float32)
    k = f // 10
    x[:, :k] += (y @ gen.normal(size=(c, k)) * gen.uniform(0.1, 2.0, k)).astype(np.float32)
    x[:, k : k + f // 50] = 0.0  # dead filters (ReLU never fires)
    return x, y


def sklearn_vip(x: np.ndarray, y: np.ndarray, **kw) -> np.ndarray:
    p = PLSRegression(n_components=2, scale=True, **kw).fit(x, y)
    t, w, q = p.x_scores_, p.x_weights_, p.y_loadings_
    s = np.diag(t.T @ t @ q.T @ q)
    return np.sqrt(x.shape[1] * ((w / np.linalg.norm(w, axis=0)) ** 2 @ s) / s.sum())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--f", type=int, default=4_224)
    parser.add_argument("--c", type=int, default=10)
    args = parser.parse_args(argv)
    x, y = features(args.n, args.f, args.c)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out: dict[str, np.ndarray] = {}

    def ours() -> None:
        out["prunelab"] = pls_vip(xt, yt).numpy()

    def sk() -> None:
        out["sklearn"] = sklearn_vip(x, y)

    med = interleaved({"scikit-learn": sk, "prunelab": ours}, args.reps)
    exact_s = timed(lambda: out.__setitem__("exact", sklearn_vip(x, y, tol=1e-13, max_iter=10_000)))
    k = args.f // 10
    lowest = {name: set(np.argsort(v, kind="stable")[:k]) for name, v in out.items()}
    speedup = med["scikit-learn"] / med["prunelab"]
    rows = [
        ["scikit-learn PLSRegression + VIP (default tol)", med["scikit-learn"], 1.0, "", ""],
        ["scikit-learn, tol=1e-13 (one run)", exact_s, med["scikit-learn"] / exact_s, "", ""],
        ["prunelab pls_vip", med["prunelab"], speedup, verdict(speedup, 10.0), ""],
    ]
    agree = []
    for ref in ("sklearn", "exact"):
        rho = float(spearmanr(out["prunelab"], out[ref]).statistic)
        overlap = len(lowest["prunelab"] & lowest[ref]) / k
        same = bool((np.argsort(out["prunelab"], kind="stable") == np.argsort(out[ref], kind="stable")).all())
        agree.append([ref, rho, overlap, same, float(np.abs(out["prunelab"] - out[ref]).max())])
    print_table(
        f"P3 PLS + VIP: N={args.n}, F={args.f}, C={args.c}, 2 components, {torch.get_num_threads()} threads, "
        f"median of {args.reps} (target >= 10x, same ranking)",
        ["scorer", "seconds", "speedup vs sklearn", "target", ""],
        rows,
    )
    print_table(
        "P3 ranking agreement of prunelab's VIP",
        ["against scikit-learn", "Spearman", f"lowest-{k} overlap", "identical full ranking", "max |VIP diff|"],
        agree,
    )
    return [{"speedup": speedup, "agreement": agree}]


if __name__ == "__main__":
    main()
