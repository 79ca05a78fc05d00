"""The signed sum of several numbers; difficulty is how many of them are non-zero.

Layout (fixed width): ``slots`` signed operand slots of ``digits`` digits, then ``=`` and
the result as a sign and its magnitude, most-significant digit first::

    +00-37+91-46+00=+008

Why this layout. Terms cancel: the sign of the result and every digit of its magnitude
depend on all operands, with borrows as well as carries, and each extra operand adds terms
to aggregate in one pass -- a question of how much a model computes per token, which grows
with depth and width: a capacity gap. (Plain multi-operand addition does not give one: one
layer learns five or six operands, and is bimodal across seeds at eight.)
Paraphrase: permute the signed operands.
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.base import Task, digits_of, register_task


@register_task("signed_sum")
class SignedSum(Task):
    symbols = tuple("0123456789+-=")

    def __init__(self, slots: int = 5, digits: int = 2):
        if slots < 1 or digits < 1:
            raise ValueError(f"signed_sum: slots and digits must be >= 1, got slots={slots}, digits={digits}")
        if slots * (digits + 1) > 60 or digits > 17:
            raise ValueError(
                f"signed_sum: slots * (digits + 1) must be <= 60 and digits <= 17, got {slots}, {digits}"
            )
        self.slots, self.digits = slots, digits
        self.difficulties = tuple(range(1, slots + 1))
        self.prompt_len = slots * (digits + 1) + 1
        self.answer_len = 1 + len(str(slots * (10**digits - 1)))

    def sample(self, rng, n, difficulty):
        x = rng.integers(1, 10**self.digits, size=(n, self.slots)) * rng.choice([-1, 1], size=(n, self.slots))
        used = np.arange(self.slots)[None, :] < np.asarray(difficulty)[:, None]
        order = np.argsort(rng.random((n, self.slots)), axis=1)
        return np.take_along_axis(np.where(used, x, 0), order, axis=1)

    def encode(self, problems):
        n = len(problems)
        plus, minus, eq = (self.symbols.index(c) for c in "+-=")
        parts = []
        for s in range(self.slots):
            parts.append(np.where(problems[:, s : s + 1] < 0, minus, plus))
            parts.append(digits_of(np.abs(problems[:, s]), self.digits))
        parts.append(np.full((n, 1), eq))
        total = problems.sum(1)
        answer = np.concatenate(
            [np.where(total[:, None] < 0, minus, plus), digits_of(np.abs(total), self.answer_len - 1)], axis=1
        )
        return np.concatenate(parts, axis=1), answer

    def canonical(self, problems):
        """The sorted operands as one base-2*10^digits number (wraps past int64; only hashed)."""
        base = np.int64(2 * 10**self.digits)
        key = np.zeros(len(problems), dtype=np.int64)
        with np.errstate(over="ignore"):
            for col in np.sort(problems, axis=1).T:
                key = key * base + (col + 10**self.digits)
        return key

    def paraphrase(self, rng, problems):
        order = np.argsort(rng.random(problems.shape), axis=1)
        return np.take_along_axis(problems, order, axis=1)
