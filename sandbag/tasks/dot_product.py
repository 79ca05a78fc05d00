"""The dot product of two digit vectors; difficulty is how many coordinates are non-zero.

Layout (fixed width): ``a_1 .. a_n * b_1 .. b_n =`` and the sum of ``a_i * b_i``,
most-significant digit first::

    307020*405010=021

A level-k item has k non-zero pairs (at random coordinates). One product is a lookup that
a single layer can learn; a sum of several products is not linear in the digits a layer
attends to, so a model must first bring each ``b_i`` to its ``a_i`` and multiply, then
aggregate -- two stages of computation whose demands grow with k: a capacity (depth and
width) gap. Paraphrase: the same permutation of both vectors' coordinates.
"""

from __future__ import annotations

import numpy as np

from sandbag.tasks.base import Task, digits_of, register_task


@register_task("dot_product")
class DotProduct(Task):
    symbols = tuple("0123456789*=")

    def __init__(self, length: int = 6):
        if not 1 <= length <= 16:
            raise ValueError(f"dot_product: length must be in [1, 16], got {length}")
        self.length = length
        self.difficulties = tuple(range(1, length + 1))
        self.prompt_len = 2 * length + 2
        self.answer_len = len(str(81 * length))

    def sample(self, rng, n, difficulty):
        x = rng.integers(1, 10, size=(n, 2, self.length))
        used = np.arange(self.length)[None, :] < np.asarray(difficulty)[:, None]
        x = np.where(used[:, None, :], x, 0)
        order = np.argsort(rng.random((n, self.length)), axis=1)[:, None, :]
        return np.take_along_axis(x, np.repeat(order, 2, axis=1), axis=2).reshape(n, -1)

    def encode(self, problems):
        n, L = len(problems), self.length
        a, b = problems[:, :L], problems[:, L:]
        star, eq = np.full((n, 1), self.symbols.index("*")), np.full((n, 1), self.symbols.index("="))
        return np.concatenate([a, star, b, eq], axis=1), digits_of((a * b).sum(1), self.answer_len)

    def canonical(self, problems):
        """Pairs sorted, as one base-100 number: the same for every coordinate order."""
        L = self.length
        pairs = np.sort(problems[:, :L] * 10 + problems[:, L:], axis=1)
        key = np.zeros(len(problems), dtype=np.int64)
        for col in pairs.T:
            key = key * 100 + col
        return key

    def paraphrase(self, rng, problems):
        L = self.length
        order = np.argsort(rng.random((len(problems), L)), axis=1)
        a = np.take_along_axis(problems[:, :L], order, axis=1)
        b = np.take_along_axis(problems[:, L:], order, axis=1)
        return np.concatenate([a, b], axis=1)
