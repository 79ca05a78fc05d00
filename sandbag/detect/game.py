"""The auditing game's statistics: AUROC with an interval that respects how many independent
models there really are, and TPR at a fixed FPR.

Members that share a ceiling and a strategy are near-copies, so the bootstrap resamples whole
*clusters* (one ceiling x one strategy; a control trained from scratch is its own cluster),
positives and negatives separately. On perfectly separated data a bootstrap over a handful of
clusters collapses to [1, 1]; the interval is therefore widened to at least the Wilson score
interval of the AUROC read as a proportion over the effective number of independent clusters,
so three organisms against three controls can never claim certainty.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

# scikit-learn is imported inside the functions that use it (here, and in the probe, the
# combined detector and the ROC plot): importing it takes about a second, which every command
# line run, even one that only prints an error, would pay otherwise.


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = np.isfinite(scores)
    if len(np.unique(labels[ok])) < 2:
        return float("nan")
    return float(roc_auc_score(labels[ok], scores[ok]))


def _clusters(labels, clusters):
    return np.arange(len(labels)).astype(str) if clusters is None else np.asarray(clusters).astype(str)


def effective_n(scores, labels, clusters=None) -> float:
    """Independent evidence behind an AUROC: the harmonic mean of the numbers of positive and
    negative clusters among the scored members (a member per cluster when there are none)."""
    ok = np.isfinite(scores)
    c = _clusters(labels, clusters)
    a, b = (len(np.unique(c[ok & (labels == v)])) for v in (1, 0))
    return 0.0 if a == 0 or b == 0 else 2 * a * b / (a + b)


def wilson(p: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` observed over ``n`` trials."""
    z = NormalDist().inv_cdf((1 + level) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(centre - half), float(centre + half)


def auroc_ci(
    scores, labels, clusters=None, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Cluster bootstrap percentile interval, widened to the Wilson interval at ``effective_n``."""
    stats = bootstrap_aurocs(scores, labels, clusters, n_boot, seed)
    if stats is None:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    w_lo, w_hi = wilson(auroc(scores, labels), effective_n(scores, labels, clusters), level)
    return float(min(lo, w_lo)), float(max(hi, w_hi))


def bootstrap_aurocs(scores, labels, clusters=None, n_boot: int = 1000, seed: int = 0) -> np.ndarray | None:
    """The AUROC of ``n_boot`` resamples of whole clusters (positives' and negatives' drawn
    separately; each drawn cluster adds its finite members with their own labels), or None
    without both.

    A resample's AUROC is the Mann-Whitney statistic, the share of (positive, negative) pairs
    ranked right, ties counting half -- what ``roc_auc_score`` computes. The pairs are counted
    once per pair of clusters, so a resample costs a weighted sum over clusters instead of a
    call into scikit-learn, whose input checks were most of a smoke gap point's scoring time."""
    ok = np.isfinite(scores)
    c = _clusters(labels, clusters)
    pos = [np.flatnonzero(ok & (c == k)) for k in np.unique(c[ok & (labels == 1)])]
    neg = [np.flatnonzero(ok & (c == k)) for k in np.unique(c[ok & (labels == 0)])]
    if not pos or not neg:
        return None
    units = pos + neg  # right[u, v]: pairs ranked right, positives of cluster u x negatives of v
    x, y = np.asarray(scores, float), np.asarray(labels)
    p_of = [x[u[y[u] == 1]] for u in units]
    n_of = [x[u[y[u] == 0]] for u in units]
    right = np.zeros((len(units), len(units)))
    unit_of = np.repeat(np.arange(len(units)), [len(p) for p in p_of])
    every_p = np.concatenate(p_of)
    for v, n in enumerate(n_of):  # per negative unit: each positive's negatives below it, ties half
        n = np.sort(n)
        below, upto = np.searchsorted(n, every_p, "left"), np.searchsorted(n, every_p, "right")
        right[:, v] = np.bincount(unit_of, weights=below + 0.5 * (upto - below), minlength=len(units))
    rng = np.random.default_rng(seed)
    n_p, n_n = len(pos), len(neg)
    draws = [(rng.integers(0, n_p, n_p), rng.integers(0, n_n, n_n)) for _ in range(n_boot)]
    w = np.stack([np.bincount(np.r_[a, n_p + b], minlength=len(units)) for a, b in draws])
    n_pairs = (w @ [len(p) for p in p_of]) * (w @ [len(n) for n in n_of])
    return ((w @ right) * w).sum(axis=1) / n_pairs


def tpr_at_fpr(scores, labels, fpr: float = 0.05) -> float:
    from sklearn.metrics import roc_curve

    ok = np.isfinite(scores)
    if len(np.unique(labels[ok])) < 2:
        return float("nan")
    # every threshold: the default drops points on a straight stretch of the curve, which can
    # be the last one at or below ``fpr``
    f, t, _ = roc_curve(labels[ok], scores[ok], drop_intermediate=False)
    return float(t[f <= fpr + 1e-12].max())
