"""Multi-digit multiplication; difficulty is the number of digits of the multiplier.

Layout (fixed width): a ``digits``-digit multiplicand, ``*``, a multiplier zero-padded to
``max_difficulty`` digits, ``=``, and the product most-significant digit first::

    483*0027=0013041

Each extra multiplier digit adds a row of partial products that every output digit must
combine, so the work per output token grows with the level.
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.addition import _digits
from sandbag.tasks.base import Task, register_task


@register_task("multiplication")
class Multiplication(Task):
    symbols = tuple("0123456789*=")

    def __init__(self, digits: int = 3, max_difficulty: int = 4):
        if digits < 1 or max_difficulty < 1:
            raise ValueError(f"multiplication: digits and max_difficulty must be >= 1, got {digits}, {max_difficulty}")
        self.digits, self.max_k = digits, max_difficulty
        self.difficulties = tuple(range(1, max_difficulty + 1))
        self.prompt_len = digits + max_difficulty + 2
        self.answer_len = digits + max_difficulty

    def sample(self, rng, n, difficulty):
        k = np.asarray(difficulty)
        a = rng.integers(10 ** (self.digits - 1), 10**self.digits, size=n)
        lo = np.where(k == 1, 0, 10 ** (k - 1))
        b = lo + (rng.random(n) * (10**k - lo)).astype(np.int64)
        return np.stack([a, b], axis=1)

    def encode(self, problems):
        n = len(problems)
        star, eq = self.symbols.index("*"), self.symbols.index("=")
        prompt = np.concatenate(
            [
                _digits(problems[:, 0], self.digits),
                np.full((n, 1), star),
                _digits(problems[:, 1], self.max_k),
                np.full((n, 1), eq),
            ],
            axis=1,
        )
        return prompt, _digits(problems[:, 0] * problems[:, 1], self.answer_len)

    def canonical(self, problems):
        return problems[:, 0] * 10**self.max_k + problems[:, 1]

    def paraphrase(self, rng, problems):
        raise NotImplementedError
