"""P3 PLS criterion: prunelab's PLS + VIP scoring against scikit-learn ``PLSRegression`` + VIP.

The problem size of Jordao et al.'s VGG-16: N = 10,000 samples of F = 4,224 pooled filter responses (every filter of
VGG-16's 13 convs), C = 10 one-hot classes, two components, ``scale=True``. Features are synthetic (a few hundred
informative filters, the rest noise, some dead = constant), float32 as the network would emit them.
- scikit-learn: ``PLSRegression(n_components=2, scale=True).fit(X, Y)`` with its default NIPALS tolerance (the
  authors' call), then VIP from its ``x_scores_``, ``x_weights_``, ``y_loadings_`` (vectorised, as prunelab's test);
  on the float32 features as given (scikit-learn then computes in float32, as the authors' code did) and on a
  float64 copy;
- prunelab: ``prunelab.pruning.pls.pls_vip`` (closed-form dominant singular vector per component).
Ranking agreement: Spearman correlation, the overlap of the lowest-VIP 10% (the filters a step removes) and the
number of rank positions that differ, against scikit-learn (default tolerance; ``tol=1e-13``) and against an
independent textbook float64 PLS (explicit standardisation and deflation, numpy's exact SVD), the reference.
Target: >= 10x faster, same ranking.

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


def textbook_vip(x: np.ndarray, y: np.ndarray, n_components: int = 2) -> np.ndarray:
    """An independent float64 reference: explicit standardisation and deflation, exact SVD (numpy), VIP."""
    x = x.astype(np.float64)
    x = (x - x.mean(0)) / np.where(x.std(0, ddof=1) > 0, x.std(0, ddof=1), 1.0)
    y = (y - y.mean(0)) / np.where(y.std(0, ddof=1) > 0, y.std(0, ddof=1), 1.0)
    ws, ts, qs = [], [], []
    for _ in range(n_components):
        w = np.linalg.svd(x.T @ y, full_matrices=False)[0][:, 0]
        t = x @ w
        tt = t @ t
        p, q = x.T @ t / tt, y.T @ t / tt
        x, y = x - np.outer(t, p), y - np.outer(t, q)
        ws.append(w), ts.append(t), qs.append(q)
    w, t, q = np.stack(ws, 1), np.stack(ts, 1), np.stack(qs, 1)
    s = np.diag(t.T @ t @ q.T @ q)
    return np.sqrt(w.shape[0] * ((w / np.linalg.norm(w, axis=0)) ** 2 @ s) / s.sum())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--f", type=int, default=4_224)
    parser.add_argument("--c", type=int, default=10)
    args = parser.parse_args(argv)
    x, y = features(args.n, args.f, args.c)
    x64 = x.astype(np.float64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    out: dict[str, np.ndarray] = {}

    def ours() -> None:
        out["prunelab"] = pls_vip(xt, yt).numpy()

    def sk32() -> None:  # scikit-learn keeps float32 input in float32 (Jordao et al.'s features are float32)
        out["sklearn float32"] = sklearn_vip(x, y)

    def sk64() -> None:
        out["sklearn float64"] = sklearn_vip(x64, y)

    med = interleaved({"sk32": sk32, "sk64": sk64, "prunelab": ours}, args.reps)
    exact_s = timed(
        lambda: out.__setitem__("sklearn float64, tol=1e-13", sklearn_vip(x64, y, tol=1e-13, max_iter=10_000))
    )
    out["textbook float64 (numpy SVD)"] = textbook_vip(x, y)
    k = args.f // 10
    lowest = {name: set(np.argsort(v, kind="stable")[:k]) for name, v in out.items()}
    rows = [
        ["scikit-learn PLSRegression + VIP, float32 features, default tol", med["sk32"], 1.0, ""],
        ["scikit-learn, float64 features, default tol", med["sk64"], med["sk32"] / med["sk64"], ""],
        ["scikit-learn, float64, tol=1e-13 (one run)", exact_s, med["sk32"] / exact_s, ""],
        [
            "prunelab pls_vip (float64 inside)",
            med["prunelab"],
            med["sk32"] / med["prunelab"],
            verdict(med["sk32"] / med["prunelab"], 10.0),
        ],
    ]
    agree = []
    for ref in ("sklearn float32", "sklearn float64", "sklearn float64, tol=1e-13", "textbook float64 (numpy SVD)"):
        a, b = np.argsort(out["prunelab"], kind="stable"), np.argsort(out[ref], kind="stable")
        rho = float(spearmanr(out["prunelab"], out[ref]).statistic)
        overlap = len(lowest["prunelab"] & lowest[ref]) / k
        rel = float(np.max(np.abs(out["prunelab"] - out[ref])) / np.max(np.abs(out[ref])))
        agree.append([ref, rho, overlap, int((a != b).sum()), f"{rel:.1e}"])
    print_table(
        f"P3 PLS + VIP: N={args.n}, F={args.f}, C={args.c}, 2 components, {torch.get_num_threads()} threads, "
        f"median of {args.reps} (target >= 10x, same ranking)",
        ["scorer", "seconds", "speedup vs sklearn float32", "target"],
        rows,
    )
    print_table(
        "P3 ranking agreement of prunelab's VIP",
        ["against", "Spearman", f"lowest-{k} overlap", "rank positions that differ", "max VIP diff / max VIP"],
        agree,
    )
    return [{"speedup": med["sk32"] / med["prunelab"], "agreement": agree}]


if __name__ == "__main__":
    main()
