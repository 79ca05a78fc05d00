"""What the weak supervisor gives the blue team: its own answers, and the errors judges face.

The weak supervisor is member 0 of the weak rung. It answers by greedy decoding (the one
decoder); its answers on the ``demo`` split -- on whose ground truth no strong model trains --
are the demonstrations that weak-to-strong training and SFT elicitation learn from.
"""

from __future__ import annotations

import numpy as np

from sandbag import seeds
from sandbag.data import near_miss
from sandbag.decode import answers_of
from sandbag.population import Population
from sandbag.tasks import Items, Task


def weak_answers(weak: Population, items: Items) -> np.ndarray:
    """The weak supervisor's greedy answers [n, A] (it always sees a plain context)."""
    return answers_of(weak.member(0), items)[0]


def demonstrations(task: Task, weak: Population, n: int, seed: int) -> Items:
    """``n`` items from the ``demo`` split, all levels mixed, labelled by the weak supervisor."""
    rng = seeds.rng("demos", seed)
    items = task.generate(rng, n, rng.choice(task.difficulties, size=n), "demo")
    return items.with_answers(weak_answers(weak, items))


def realistic_errors(gold: np.ndarray, weak: np.ndarray, alphabet, rng) -> np.ndarray:
    """A wrong answer per item: the weak model's own where it is wrong, else a near miss."""
    weak_wrong = np.any(weak != gold, axis=1)
    return np.where(weak_wrong[:, None], weak, near_miss(gold, alphabet, rng))
