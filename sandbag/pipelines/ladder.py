"""The capability ladder: train (or fetch from the zoo) rungs on ground truth and measure them.

Every rung sees the same training distribution -- all difficulty levels mixed uniformly --
so the gap between a weak and a strong rung comes from capacity and training compute, as
between a small and a large pretrained model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, replace

import numpy as np

from sandbag import data, report, seeds
from sandbag.data import eval_items, ladder_sampler
from sandbag.models import ModelConfig
from sandbag.population import Population
from sandbag.schema import ConfigError, RunConfig, Rung
from sandbag.tasks import Task
from sandbag.train import TrainConfig, exact_match, init_population, train
from sandbag.zoo import Zoo, task_key

log = logging.getLogger(__name__)


class SmallGap(ConfigError):
    """The ladder's pair has no capacity gap for the later stages to work with: organisms would
    have nothing to hide from their weak supervisor."""


def train_config(cfg: RunConfig, rung: Rung, steps: int | None = None) -> TrainConfig:
    """``train.*``, with the rung's own learning rate where it sets one."""
    return replace(cfg.train, lr=rung.lr or cfg.train.lr, steps=steps or cfg.train.steps)


def train_rung(cfg: RunConfig, task: Task, role: str, zoo: Zoo, steps: int | None = None) -> Population:
    """Ground-truth training of the rung ``role`` for ``ladder_seeds`` seeds, through the zoo."""
    rung = cfg.rung(role)
    mcfg = ModelConfig.of_rung(rung, task.vocab_size)
    tcfg = train_config(cfg, rung, steps)
    member_seeds = seeds.members("ladder", cfg.seed, cfg.ladder_seeds)
    spec = {
        "kind": "ladder",
        "layout": data.FORMAT,
        "task": task_key(cfg.task, task),
        "model": asdict(mcfg),
        "train": asdict(tcfg),
        "seeds": member_seeds,
    }
    graphdef, params = init_population(mcfg, member_seeds)

    def fit(progress):
        sampler = ladder_sampler(task, member_seeds, tcfg.batch_size, tcfg.steps_per_call)
        trained, losses = train(
            graphdef, params, tcfg, sampler, progress=progress, desc=f"{role} {mcfg.name}"
        )
        return trained, {"final_loss": float(losses[:, -1].mean()), "steps": tcfg.steps}

    params, key = zoo.fetch_or_train(spec, params, fit, f"{role} rung {mcfg.name} ({tcfg.steps} steps)")
    return Population(graphdef, params, [role] * len(member_seeds), member_seeds, mcfg, key)


def accuracy_by_level(task: Task, rung: Population, n_per_level: int, seed: int) -> dict[str, float]:
    """``acc`` and ``acc_d<k>``, averaged over the rung's seeds, on the eval split."""
    items = eval_items(task, n_per_level, seed)
    correct = exact_match(rung.graphdef, rung.params, items.tokens(), task.answer_len).mean(0)
    out = {"acc": float(correct.mean())}
    for k in task.difficulties:
        out[f"acc_d{k}"] = float(correct[items.difficulty == k].mean())
    return out


def accuracy_by_member(task: Task, rung: Population, n_per_level: int, seed: int) -> np.ndarray:
    """[members, levels] on the eval split, easiest level first: how much a rung's curve
    depends on its seed (the gap scan's stability criterion)."""
    items = eval_items(task, n_per_level, seed)
    correct = exact_match(rung.graphdef, rung.params, items.tokens(), task.answer_len)
    return np.stack([correct[:, items.difficulty == k].mean(1) for k in task.difficulties], axis=1)


_warned: set[str] = set()  # gap_point builds one ladder per stage: warn about it once


def check_gap(cfg: RunConfig, metrics: dict[str, float], stop: bool) -> None:
    """One warning line when the pair's ``gap_max`` is below ``min_gap``, right after the ladder.
    With ``stop`` (every experiment built on the ladder) it is a ``SmallGap`` instead -- exit
    code 2 before any further compute -- unless ``allow_small_gap``."""
    if metrics["gap_max"] >= cfg.min_gap:
        return
    msg = (
        f"the {cfg.weak.name}/{cfg.strong.name} ladder has a capability gap of {metrics['gap_max']:.2f} "
        f"(largest per-level strong - weak; {metrics['gap']:.2f} overall), below min_gap={cfg.min_gap} "
        "that organisms, detectors and elicitation need; find a pair with +experiment=gap_scan"
    )
    if stop and not cfg.allow_small_gap:
        raise SmallGap(f"{msg}, or go on anyway with allow_small_gap=true")
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def run(cfg: RunConfig, task: Task, zoo: Zoo) -> tuple[dict[str, float], dict]:
    """The ``capability_ladder`` experiment: metrics and the trained rungs."""
    metrics: dict[str, float] = {}
    rungs = {}
    for role in ("weak", "strong"):
        rung = train_rung(cfg, task, role, zoo)
        rungs[role] = rung
        accs = accuracy_by_level(task, rung, cfg.eval.n_per_level, cfg.seed)
        metrics.update({f"{role}/{k}": v for k, v in accs.items()})
        metrics[f"{role}/params"] = rung.n_params
    metrics["gap"] = metrics["strong/acc"] - metrics["weak/acc"]
    levels = [metrics[f"strong/acc_d{k}"] - metrics[f"weak/acc_d{k}"] for k in task.difficulties]
    metrics["gap_max"] = float(np.max(levels))
    return metrics, rungs


def experiment(cfg: RunConfig, task: Task, zoo: Zoo, out_dir) -> dict[str, float]:
    """The ``capability_ladder`` experiment: its metrics, table and plot."""
    t0 = time.perf_counter()
    metrics, _ = run(cfg, task, zoo)
    metrics["time/ladder_s"] = time.perf_counter() - t0
    check_gap(cfg, metrics, stop=False)
    t0 = time.perf_counter()
    report.ladder_outputs(task, metrics, out_dir)
    metrics["time/reports_s"] = time.perf_counter() - t0
    return metrics
