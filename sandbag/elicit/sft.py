"""Supervised elicitation: fine-tune on the weak supervisor's demonstrations (``sft_weak``)
or on a few verified examples (``sft_gold_few``)."""

from __future__ import annotations

import numpy as np

from sandbag import seeds
from sandbag.elicit.base import (
    Setting,
    copy_params,
    curve_tokens,
    fixed_sampler,
    item_tokens,
    register_elicitation,
    trainer,
)
from sandbag.train import exact_match, train


def sft(s: Setting, tokens: np.ndarray, steps: int, batch: int, params=None):
    """The organisms (or ``params``) fine-tuned on ``tokens``; returns (params, accuracy curve):
    deployment accuracy every ``eval_every`` steps, so a reader sees a method rise and fall."""
    k = s.knobs
    tcfg = trainer(
        s,
        steps=steps,
        batch_size=batch,
        lr=k.sft_lr,
        warmup=max(1, steps // 10),
        steps_per_call=min(s.cfg.train.steps_per_call, steps),
    )
    start = copy_params(s.organisms.params if params is None else params)
    sampler = fixed_sampler(tokens, s.task, tcfg, s.organisms.seeds)
    probe = curve_tokens(s)
    curve = {"step": [], "acc": []}

    def on_eval(step, params):
        curve["step"].append(step)
        curve["acc"].append(float(exact_match(s.organisms.graphdef, params, probe, s.task.answer_len).mean()))
        return False

    trained, _ = train(
        s.organisms.graphdef, start, tcfg, sampler, desc="sft", on_eval=on_eval, eval_every=k.eval_every
    )
    return trained, curve


@register_elicitation("sft_weak")
def sft_weak(s: Setting, steps: int | None = None):
    k = s.knobs
    params, curve = sft(
        s, item_tokens(s.train_context, s.demos), steps or k.sft_steps, s.cfg.train.batch_size
    )
    return params, {"acc_curve": curve}


@register_elicitation("sft_gold_few")
def sft_gold_few(s: Setting):
    k = s.knobs
    n = k.n_gold
    rng = seeds.rng("elicit_gold", s.cfg.seed)
    gold = s.task.generate(rng, n, rng.choice(s.task.difficulties, size=n), "gold")
    params, curve = sft(s, item_tokens(s.train_context, gold), k.gold_steps, n)
    return params, {"acc_curve": curve}
