"""Multi-digit multiplication; difficulty is how many digits the two factors have.

Layout (fixed width): two factors zero-padded to ``width`` digits, then the product padded
to ``2 * width`` digits, most significant first::

    038*614=023332

Level 1 multiplies a number of up to ``width`` digits by one: the product is the number
itself, so the level asks for alignment, not arithmetic. Level k >= 2 multiplies factors of
ceil((k+1)/2) and floor((k+1)/2) digits: 2 x 1, 2 x 2, 3 x 2, ... (``levels`` of them, at
most ``2 * width - 1``), neither a power of ten; which factor comes first is random.

Why this task. Every product digit is a sum of pairwise digit products plus carries: a
bilinear computation a one-layer model can only approximate, with a precision that runs
out after the easiest level, while deeper rungs keep going -- a capacity gap on a different
computation from the sums. Why level 1 is a product by one rather than the times table:
the 45 facts of the times table split 70/10/10/10 leave four facts in the eval split, so
that level's accuracy moved by 0.15 with one fact and rose and fell between runs; a product
by one has hundreds of distinct problems in every split. (A product by any power of ten,
a shift whose size the model must read off a factor, is already too hard for one layer:
0.79.) Paraphrase: swap the factors.
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
        level = np.broadcast_to(np.asarray(difficulty), (n,))
        k = level + 1
        da, db = (k + 1) // 2, k // 2  # digits of the two factors (level >= 2)
        # d digits, not a power of ten: 10^(d-1) + 1 .. 10^d - 1 (for one digit, 2..9).
        a = rng.integers(10 ** (da - 1) + 1, 10**da, size=n)
        b = rng.integers(10 ** (db - 1) + 1, 10**db, size=n)
        by_one = level == 1
        a = np.where(by_one, rng.integers(1, 10**self.width, size=n), a)
        b = np.where(by_one, 1, b)
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
