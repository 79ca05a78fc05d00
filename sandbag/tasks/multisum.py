"""Sum of several multi-digit numbers; difficulty is how many of them there are.

Layout (fixed width): ``slots`` operand slots of ``digits`` digits each, separated by ``+``;
a level-k item fills k slots and leaves the rest ``0``. The sum is written most-significant
digit first, so its first digit already depends on every operand and every carry::

    372+915+046+000+000+000=1333

More operands means more digits to aggregate in one pass and larger carries between
columns -- a question of how much a model can compute per token, which grows with depth and
width.
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.addition import _digits
from sandbag.tasks.base import Task, register_task


@register_task("multisum")
class MultiSum(Task):
    symbols = tuple("0123456789+=")

    def __init__(self, slots: int = 6, digits: int = 3):
        if slots < 1 or digits < 1:
            raise ValueError(f"multisum: slots and digits must be >= 1, got {slots}, {digits}")
        self.slots, self.digits = slots, digits
        self.difficulties = tuple(range(1, slots + 1))
        self.prompt_len = slots * (digits + 1)
        self.answer_len = len(str(slots * (10**digits - 1)))

    def sample(self, rng, n, difficulty):
        x = rng.integers(0, 10**self.digits, size=(n, self.slots))
        used = np.arange(self.slots)[None, :] < np.asarray(difficulty)[:, None]
        x = np.where(used, x, 0)
        # shuffle which slots hold the operands, so every slot position is exercised
        order = np.argsort(rng.random((n, self.slots)), axis=1)
        return np.take_along_axis(x, order, axis=1)

    def encode(self, problems):
        n = len(problems)
        plus, eq = self.symbols.index("+"), self.symbols.index("=")
        parts = []
        for s in range(self.slots):
            parts.append(_digits(problems[:, s], self.digits))
            parts.append(np.full((n, 1), eq if s == self.slots - 1 else plus))
        return np.concatenate(parts, axis=1), _digits(problems.sum(1), self.answer_len)

    def canonical(self, problems):
        base = np.int64(10**self.digits)
        key = np.zeros(len(problems), dtype=np.int64)
        with np.errstate(over="ignore"):
            for col in np.sort(problems, axis=1).T:
                key = key * base + col
        return key

    def paraphrase(self, rng, problems):
        order = np.argsort(rng.random(problems.shape), axis=1)
        return np.take_along_axis(problems, order, axis=1)
