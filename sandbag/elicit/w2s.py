"""Weak-to-strong generalisation (Burns et al. 2023): the honest strong rung trained on the
weak supervisor's labels, plainly and with the auxiliary confidence loss

    L = (1 - a) * CE(p, weak label) + a * CE(p, argmax p),  a = alpha * min(1, t / warmup)

which lets the student overrule weak labels it is confident are wrong. Not an organism
method: it measures how much of the gap weak supervision recovers from an honest student.

A student starts from scratch (``elicitation.w2s_start=scratch``), and then can only fit its
supervisor's function; or (``easy_levels``) from the strong architecture trained on the ground
truth of the easiest half of the difficulty levels, as Burns et al.'s students start from
pretraining: skill with the task's structure, none of the hard levels' labels.
"""

from __future__ import annotations

from dataclasses import asdict, replace

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sandbag import data
from sandbag.data import ladder_sampler
from sandbag.elicit.base import Setting, fixed_sampler, item_tokens, register_elicitation, trainer
from sandbag.tasks import Task
from sandbag.tasks.base import PAD
from sandbag.train import init_population, token_loss, train
from sandbag.zoo import digest, source_digest, task_key


def confidence_loss(alpha: float, warmup: float):
    def loss(logits_BxLxV, targets_BxL, weights_BxL, step_frac=0.0):
        a = alpha * jnp.minimum(1.0, step_frac / warmup)
        hardened = jax.lax.stop_gradient(jnp.argmax(logits_BxLxV, axis=-1))
        ce_weak = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
        ce_self = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, hardened)
        total = (1.0 - a) * ce_weak + a * ce_self
        return (total * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)

    return loss


def easy_levels(task: Task) -> list[int]:
    """The easiest half of the difficulty levels: those at or below the median level."""
    return [d for d in task.difficulties if d <= np.median(task.difficulties)]


def starting_point(s: Setting, seeds: list[int]):
    """The students' parameters before the weak labels, one per seed: a fresh initialisation, or
    with ``easy_levels`` that initialisation trained like the strong rung of the ladder (its
    schedule and learning rate) on ground truth of the easy levels only, kept in the zoo."""
    graphdef, start = init_population(s.strong.cfg, seeds)
    if s.knobs.w2s_start == "scratch":
        return start
    if s.zoo is None:
        raise ValueError(
            f"w2s_start={s.knobs.w2s_start} trains the students' start through the zoo: pass zoo="
        )
    cfg, levels = s.cfg, easy_levels(s.task)
    tcfg = replace(cfg.train, lr=cfg.strong.lr or cfg.train.lr)
    spec = {
        "kind": "w2s_start",
        "start": "easy_levels",
        "levels": levels,
        "task": task_key(cfg.task, s.task),
        "layout": data.FORMAT,
        "model": asdict(s.strong.cfg),
        "train": asdict(tcfg),
        "seeds": seeds,
    }

    def fit(progress):
        sampler = ladder_sampler(s.task, seeds, tcfg.batch_size, tcfg.steps_per_call, levels=levels)
        trained, losses = train(graphdef, start, tcfg, sampler, progress=progress, desc="w2s start")
        return trained, {"final_loss": float(losses[:, -1].mean()), "steps": tcfg.steps}

    what = f"weak-to-strong students' start (ground truth of levels {levels}, {tcfg.steps} steps)"
    return s.zoo.fetch_or_train(spec, start, fit, what)[0]


def student(s: Setting, loss_fn, desc: str, loss_spec: dict):
    """A student of the strong architecture per organism seed, trained on the weak labels from
    its ``starting_point``: its params. Kept in the zoo (where there is one) under its recipe
    and a digest of the demonstrations it learns from, so a rerun (another elicitation method
    added, a detector changed) loads the students instead of training them again."""
    k = s.knobs
    tcfg = trainer(s, steps=k.w2s_steps)
    seeds = list(s.organisms.seeds)
    start = starting_point(s, seeds)
    tokens = item_tokens(PAD, s.demos)

    def fit(progress=None):
        sampler = fixed_sampler(tokens, s.task, tcfg, seeds)
        trained, _ = train(s.organisms.graphdef, start, tcfg, sampler, loss_fn=loss_fn, desc=desc)
        return trained, {"steps": tcfg.steps}

    if s.zoo is None:
        return fit()[0]
    spec = {
        "kind": "w2s_student",
        # an edited loss is a new entry
        "loss": {**loss_spec, "source": source_digest(loss_fn) or getattr(loss_fn, "__qualname__", "")},
        "start": s.knobs.w2s_start if s.knobs.w2s_start == "scratch" else digest(start),
        "model": asdict(s.strong.cfg),
        "train": asdict(tcfg),
        "seeds": seeds,
        "demos": digest(tokens),
    }
    return s.zoo.fetch_or_train(spec, start, fit, f"weak-to-strong student ({desc})")[0]


@register_elicitation("confidence_loss")
def confidence(s: Setting):
    k = s.knobs
    loss = confidence_loss(k.confidence_alpha, k.confidence_warmup)
    spec = {"name": "confidence", "alpha": k.confidence_alpha, "warmup": k.confidence_warmup}
    return student(s, loss, "w2s confidence", spec), {}


def plain(s: Setting):
    """The same student without the confidence loss: the baseline it must beat."""
    return student(s, token_loss, "w2s plain", {"name": "plain"}), {}
