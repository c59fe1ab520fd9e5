"""Partial least squares (PLS2, regression deflation) and Variable Importance in Projection (VIP) scores.

Equivalent to scikit-learn's ``PLSRegression(n_components, scale=True)`` (NIPALS): X and Y are centred and scaled
by their standard deviation (ddof 1; constant columns are left unscaled). Each component's X weight vector is the
dominant left singular vector of XᵀY, which NIPALS reaches by power iteration; prunelab computes it directly
from the small F x C matrix XᵀY (one pass over X) instead of iterating over X, then deflates X and Y by the X
score (regression mode). VIP follows Jordao et al.'s code (after scikit-learn issue #7050):
``VIP_j = sqrt(F * sum_k s_k (W_jk / ||W_k||)^2 / sum_k s_k)`` with ``s = diag(TᵀT QᵀQ)``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _standardize(a: Tensor) -> Tensor:
    a = a - a.mean(0, keepdim=True)
    std = a.std(0, keepdim=True)
    return a / torch.where(std > 0, std, torch.ones_like(std))


class _Standardized:
    """X standardised (centred, divided by its column std) without ever materialising it: products with X and Xᵀ
    are computed from the raw matrix, ``Xs v = X0 (v / s) - 1 (μᵀ (v / s))`` and ``Xsᵀ u = (X0ᵀ u - μ (1ᵀ u)) / s``.

    X stays in its own dtype (float32 features are not copied to a float64 N x F array): every pass walks it in
    row blocks of a few MB, converts each block to float64 while it is in cache and accumulates in float64. The
    standardised and deflated copies a textbook NIPALS writes (several N x F arrays per component) are never made.
    """

    block_bytes = 2**20  # float64 bytes per row block: fits the last-level cache of small CPUs

    def __init__(self, x: Tensor, y: Tensor):
        self.x = x
        n, f = x.shape
        self.rows = max(1, self.block_bytes // (8 * max(f, 1)))
        # one pass: sums and sums of squares of X shifted by its first block's mean (the shifted-data algorithm:
        # no cancellation unless the data sit many standard deviations from that shift) and the cross product
        # with the centred y (Xcᵀ y = (X - k)ᵀ y when y's columns sum to zero)
        shift = x[: self.rows].to(torch.float64).mean(0)
        ones = torch.ones(n, 1, dtype=torch.float64, device=x.device)
        lhs = torch.cat([ones, y], 1)  # [1, y]: column sums and Xᵀ y in one product
        acc = torch.zeros(lhs.shape[1], f, dtype=torch.float64, device=x.device)
        s2 = torch.zeros(f, dtype=torch.float64, device=x.device)
        for i, b in self._blocks():
            b -= shift
            acc += lhs[i : i + self.rows].T @ b
            s2 += ones[i : i + self.rows, 0] @ b.square_()
        d = acc[0] / n
        self.mean = shift + d
        std = ((s2 - n * d.square()).clamp_min_(0) / max(n - 1, 1)).sqrt()
        self.scale = torch.where(std > 0, std, torch.ones_like(std))
        self.cross = acc[1:].T / self.scale[:, None]  # Xsᵀ y

    def _blocks(self):
        """(first row, float64 copy of the row block) for every block; the copy may be modified."""
        for i in range(0, self.x.shape[0], self.rows):
            yield i, self.x[i : i + self.rows].to(torch.float64, copy=True)

    def matvec(self, v: Tensor) -> Tensor:  # Xs @ v, v: (F,)
        u = v / self.scale
        return torch.cat([b @ u for _, b in self._blocks()]) - self.mean @ u

    def rmatvec(self, u: Tensor) -> Tensor:  # Xsᵀ @ u, u: (N,)
        # (uᵀ X)ᵀ per row block rather than Xᵀ u: the same product, but a row-major pass (~10x faster on CPU)
        acc = torch.zeros(self.x.shape[1], dtype=torch.float64, device=self.x.device)
        for i, b in self._blocks():
            acc += u[i : i + self.rows] @ b
        return (acc - self.mean * u.sum()) / self.scale


def pls(x: Tensor, y: Tensor, n_components: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """(x_weights W (F, k), x_scores T (N, k), y_loadings Q (C, k)) of PLS regression on standardised data.

    Deflation is kept implicit: after k components the deflated X is ``Xs - T Pᵀ``, so its products are the
    standardised products minus rank-k corrections (``X_k v = Xs v - T (Pᵀ v)``, ``X_kᵀ u = Xsᵀ u - P (Tᵀ u)``).
    """
    y = _standardize(y.double())
    xs = _Standardized(x, y)
    xs_y = xs.cross  # Xsᵀ Y: the only F x C product with the data; later ones follow from it
    weights: list[Tensor] = []
    scores: list[Tensor] = []
    x_loadings: list[Tensor] = []
    y_loadings: list[Tensor] = []
    xs_t: list[Tensor] = []
    for _ in range(n_components):
        # X_kᵀ Y_k with Y_k = Y - Σ t_j q_jᵀ and X_k = Xs - Σ t_j p_jᵀ (the last term is ~0: Tᵀ Y_k vanishes)
        cross = xs_y
        if scores:
            cross = cross - torch.stack(xs_t, 1) @ torch.stack(y_loadings, 1).T
            cross = cross - torch.stack(x_loadings, 1) @ (torch.stack(scores, 1).T @ y)
        u, _, _ = torch.linalg.svd(cross, full_matrices=False)
        w = u[:, 0]
        t = xs.matvec(w)
        if scores:
            t = t - torch.stack(scores, 1) @ (torch.stack(x_loadings, 1).T @ w)
        tt = t @ t
        q = y.T @ t / tt
        y = y - torch.outer(t, q)
        weights.append(w)
        y_loadings.append(q)
        if len(weights) == n_components:
            scores.append(t)
            break  # the last X loadings would feed only a next component: skip their pass over X
        r = xs.rmatvec(t)  # Xsᵀ t
        p = r
        if scores:
            p = p - torch.stack(x_loadings, 1) @ (torch.stack(scores, 1).T @ t)
        scores.append(t)
        x_loadings.append(p / tt)
        xs_t.append(r)
    return torch.stack(weights, 1), torch.stack(scores, 1), torch.stack(y_loadings, 1)


def vip(x_weights: Tensor, x_scores: Tensor, y_loadings: Tensor) -> Tensor:
    """VIP score of every X column (feature)."""
    s = torch.diag(x_scores.T @ x_scores @ y_loadings.T @ y_loadings)
    w_norm = x_weights / x_weights.norm(dim=0, keepdim=True)
    return torch.sqrt(x_weights.shape[0] * (w_norm.pow(2) @ s) / s.sum())


def pls_vip(x: Tensor, y_onehot: Tensor, n_components: int = 2) -> Tensor:
    return vip(*pls(x, y_onehot, n_components))
