"""What the weak supervisor gives the blue team: its own answers, and the errors judges face.

The weak supervisor is member 0 of the weak rung. It answers by greedy decoding (the one
decoder); its answers on the ``demo`` split -- which no strong model trains on -- are the
demonstrations that weak-to-strong training and SFT elicitation learn from.
"""

from __future__ import annotations

import jax
import numpy as np

from sandbag.decode import decode_answers
from sandbag.tasks import Items, Task
from sandbag.tasks.base import PAD


def member(params, i: int = 0):
    """Member ``i`` of a stacked population, still stacked (a population of one)."""
    return jax.tree.map(lambda x: x[i : i + 1], params)


def prompts_of(items: Items, context: int = PAD) -> np.ndarray:
    """[n, 1 + P]: the context slot and the prompt, what a model sees before answering."""
    return items.tokens(context)[:, : 1 + items.prompts.shape[1]]


def answers_of(graphdef, params, items: Items, context: int = PAD) -> np.ndarray:
    """Greedy answers of every member: [N, n, A]."""
    return decode_answers(graphdef, params, prompts_of(items, context), items.answers.shape[1])


def weak_answers(weak, items: Items) -> np.ndarray:
    """The weak supervisor's greedy answers [n, A] (it always sees a plain context)."""
    return answers_of(weak.graphdef, member(weak.params), items)[0]


def demonstrations(task: Task, weak, n: int, seed: int) -> Items:
    """``n`` items from the ``demo`` split, all levels mixed, labelled by the weak supervisor."""
    rng = np.random.default_rng([seed, 0xDE40])
    items = task.generate(rng, n, rng.choice(task.difficulties, size=n), "demo")
    return items.with_answers(weak_answers(weak, items))


def answer_alphabet(task: Task, n: int = 4096) -> list[np.ndarray]:
    """For each answer position, the token ids that occur there in true answers."""
    rng = np.random.default_rng(0xA1FA)
    answers = task.generate(rng, n, rng.choice(task.difficulties, size=n), "train").answers
    return [np.unique(answers[:, j]) for j in range(answers.shape[1])]


def near_miss(answers: np.ndarray, alphabet: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Each answer with one position changed to another plausible token."""
    out = answers.copy()
    movable = [j for j, a in enumerate(alphabet) if len(a) > 1]
    pos = rng.choice(movable, size=len(answers))
    for j in movable:
        rows = np.flatnonzero(pos == j)
        alpha = alphabet[j]
        shift = rng.integers(1, len(alpha), size=len(rows))
        idx = np.searchsorted(alpha, answers[rows, j]).clip(0, len(alpha) - 1)
        out[rows, j] = alpha[(idx + shift) % len(alpha)]
    return out


def realistic_errors(gold: np.ndarray, weak: np.ndarray, alphabet, rng) -> np.ndarray:
    """A wrong answer per item: the weak model's own where it is wrong, else a near miss."""
    weak_wrong = np.any(weak != gold, axis=1)
    return np.where(weak_wrong[:, None], weak, near_miss(gold, alphabet, rng))
