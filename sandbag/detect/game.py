"""The auditing game's statistics: AUROC with a bootstrap interval, TPR at a fixed FPR."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    ok = np.isfinite(scores)
    if len(np.unique(labels[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(labels[ok], scores[ok]))


def auroc_ci(scores, labels, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap over members, resampling organisms and controls separately."""
    ok = np.isfinite(scores)
    pos, neg = np.flatnonzero(ok & (labels == 1)), np.flatnonzero(ok & (labels == 0))
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(pos, len(pos)), rng.choice(neg, len(neg))])
        stats.append(roc_auc_score(labels[idx], scores[idx]) if len(np.unique(scores[idx])) > 1 else 0.5)
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def tpr_at_fpr(scores, labels, fpr: float = 0.05) -> float:
    ok = np.isfinite(scores)
    if len(np.unique(labels[ok])) < 2:
        return float("nan")
    f, t, _ = roc_curve(labels[ok], scores[ok])
    return float(t[f <= fpr + 1e-12].max())
