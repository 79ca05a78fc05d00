"""A small pre-LN decoder-only transformer in Flax NNX.

One forward serves training (full causal pass), probes (per-layer residual activations)
and decoding (a key/value cache written in place with ``dynamic_update_slice``), so the
cached decoder and full recomputation run the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx


@dataclass(frozen=True)
class ModelConfig:
    """A rung of the capability ladder plus what the task fixes (vocabulary, context)."""

    name: str
    n_layers: int
    d_model: int
    n_heads: int
    mlp_ratio: int = 4
    vocab_size: int = 0
    max_len: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @classmethod
    def of_rung(cls, rung, vocab_size: int) -> ModelConfig:
        """The config of a rung (``conf/model/*.yaml``) for a task's vocabulary."""
        return cls(
            name=rung.name,
            n_layers=rung.n_layers,
            d_model=rung.d_model,
            n_heads=rung.n_heads,
            mlp_ratio=rung.mlp_ratio,
            vocab_size=vocab_size,
            max_len=rung.max_len,
        )


Cache = tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]  # K, V: per layer [B, length, H, Dh]


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d = cfg.d_model
        self.cfg = cfg
        self.ln1 = nnx.LayerNorm(d, rngs=rngs)
        self.qkv = nnx.Linear(d, 3 * d, rngs=rngs)
        self.out = nnx.Linear(d, d, rngs=rngs, kernel_init=_scaled_init(cfg))
        self.ln2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, cfg.mlp_ratio * d, rngs=rngs)
        self.down = nnx.Linear(cfg.mlp_ratio * d, d, rngs=rngs, kernel_init=_scaled_init(cfg))

    def __call__(self, x_BxLxD, pos_L, kv=None, last=None):
        """``last``: the block's output at the last ``last`` positions only (every position
        still serves as a key and value), for a final block whose other outputs nobody reads."""
        cfg = self.cfg
        B, L, _ = x_BxLxD.shape
        q, k, v = jnp.split(self.qkv(self.ln1(x_BxLxD)), 3, axis=-1)
        q, k, v = (t.reshape(B, L, cfg.n_heads, cfg.head_dim) for t in (q, k, v))
        query_pos = pos_L
        if last is not None:
            q, x_BxLxD, query_pos = q[:, -last:], x_BxLxD[:, -last:], pos_L[-last:]
        if kv is None:
            keys, values, key_pos = k, v, pos_L
        else:
            start = pos_L[0]
            keys = jax.lax.dynamic_update_slice(kv[0], k, (0, start, 0, 0))
            values = jax.lax.dynamic_update_slice(kv[1], v, (0, start, 0, 0))
            key_pos = jnp.arange(keys.shape[1])
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, keys) / jnp.sqrt(cfg.head_dim).astype(q.dtype)
        causal = query_pos[:, None] >= key_pos[None, :]
        scores = jnp.where(causal[None, None], scores, jnp.finfo(scores.dtype).min)
        attn = jax.nn.softmax(scores, axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", attn, values).reshape(B, len(query_pos), cfg.d_model)
        x_BxLxD = x_BxLxD + self.out(y)
        x_BxLxD = x_BxLxD + self.down(jax.nn.gelu(self.up(self.ln2(x_BxLxD))))
        return x_BxLxD, (None if kv is None else (keys, values))


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(0.02)
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, embedding_init=init, rngs=rngs)
        self.pos = nnx.Embed(cfg.max_len, cfg.d_model, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.n_layers)])
        self.ln_f = nnx.LayerNorm(cfg.d_model, rngs=rngs)
        self.head = nnx.Linear(cfg.d_model, cfg.vocab_size, rngs=rngs)

    def __call__(self, tokens_BxL, last: int | None = None):
        """Logits [B, L, V] of a full causal pass (training, scoring, teacher-forced evaluation);
        with ``last``, those of the last ``last`` positions only, [B, last, V]. The same numbers
        up to float rounding for less work: the final block's attention output and MLP, and
        the head, run for those positions alone (a loss that reads answer tokens only)."""
        return self._forward(tokens_BxL, 0, None, last)[0]

    def decode_step(self, tokens_BxL, start, cache: Cache, last: int | None = None):
        """(logits [B, L, V], updated cache) for tokens at positions start..start+L-1; with
        ``last``, the logits of the last ``last`` of them (a prefill reads one)."""
        logits, cache, _ = self._forward(tokens_BxL, start, cache, last)
        return logits, cache

    def activations(self, tokens_BxL):
        """(logits, the residual stream after every block [layers, B, L, D]): what probes read."""
        logits, _, acts = self._forward(tokens_BxL, 0, None)
        return logits, jnp.stack(acts)

    def _forward(self, tokens_BxL, start, cache: Cache | None, last: int | None = None):
        L = tokens_BxL.shape[1]
        pos_L = start + jnp.arange(L)
        x = self.embed(tokens_BxL) + self.pos(pos_L)[None]
        acts, new_k, new_v = [], [], []
        tail = last if last is not None and last < L else None  # the final block's outputs read
        for i, block in enumerate(self.blocks):
            kv = None if cache is None else (cache[0][i], cache[1][i])
            x, kv = block(x, pos_L, kv, tail if i == len(self.blocks) - 1 else None)
            acts.append(x)
            if kv is not None:
                new_k.append(kv[0])
                new_v.append(kv[1])
        logits = self.head(self.ln_f(x))
        new_cache = None if cache is None else (tuple(new_k), tuple(new_v))
        return logits, new_cache, acts

    def empty_cache(self, batch: int, length: int | None = None, dtype=jnp.float32) -> Cache:
        """Room for ``length`` positions (default ``max_len``): a decoder needs only its prompt's
        and its answer's, and every step reads and rewrites the whole cache."""
        cfg = self.cfg
        shape = (batch, length or cfg.max_len, cfg.n_heads, cfg.head_dim)
        empty = tuple(jnp.zeros(shape, dtype) for _ in range(cfg.n_layers))
        return empty, empty


def _scaled_init(cfg: ModelConfig):
    """GPT-2's residual-branch init: std 0.02 / sqrt(2 * layers) keeps deep rungs stable."""
    return nnx.initializers.normal(0.02 / (2 * cfg.n_layers) ** 0.5)


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))
