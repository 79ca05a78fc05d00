"""Multi-digit addition whose difficulty is the length of the longest carry chain.

Layout (fixed width, so every position always means the same column): two zero-padded
``width``-digit operands, most-significant digit first, and their ``width + 1``-digit sum,
also most-significant digit first::

    00372915+00627085=001000000

Writing the sum most-significant digit first means the model must know, before it writes
column i, whether a carry arrives from below -- and a carry can ride a run of columns that
sum to 9 all the way from where it was generated. Level 1 has no carry at all; level k
plants one carry chain that changes k - 1 higher columns. Resolving a chain of length m
takes either m sequential look-ups or a learned "nearest column below that is not a 9"
search, which needs several attention layers: difficulty grows with the depth and width a
model needs, not with what it saw in training (every rung trains on all levels mixed).
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.base import Task, register_task


def _pairs(lo: int, hi: int) -> np.ndarray:
    """All digit pairs (a, b) with lo <= a + b <= hi."""
    return np.array([(a, b) for a in range(10) for b in range(10) if lo <= a + b <= hi])


@register_task("addition")
class Addition(Task):
    symbols = tuple("0123456789+=")

    def __init__(self, width: int = 8, max_difficulty: int = 7):
        if width < 1:
            raise ValueError(f"addition: width must be >= 1, got {width}")
        if not 1 <= max_difficulty <= width + 1:
            raise ValueError(
                f"addition: max_difficulty must be in [1, width + 1 = {width + 1}], got {max_difficulty}"
            )
        self.width = width
        self.difficulties = tuple(range(1, max_difficulty + 1))
        self.prompt_len = 2 * width + 2
        self.answer_len = width + 1
        self._free = _pairs(0, 9)  # columns that neither generate a carry
        self._gen = _pairs(10, 18)
        self._prop = _pairs(9, 9)
        self._stop = _pairs(0, 8)

    def sample(self, rng, n, difficulty):
        w = self.width
        k = np.asarray(difficulty)
        cols = self._free[rng.integers(len(self._free), size=(n, w))]  # [n, w, 2], LSD first
        chain = k - 1  # columns the carry reaches
        has = chain >= 1
        start = rng.integers(0, np.maximum(w - chain, 0) + 1)  # generating column
        idx = np.arange(w)[None, :]
        gen = has[:, None] & (idx == start[:, None])
        prop = has[:, None] & (idx > start[:, None]) & (idx < (start + chain)[:, None])
        stop = has[:, None] & (idx == (start + chain)[:, None])
        for mask, table in ((gen, self._gen), (prop, self._prop), (stop, self._stop)):
            draw = table[rng.integers(len(table), size=(n, w))]
            cols = np.where(mask[..., None], draw, cols)
        place = 10 ** np.arange(w, dtype=np.int64)
        a = (cols[..., 0] * place).sum(-1)
        b = (cols[..., 1] * place).sum(-1)
        return np.stack([a, b], axis=1)

    def encode(self, problems):
        a, b = problems[:, 0], problems[:, 1]
        plus, eq = self.symbols.index("+"), self.symbols.index("=")
        n = len(problems)
        prompt = np.concatenate(
            [_digits(a, self.width), np.full((n, 1), plus), _digits(b, self.width), np.full((n, 1), eq)],
            axis=1,
        )
        return prompt, _digits(a + b, self.width + 1)

    def canonical(self, problems):
        lo, hi = np.minimum(problems[:, 0], problems[:, 1]), np.maximum(problems[:, 0], problems[:, 1])
        return lo * 10**self.width + hi

    def paraphrase(self, rng, problems):
        return problems[:, ::-1].copy()


def _digits(x: np.ndarray, n: int) -> np.ndarray:
    """[len(x), n] decimal digits, most significant first."""
    place = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    return (np.asarray(x, dtype=np.int64)[:, None] // place) % 10
