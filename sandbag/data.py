"""Host-side data for the trainer: task items laid out as token sequences and loss weights."""

from __future__ import annotations

import numpy as np

from sandbag import seeds as seeds_mod
from sandbag.tasks import Items, Task
from sandbag.tasks.base import PAD

# Bumped whenever the token layout or the splits change: in the zoo keys of every model trained
# on ground truth (the ladder's rungs, the controls on ground truth, the weak-to-strong
# students' easy-levels start), so old entries are not reused.
FORMAT = 3


def padded_map(fn, rows: np.ndarray, batch: int, out_axis: int = 0) -> np.ndarray:
    """``fn`` over ``rows`` in chunks padded to one shape (each jitted ``fn`` compiles once);
    results are cut back to the real rows and joined along ``out_axis``. Fewer rows than
    ``batch`` are padded to a power of two (at least 16), so calls with 134, 141 or 160 rows
    share one program. ``fn`` must treat rows independently."""
    out = []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        size = batch if len(rows) > batch else min(batch, max(16, 1 << (len(chunk) - 1).bit_length()))
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        out.append(np.take(np.asarray(fn(padded)), np.arange(len(chunk)), axis=out_axis))
    return np.concatenate(out, axis=out_axis)


def answer_weights(n: int, task: Task) -> np.ndarray:
    """Loss weights [n, L - 1] that select the positions predicting answer tokens."""
    w = np.zeros((n, task.seq_len - 1), np.float32)
    w[:, -task.answer_len :] = 1.0
    return w


def sequences(context: int, prompts: np.ndarray, answers: np.ndarray) -> np.ndarray:
    """Full sequences [n, 1 + P + A] of ``prompts`` answered by ``answers`` under ``context``."""
    ctx = np.full((len(prompts), 1), context, np.int32)
    return np.concatenate([ctx, prompts, answers], axis=1).astype(np.int32)


def answer_alphabet(task: Task, n: int = 4096) -> list[np.ndarray]:
    """For each answer position, the token ids that occur there in true answers."""
    rng = seeds_mod.rng("alphabet")
    answers = task.generate(rng, n, rng.choice(task.difficulties, size=n), "train").answers
    return [np.unique(answers[:, j]) for j in range(answers.shape[1])]


def one_token_changes(answers: np.ndarray, alphabet: list[np.ndarray]) -> np.ndarray:
    """[n, K, A]: every answer with one position set to each of its plausible tokens (the
    answer itself among them), K the alphabet sizes summed."""
    out = []
    for j, alpha in enumerate(alphabet):
        for tok in alpha:
            c = answers.copy()
            c[:, j] = tok
            out.append(c)
    return np.stack(out, axis=1)


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


def ladder_sampler(
    task: Task,
    member_seeds: list[int],
    batch: int,
    steps_per_call: int,
    context: int = PAD,
    levels: list[int] | None = None,
):
    """Ground-truth training data, the difficulties ``levels`` (default all) mixed uniformly;
    member m draws from ``member_seeds[m]``."""
    levels = task.difficulties if levels is None else tuple(levels)

    def sample(member: int, chunk: int):
        rng = seeds_mod.rng("ladder_batches", member_seeds[member], chunk)
        n = batch * steps_per_call
        items = task.generate(rng, n, rng.choice(levels, size=n), "train")
        tokens = items.tokens(context).reshape(steps_per_call, batch, -1)
        return tokens, answer_weights(n, task).reshape(steps_per_call, batch, -1)

    return sample


def eval_items(task: Task, n_per_level: int, seed: int, split: str = "eval") -> Items:
    """A fixed evaluation set: ``n_per_level`` items at each difficulty."""
    rng = seeds_mod.rng("eval", seed)
    d = np.repeat(np.asarray(task.difficulties), n_per_level)
    return task.generate(rng, len(d), d, split)
