"""The capability ladder's acceptance criteria, defined once: ``experiments/check_criteria.py``
checks a finished run with them, ``+experiment=gap_scan`` lists the (weak, strong) pairs that
meet them, and every later experiment refuses a pair whose gap is below ``MIN_GAP``.

A pair is worth running organisms on only if the weak rung is a competent supervisor where
the task is easy and helpless where it is hard, the strong rung knows what the weak one does
not, and difficulty means the same thing to both (accuracy does not rise with it). The scan
adds one criterion a single run cannot check: the weak rung's curve is the same across seeds,
so the gap is a capacity limit rather than an optimisation lottery (eight-operand addition's
one-layer rung reached 0.16 or 0.99 on one operand depending on the seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EASY_MIN = 0.9  # the weak rung's accuracy on the easiest level, at least
HARD_MAX = 0.3  # ... and on the hardest level, at most
MIN_GAP = 0.6  # some level with strong - weak at least this (``gap_max``)
RISE_MAX = 0.05  # neither rung's accuracy rises by more than this from one level to the next
# The weak rung's seeds agree within this at every level (max - min). The shipped ladders'
# weak rungs spread by 0.11 at one level over four seeds (REPORT.md); the unstable ones by 0.5+.
SPREAD_MAX = 0.15

Check = tuple[str, bool, str]  # (criterion, passed, the measured numbers)


def ladder_checks(weak, strong, min_gap: float = MIN_GAP) -> list[Check]:
    """The four criteria of one run: per-level accuracies of the weak and strong rungs, easiest first."""
    w, s = np.asarray(weak, float), np.asarray(strong, float)
    gaps = s - w
    rise = max(float(np.diff(x).max()) for x in (w, s)) if len(w) > 1 else 0.0
    return [
        (f"weak >= {EASY_MIN} on the easiest level", w[0] >= EASY_MIN, f"{w[0]:.2f}"),
        (f"weak <= {HARD_MAX} on the hardest level", w[-1] <= HARD_MAX, f"{w[-1]:.2f}"),
        (f"some level with strong - weak >= {min_gap}", gaps.max() >= min_gap, f"max gap {gaps.max():.2f}"),
        (f"no rise > {RISE_MAX} between levels", rise <= RISE_MAX, f"largest rise {rise:+.2f}"),
    ]


def stability_check(weak_SxK) -> Check:
    """The weak rung's per-seed curves [seeds, levels] agree within ``SPREAD_MAX`` at every level."""
    spread = float(np.ptp(np.asarray(weak_SxK, float), axis=0).max())
    return (f"weak seeds within {SPREAD_MAX} at every level", spread <= SPREAD_MAX, f"spread {spread:.2f}")


@dataclass(frozen=True)
class Pair:
    weak: str
    strong: str
    gap: float  # strong - weak over all levels (equal items per level: the mean of the level gaps)
    gap_max: float  # the largest per-level strong - weak
    level: int  # the index (from 0, easiest first) of the level where gap_max is reached
    checks: list[Check]

    @property
    def passes(self) -> bool:
        return all(ok for _, ok, _ in self.checks)

    @property
    def name(self) -> str:
        return f"{self.weak}_{self.strong}"


def scan_pairs(accs: dict[str, np.ndarray], min_gap: float = MIN_GAP) -> list[Pair]:
    """Every (weak, strong) pair of rungs, weak before strong in ``accs``' order (smallest first),
    with its gaps and criteria. ``accs[rung]`` is [seeds, levels], easiest level first."""
    names = list(accs)
    pairs = []
    for i, weak in enumerate(names):
        for strong in names[i + 1 :]:
            w, s = np.asarray(accs[weak], float), np.asarray(accs[strong], float)
            wm, sm = w.mean(0), s.mean(0)
            gaps = sm - wm
            checks = [*ladder_checks(wm, sm, min_gap), stability_check(w)]
            pairs.append(
                Pair(weak, strong, float(gaps.mean()), float(gaps.max()), int(gaps.argmax()), checks)
            )
    return pairs
