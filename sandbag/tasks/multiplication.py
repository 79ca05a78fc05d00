"""Multi-digit multiplication; difficulty is how many digits the two factors have.

Layout (fixed width): two factors zero-padded to ``width`` digits, then the product padded
to ``2 * width`` digits, most significant first::

    038*614=023332

Level k multiplies factors of ceil((k+1)/2) and floor((k+1)/2) digits: 1 x 1, 2 x 1, 2 x 2,
3 x 2, ... (``levels`` of them, at most ``2 * width - 1``); which factor comes first is random.

Why this task. Every product digit is a sum of pairwise digit products plus carries: a
bilinear computation a one-layer model can only approximate, with a precision that runs
out after the easiest level, while deeper rungs keep going. Measured at ``scale=cpu``: the
one-layer ``tiny`` rung stays at 0.13–0.23 on 2 x 1 (five runs), where the three-layer
``medium`` reaches 0.91–0.93 -- a capacity gap on a different computation from the sums.
Level 1 is the 45 facts of the times table: its splits hold a handful of facts each, so its
accuracy is coarse and asks a model to infer facts it never saw alone.
Paraphrase: swap the factors.
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.base import Task, digits_of, register_task


@register_task("multiplication")
class Multiplication(Task):
    symbols = tuple("0123456789*=")

    def __init__(self, levels: int = 4, width: int = 3):
        if not 1 <= width <= 9:
            raise ValueError(f"multiplication: width must be in 1..9 (products are exact int64), got {width}")
        if not 1 <= levels <= 2 * width - 1:
            top = 2 * width - 1
            raise ValueError(f"multiplication: levels must be in 1..{top} for width {width}, got {levels}")
        self.width = width
        self.difficulties = tuple(range(1, levels + 1))
        self.prompt_len = 2 * width + 2
        self.answer_len = 2 * width

    def sample(self, rng, n, difficulty):
        k = np.asarray(difficulty) + 1
        da, db = (k + 1) // 2, k // 2  # digits of the two factors
        a = rng.integers(10 ** (da - 1), 10**da, size=n)
        b = rng.integers(10 ** (db - 1), 10**db, size=n)
        swap = rng.random(n) < 0.5
        return np.stack([np.where(swap, b, a), np.where(swap, a, b)], axis=1)

    def encode(self, problems):
        n = len(problems)
        times, eq = self.symbols.index("*"), self.symbols.index("=")
        a, b = (digits_of(problems[:, i], self.width) for i in (0, 1))
        prompt = np.concatenate([a, np.full((n, 1), times), b, np.full((n, 1), eq)], axis=1)
        return prompt, digits_of(problems[:, 0] * problems[:, 1], self.answer_len)

    def canonical(self, problems):
        """The factors in order as one number."""
        s = np.sort(problems, axis=1)
        return s[:, 0] * np.int64(10**self.width) + s[:, 1]

    def paraphrase(self, rng, problems):
        return problems[:, ::-1].copy()
