"""The one decoder: greedy or sampled continuations, with or without a key/value cache.

Pure functions of ``(graphdef, params)`` so callers can ``jit`` and ``vmap`` them over a
population. Evaluation does not decode (see ``train.exact_match``); this is for answers that
must be generated: demonstrations, judges, RL samples, benchmarks.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sandbag.data import padded_map
from sandbag.population import each_member, over_members
from sandbag.tasks import Items
from sandbag.tasks.base import PAD


def _pick(logits_BxV, key, temperature):
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    return jax.random.categorical(key, logits_BxV / temperature, axis=-1).astype(jnp.int32)


@partial(jax.jit, static_argnames=("graphdef", "n_new", "temperature", "use_cache"))
def generate(
    graphdef, params, prompts_BxP, key, n_new: int, temperature: float = 0.0, use_cache: bool = True
):
    """Continue ``prompts_BxP`` by ``n_new`` tokens; returns [B, n_new] int32."""
    model = nnx.merge(graphdef, params)
    B, P = prompts_BxP.shape
    if P + n_new > model.cfg.max_len:
        raise ValueError(
            f"cannot decode {n_new} tokens after a {P}-token prompt: the model's max_len is "
            f"{model.cfg.max_len}"
        )
    keys = jax.random.split(key, n_new)
    if use_cache:
        logits, cache = model.decode_step(prompts_BxP, 0, model.empty_cache(B, P + n_new), last=1)
        first = _pick(logits[:, -1], keys[0], temperature)

        def step(carry, i_key):
            tok, cache = carry
            i, k = i_key
            logits, cache = model.decode_step(tok[:, None], P + i, cache)
            nxt = _pick(logits[:, -1], k, temperature)
            return (nxt, cache), nxt

        _, rest = jax.lax.scan(step, (first, cache), (jnp.arange(n_new - 1), keys[1:]))
        return jnp.concatenate([first[:, None], rest.T], axis=1)

    buf = jnp.concatenate([prompts_BxP, jnp.zeros((B, n_new), jnp.int32)], axis=1)

    def full(buf, i_key):
        i, k = i_key
        logits = model(buf)
        nxt = _pick(jax.lax.dynamic_index_in_dim(logits, P + i - 1, axis=1, keepdims=False), k, temperature)
        return jax.lax.dynamic_update_slice(buf, nxt[:, None], (0, P + i)), nxt

    _, out = jax.lax.scan(full, buf, (jnp.arange(n_new), keys))
    return out.T


@partial(jax.jit, static_argnames=("graphdef", "n_new"))
def _greedy_population(graphdef, params, prompts_BxP, n_new: int):
    return over_members(lambda p: generate(graphdef, p, prompts_BxP, jax.random.key(0), n_new), params)


def decode_answers(graphdef, params, prompts: np.ndarray, n_new: int, batch: int = 512) -> np.ndarray:
    """Greedy answers of every member of a population: params stacked over N -> [N, n, n_new].

    Batches are padded to one shape so each model compiles once.
    """

    def one(p):
        fn = partial(_greedy_population, graphdef, p, n_new=n_new)
        return padded_map(lambda x: fn(jnp.asarray(x, jnp.int32)), prompts, batch, out_axis=1)

    return each_member(one, params)


def prompts_of(items: Items, context: int = PAD) -> np.ndarray:
    """[n, 1 + P]: the context slot and the prompt, what a model sees before answering."""
    return items.tokens(context)[:, : 1 + items.prompts.shape[1]]


def answers_of(pop, items: Items, context: int = PAD) -> np.ndarray:
    """Greedy answers of every member of a population to ``items`` under ``context``: [N, n, A]."""
    return decode_answers(pop.graphdef, pop.params, prompts_of(items, context), items.answers.shape[1])
