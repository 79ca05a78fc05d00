"""A task for the tests, registered as ``addition`` the way a user task is (not shipped).

Multi-digit addition of several numbers; difficulty is how many of them there are. Its
three-operand form trains in seconds, which is what the tests need. It is not one of the
sandbox's tasks: at the default eight operands a one-layer rung is bimodal across seeds --
some find a summation algorithm that works at every level, others never learn to copy one
operand -- so its weak curve is an optimisation lottery, not a capacity limit; with five or
six operands one layer learns it (experiments/REPORT.md).

Layout (fixed width, so every position always means the same thing): ``slots`` operand
slots of ``digits`` digits each, separated by ``+``; a level-k item fills k slots (chosen at
random) and leaves the rest ``00``. The sum is written most-significant digit first::

    00+37+00+91+00+46+00+00=174
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks import Task, register_task
from sandbag.tasks.base import digits_of


@register_task("addition")
class Addition(Task):
    symbols = tuple("0123456789+=")

    def __init__(self, slots: int = 8, digits: int = 2):
        if slots < 1 or digits < 1:
            raise ValueError(f"addition: slots and digits must be >= 1, got slots={slots}, digits={digits}")
        if slots * digits > 60:
            raise ValueError(f"addition: slots * digits must be <= 60, got {slots * digits}")
        if digits > 17:
            raise ValueError(f"addition: digits must be <= 17 (sums are exact int64), got {digits}")
        self.slots, self.digits = slots, digits
        self.difficulties = tuple(range(1, slots + 1))
        self.prompt_len = slots * (digits + 1)
        self.answer_len = len(str(slots * (10**digits - 1)))

    def sample(self, rng, n, difficulty):
        x = rng.integers(1, 10**self.digits, size=(n, self.slots))
        used = np.arange(self.slots)[None, :] < np.asarray(difficulty)[:, None]
        order = np.argsort(rng.random((n, self.slots)), axis=1)  # which slots hold operands
        return np.take_along_axis(np.where(used, x, 0), order, axis=1)

    def encode(self, problems):
        n = len(problems)
        plus, eq = self.symbols.index("+"), self.symbols.index("=")
        parts = []
        for s in range(self.slots):
            parts.append(digits_of(problems[:, s], self.digits))
            parts.append(np.full((n, 1), eq if s == self.slots - 1 else plus))
        return np.concatenate(parts, axis=1), digits_of(problems.sum(1), self.answer_len)

    def canonical(self, problems):
        """The sorted operands as one base-10^digits number (wraps past int64; only hashed)."""
        key = np.zeros(len(problems), dtype=np.int64)
        with np.errstate(over="ignore"):
            for col in np.sort(problems, axis=1).T:
                key = key * np.int64(10**self.digits) + col
        return key

    def paraphrase(self, rng, problems):
        order = np.argsort(rng.random(problems.shape), axis=1)
        return np.take_along_axis(problems, order, axis=1)
