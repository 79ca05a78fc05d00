"""Supervised elicitation: fine-tune on the weak supervisor's demonstrations (``sft_weak``)
or on a few verified examples (``sft_gold_few``)."""

from __future__ import annotations

import numpy as np

from sandbag import seeds
from sandbag.elicit.base import (
    Setting,
    copy_params,
    fixed_sampler,
    item_tokens,
    register_elicitation,
    trainer,
)
from sandbag.train import train


def sft(s: Setting, tokens: np.ndarray, steps: int, batch: int, params=None):
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
    trained, _ = train(s.organisms.graphdef, start, tcfg, sampler, desc="sft")
    return trained


@register_elicitation("sft_weak")
def sft_weak(s: Setting, steps: int | None = None):
    k = s.knobs
    return sft(
        s, item_tokens(s.train_context, s.demos), int(steps or k.sft_steps), s.cfg.train.batch_size
    ), {}


@register_elicitation("sft_gold_few")
def sft_gold_few(s: Setting):
    k = s.knobs
    n = k.n_gold
    rng = seeds.rng("elicit_gold", s.cfg.seed)
    gold = s.task.generate(rng, n, rng.choice(s.task.difficulties, size=n), "gold")
    return sft(s, item_tokens(s.train_context, gold), k.gold_steps, n), {}
