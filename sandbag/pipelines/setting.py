"""What the red and blue teams share in every experiment after the ladder: the trained rungs,
the weak supervisor's judge and its blind spot, and the evaluation questions; and how a
population's behaviour is measured on them."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from sandbag.data import eval_items
from sandbag.decode import answers_of
from sandbag.pipelines import ladder
from sandbag.population import Population
from sandbag.schema import RunConfig
from sandbag.supervision import make_judge, perceived_accuracy, recognition
from sandbag.tasks import Items, Task
from sandbag.tasks.base import PAD
from sandbag.zoo import Zoo


@dataclass
class Setting:
    metrics: dict[str, float]  # the ladder's and the judge's
    weak: Population
    strong: Population
    judge: object
    judge_levels: dict[int, float]  # the judge's recognition accuracy per difficulty level
    items: Items  # the evaluation questions every reported accuracy is measured on


@contextmanager
def timed(metrics: dict, stage: str):
    """Adds the block's wall time to ``time/<stage>_s``: where a run's time goes. Stages end in
    host arrays (accuracies, scores), so the clock reads finished work."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        key = f"time/{stage}_s"
        metrics[key] = metrics.get(key, 0.0) + time.perf_counter() - t0


def behaviour(pop: Population, judge, items: Items, context: int) -> dict[str, np.ndarray]:
    """Per member and item: is the greedy answer right, does the judge accept it. [M, n] each."""
    answers = answers_of(pop, items, context)
    return {
        "correct": np.all(answers == items.answers[None], axis=-1),
        "accepted": perceived_accuracy(judge, items, answers),
        "answers": answers,
    }


def by_level(prefix: str, values_MxN: np.ndarray, items: Items, task: Task) -> dict[str, float]:
    """``prefix`` -> mean over members and items, ``prefix_d<k>`` -> the same at level k."""
    out = {prefix: float(values_MxN.mean())}
    for k in task.difficulties:
        out[f"{prefix}_d{k}"] = float(values_MxN[:, items.difficulty == k].mean())
    return out


def build(cfg: RunConfig, task: Task, zoo: Zoo) -> Setting:
    """The ladder (trained or from the zoo), the judge, and how both look on the eval split.
    Stops after the ladder when its pair has no gap to hide (``ladder.check_gap``)."""
    t0 = time.perf_counter()
    metrics, rungs = ladder.run(cfg, task, zoo)
    metrics["time/ladder_s"] = time.perf_counter() - t0
    ladder.check_gap(cfg, metrics, stop=True)
    with timed(metrics, "judges"):
        judge = make_judge(cfg.judge, task, rungs["weak"], zoo)
        levels = recognition(judge, task, cfg.eval.n_per_level, cfg.seed)
        metrics.update({f"judge/{judge.name}/{k}": v for k, v in levels.items()})
        items = eval_items(task, cfg.eval.n_per_level, cfg.seed)
        for role, rung in rungs.items():
            b = behaviour(rung, judge, items, PAD)
            metrics.update(by_level(f"{role}/judge_acc", b["accepted"], items, task))
    judge_levels = {k: levels[f"acc_d{k}"] for k in task.difficulties}
    return Setting(metrics, rungs["weak"], rungs["strong"], judge, judge_levels, items)
