"""Host-side data for the trainer: task items laid out as token sequences and loss weights."""

from __future__ import annotations

import numpy as np

from sandbag.tasks import Items, Task
from sandbag.tasks.base import PAD


def padded_map(fn, rows: np.ndarray, batch: int, out_axis: int = 0) -> np.ndarray:
    """``fn`` over ``rows`` in chunks padded to one shape (each jitted ``fn`` compiles once);
    results are cut back to the real rows and joined along ``out_axis``."""
    out = []
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        size = batch if len(rows) > batch else len(chunk)
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
        out.append(np.take(np.asarray(fn(padded)), np.arange(len(chunk)), axis=out_axis))
    return np.concatenate(out, axis=out_axis)


def answer_weights(n: int, task: Task) -> np.ndarray:
    """Loss weights [n, L - 1] that select the positions predicting answer tokens."""
    w = np.zeros((n, task.seq_len - 1), np.float32)
    w[:, -task.answer_len :] = 1.0
    return w


def ladder_sampler(task: Task, seeds: list[int], batch: int, steps_per_call: int, context: int = PAD):
    """Ground-truth training data, all difficulties mixed uniformly; member m draws from seeds[m]."""

    def sample(member: int, chunk: int):
        rng = np.random.default_rng([seeds[member], chunk, 0x5A4D])
        n = batch * steps_per_call
        items = task.generate(rng, n, rng.choice(task.difficulties, size=n), "train")
        tokens = items.tokens(context).reshape(steps_per_call, batch, -1)
        return tokens, answer_weights(n, task).reshape(steps_per_call, batch, -1)

    return sample


def eval_items(task: Task, n_per_level: int, seed: int, split: str = "eval") -> Items:
    """A fixed evaluation set: ``n_per_level`` items at each difficulty."""
    rng = np.random.default_rng([seed, 0xE7A1])
    d = np.repeat(np.asarray(task.difficulties), n_per_level)
    return task.generate(rng, len(d), d, split)
