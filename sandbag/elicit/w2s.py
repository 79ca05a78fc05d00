"""Weak-to-strong generalisation (Burns et al. 2023): the honest strong rung trained from
scratch on the weak supervisor's labels, plainly and with the auxiliary confidence loss

    L = (1 - a) * CE(p, weak label) + a * CE(p, argmax p),  a = alpha * min(1, t / warmup)

which lets the student overrule weak labels it is confident are wrong. Not an organism
method: it measures how much of the gap weak supervision recovers from an honest student.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from sandbag.elicit.base import Setting, fixed_sampler, item_tokens, register_elicitation, trainer
from sandbag.tasks.base import PAD
from sandbag.train import init_population, token_loss, train


def confidence_loss(alpha: float, warmup: float):
    def loss(logits_BxLxV, targets_BxL, weights_BxL, step_frac=0.0):
        a = alpha * jnp.minimum(1.0, step_frac / warmup)
        hardened = jax.lax.stop_gradient(jnp.argmax(logits_BxLxV, axis=-1))
        ce_weak = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
        ce_self = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, hardened)
        total = (1.0 - a) * ce_weak + a * ce_self
        return (total * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)

    return loss


def student(s: Setting, loss_fn, desc: str):
    """A student of the strong architecture per organism seed, trained from scratch: its params."""
    k = s.knobs
    tcfg = trainer(s, steps=k.w2s_steps)
    seeds = list(s.organisms.seeds)
    _, start = init_population(s.strong.cfg, seeds)
    trained, _ = train(
        s.organisms.graphdef,
        start,
        tcfg,
        fixed_sampler(item_tokens(PAD, s.demos), s.task, tcfg, seeds),
        loss_fn=loss_fn,
        desc=desc,
    )
    return trained


@register_elicitation("confidence_loss")
def confidence(s: Setting):
    k = s.knobs
    return student(s, confidence_loss(k.confidence_alpha, k.confidence_warmup), "w2s confidence"), {}


def plain(s: Setting):
    """The same student without the confidence loss: the baseline it must beat."""
    return student(s, token_loss, "w2s plain"), {}
