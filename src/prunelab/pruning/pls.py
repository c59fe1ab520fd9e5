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


def pls(x: Tensor, y: Tensor, n_components: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """(x_weights W (F, k), x_scores T (N, k), y_loadings Q (C, k)) of PLS regression on standardised data."""
    x, y = _standardize(x.double()), _standardize(y.double())
    weights, scores, y_loadings = [], [], []
    for _ in range(n_components):
        cross = x.T @ y  # (F, C)
        u, _, _ = torch.linalg.svd(cross, full_matrices=False)
        w = u[:, 0]
        t = x @ w
        tt = t @ t
        p = x.T @ t / tt
        q = y.T @ t / tt
        x = x - torch.outer(t, p)
        y = y - torch.outer(t, q)
        weights.append(w)
        scores.append(t)
        y_loadings.append(q)
    return torch.stack(weights, 1), torch.stack(scores, 1), torch.stack(y_loadings, 1)


def vip(x_weights: Tensor, x_scores: Tensor, y_loadings: Tensor) -> Tensor:
    """VIP score of every X column (feature)."""
    s = torch.diag(x_scores.T @ x_scores @ y_loadings.T @ y_loadings)
    w_norm = x_weights / x_weights.norm(dim=0, keepdim=True)
    return torch.sqrt(x_weights.shape[0] * (w_norm.pow(2) @ s) / s.sum())


def pls_vip(x: Tensor, y_onehot: Tensor, n_components: int = 2) -> Tensor:
    return vip(*pls(x, y_onehot, n_components))
