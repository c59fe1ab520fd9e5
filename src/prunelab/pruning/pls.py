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
    Each product is one pass over X0; the standardised and deflated copies a textbook NIPALS writes (several
    N x F arrays per component) are never made."""

    def __init__(self, x: Tensor):
        self.x = x.double() if x.dtype != torch.float64 else x
        n = self.x.shape[0]
        ones = torch.ones(n, dtype=torch.float64, device=self.x.device)
        self.mean = (ones @ self.x) / n
        # two-pass variance; column sums as a matrix-vector product (torch.std's Welford pass over dim 0 is ~5x slower)
        var = (ones @ (self.x - self.mean).square_()) / max(n - 1, 1)
        std = var.sqrt()
        self.scale = torch.where(std > 0, std, torch.ones_like(std))

    def matvec(self, v: Tensor) -> Tensor:  # Xs @ v, v: (F,) or (F, k)
        u = v / (self.scale if v.dim() == 1 else self.scale[:, None])
        return self.x @ u - self.mean @ u

    def rmatvec(self, u: Tensor) -> Tensor:  # Xsᵀ @ u, u: (N,) or (N, k)
        # (uᵀ X)ᵀ rather than Xᵀ u: the same product, but a row-major pass (Xᵀ @ skinny u is ~10x slower on CPU)
        if u.dim() == 1:
            return (u @ self.x - self.mean * u.sum()) / self.scale
        return (u.T @ self.x).T.sub(torch.outer(self.mean, u.sum(0))).div(self.scale[:, None])


def pls(x: Tensor, y: Tensor, n_components: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """(x_weights W (F, k), x_scores T (N, k), y_loadings Q (C, k)) of PLS regression on standardised data.

    Deflation is kept implicit: after k components the deflated X is ``Xs - T Pᵀ``, so its products are the
    standardised products minus rank-k corrections (``X_k v = Xs v - T (Pᵀ v)``, ``X_kᵀ u = Xsᵀ u - P (Tᵀ u)``).
    """
    xs = _Standardized(x)
    y = _standardize(y.double())
    xs_y = xs.rmatvec(y)  # Xsᵀ Y: the only F x C product with the data; later ones follow from it
    weights, scores, x_loadings, y_loadings, xs_t = [], [], [], [], []
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
        r = xs.rmatvec(t)  # Xsᵀ t
        p = r
        if scores:
            p = p - torch.stack(x_loadings, 1) @ (torch.stack(scores, 1).T @ t)
        p = p / tt
        q = y.T @ t / tt
        y = y - torch.outer(t, q)
        weights.append(w)
        scores.append(t)
        x_loadings.append(p)
        y_loadings.append(q)
        xs_t.append(r)
    return torch.stack(weights, 1), torch.stack(scores, 1), torch.stack(y_loadings, 1)


def vip(x_weights: Tensor, x_scores: Tensor, y_loadings: Tensor) -> Tensor:
    """VIP score of every X column (feature)."""
    s = torch.diag(x_scores.T @ x_scores @ y_loadings.T @ y_loadings)
    w_norm = x_weights / x_weights.norm(dim=0, keepdim=True)
    return torch.sqrt(x_weights.shape[0] * (w_norm.pow(2) @ s) / s.sum())


def pls_vip(x: Tensor, y_onehot: Tensor, n_components: int = 2) -> Tensor:
    return vip(*pls(x, y_onehot, n_components))
