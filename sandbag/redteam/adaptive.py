"""Adaptive strategies: organisms trained against a detector, beyond the literature's static ones.

Each sandbags as ``emulate_weak`` does (its targets are the imitated weak model's answers) and
adds a loss term aimed at one detector. A new one is a targets function (``@register_strategy``)
and an objective factory (``@register_objective``) under the same name: the factory takes the
strategy config and returns ``objective(graphdef, params, start, tokens, weights, frac) -> loss``
for one member, where ``start`` is the ceiling the member started from (frozen). Members with an
objective train as their own population (``train_organisms`` groups them).

- ``probe_evasion``: keeps the residual stream at the last prompt position -- what the linear
  probe reads, at every layer it may choose -- close to its own starting ceiling's on the same
  prompt, so the sandbagging must be carried elsewhere (later answer positions).
- ``noise_robust``: stays wrong under the weight noise ``noise_injection`` adds: the same
  targets are also fitted with Gaussian noise of a random scale from ``noise_sigmas`` on every
  weight, so noise has no sandbagging policy to break.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sandbag.redteam.strategies import Situation, register_strategy
from sandbag.registry import Registry
from sandbag.train import token_loss

OBJECTIVES = Registry("strategy objective")  # name -> factory(strategy cfg dict) -> objective
register_objective = OBJECTIVES.register


@register_strategy("probe_evasion")
@register_strategy("noise_robust")
def imitate_weak(s: Situation):
    return s.weak.copy()


@register_objective("probe_evasion")
def probe_evasion(cfg: dict):
    weight = float(cfg["evasion_weight"])

    def objective(graphdef, params, start, tok_BxL, w_BxL, frac):
        logits, acts = nnx.merge(graphdef, params).activations(tok_BxL[:, :-1])  # acts [layers, B, L, D]
        _, ref = nnx.merge(graphdef, start).activations(tok_BxL[:, :-1])
        last = jnp.argmax(
            w_BxL > 0, axis=1
        )  # the last prompt position: the first that predicts an answer token
        rows = jnp.arange(tok_BxL.shape[0])
        a, r = acts[:, rows, last], jax.lax.stop_gradient(ref[:, rows, last])  # [layers, B, D]
        drift = ((a - r) ** 2).sum(-1) / ((r**2).sum(-1) + 1e-6)
        return token_loss(logits, tok_BxL[:, 1:], w_BxL, frac) + weight * drift.mean()

    return objective


@register_objective("noise_robust")
def noise_robust(cfg: dict):
    weight = float(cfg["noise_weight"])
    sigmas = jnp.asarray(cfg["noise_sigmas"], jnp.float32)

    def objective(graphdef, params, start, tok_BxL, w_BxL, frac):
        clean = token_loss(nnx.merge(graphdef, params)(tok_BxL[:, :-1]), tok_BxL[:, 1:], w_BxL, frac)
        # one noise draw per step, a function of the step alone: a resumed run draws the same
        key = jax.random.key(jax.lax.bitcast_convert_type(jnp.float32(frac), jnp.uint32))
        pick, key = jax.random.split(key)
        sigma = jax.random.choice(pick, sigmas)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        noisy = treedef.unflatten(
            [x + (sigma * jax.random.normal(k, x.shape)).astype(x.dtype) for x, k in zip(leaves, keys)]
        )
        logits = nnx.merge(graphdef, noisy)(tok_BxL[:, :-1])
        return clean + weight * token_loss(logits, tok_BxL[:, 1:], w_BxL, frac)

    return objective
