"""The one trainer: a population of models trained together in one ``vmap``ped program.

Every stage (ladder, organisms, controls, elicitation) calls ``train``. A population is a
pytree whose leaves carry a leading member axis; a single model is a population of one.
The host only draws data: ``sampler(member, chunk)`` returns ``steps_per_call`` batches for
one member, deterministically from (member, chunk), so a resumed run sees exactly the data
an uninterrupted one would. One jitted call scans the optimizer over those steps for every
member at once; the host reads chunk c - 1's losses after dispatching chunk c.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from sandbag import parallel
from sandbag.data import padded_map
from sandbag.models import ModelConfig, Transformer
from sandbag.population import each_member, on_host, over_members


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    steps_per_call: int = 50
    save_every: int | None = 500  # steps between resumable checkpoints; None: never


Sampler = Callable[[int, int], tuple[np.ndarray, np.ndarray]]  # (member, chunk) -> tokens, weights


class Progress(Protocol):
    """Where periodic checkpoints go (the zoo implements it)."""

    def load(self, like) -> tuple[int, object] | None: ...

    def save(self, step: int, state) -> None: ...


def init_population(cfg: ModelConfig, seeds: list[int]):
    """(graphdef, params) with params stacked over members; member i depends only on seeds[i]."""
    states = []
    for s in seeds:
        graphdef, state = nnx.split(Transformer(cfg, nnx.Rngs(params=s)))
        states.append(state)
    return graphdef, on_host(lambda *xs: np.stack(xs), *states)


@functools.cache
def make_optimizer(clip: float = 1.0, weight_decay: float = 0.01) -> optax.GradientTransformation:
    """AdamW with clipping, at unit learning rate: ``train_chunk`` scales each step's update by
    that step's rate (``learning_rates``). The rates are data, not part of the program, so
    every stage that trains the same shapes runs one compiled step whatever its schedule.
    Cached so equal settings give the same object (a static jit argument)."""
    return optax.chain(
        optax.clip_by_global_norm(clip),
        optax.adamw(1.0, b1=0.9, b2=0.98, weight_decay=weight_decay),
    )


@partial(jax.jit, static_argnames=("tx",))
def _init_optimizer(params, tx):
    """Every member's optimizer state in one program (done eagerly, it compiled one per leaf shape)."""
    return jax.vmap(tx.init)(params)


def optimizer_of(cfg: TrainConfig) -> optax.GradientTransformation:
    return make_optimizer(cfg.clip, cfg.weight_decay)


def learning_rates(cfg: TrainConfig, first: int, n: int) -> np.ndarray:
    """The rates of steps ``first .. first + n - 1``: warmup, then cosine decay to a tenth."""
    return _schedule(cfg.lr, cfg.warmup, cfg.steps)[first : first + n]


@functools.cache
def _schedule(lr: float, warmup: int, steps: int) -> np.ndarray:
    # compiled, like the optimizer's own schedule would be: eager float32 arithmetic rounds
    # some steps' rates differently
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, max(warmup, 1), max(steps, warmup + 1), end_value=lr * 0.1
    )
    return np.asarray(jax.jit(sched)(np.arange(max(steps, 1), dtype=np.int32)), np.float32)


def token_loss(logits_BxLxV, targets_BxL, weights_BxL, step_frac=0.0):
    """Weighted mean cross-entropy: the default loss (weights select answer tokens).

    Every loss takes ``(logits, targets, weights, step_frac)``; ``step_frac`` in [0, 1) is how
    far the run is, for losses with a schedule (the confidence loss warms up its weight). A
    loss treats positions alike: the trainer passes only the final positions that hold a
    nonzero weight (``loss_positions``)."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
    return (ce * weights_BxL).sum() / jnp.maximum(weights_BxL.sum(), 1.0)


@partial(jax.jit, static_argnames=("graphdef", "tx", "loss_fn", "objective", "last"), donate_argnums=(1, 2))
def train_chunk(
    graphdef,
    params,
    opt_state,
    tokens,
    weights,
    lrs,
    tx,
    loss_fn,
    fracs=None,
    objective=None,
    start=None,
    last=None,
):
    """Scan ``S`` optimizer steps for every member: tokens [N, S, B, L]; ``lrs`` [S] is each
    step's learning rate, which scales ``tx``'s update; ``fracs`` [S] is each step's fraction
    of the run (what schedules inside a loss read). An ``objective`` replaces
    ``loss_fn`` with a loss on the model itself, ``objective(graphdef, params, start, tokens,
    weights, frac)``, for terms that read activations or perturb weights; ``start`` is each
    member's frozen starting point (stacked like ``params``). ``last``: every weight outside
    the last ``last`` positions is zero (``loss_positions``), so ``loss_fn`` reads only the
    logits of those positions and the model computes no others."""
    if fracs is None:
        fracs = jnp.zeros(tokens.shape[1], jnp.float32)

    def member_step(params, opt_state, start, tok_BxL, w_BxL, lr, frac):
        def loss_of(p):
            if objective is not None:
                return objective(graphdef, p, start, tok_BxL, w_BxL, frac)
            logits = nnx.merge(graphdef, p)(tok_BxL[:, :-1], last=last)
            keep = slice(None) if last is None else slice(-last, None)
            return loss_fn(logits, tok_BxL[:, 1:][:, keep], w_BxL[:, keep], frac)

        loss, grads = jax.value_and_grad(loss_of)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: (lr * u).astype(u.dtype), updates)
        return optax.apply_updates(params, updates), opt_state, loss

    step = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, None, None))

    def body(carry, batch):
        params, opt_state = carry
        params, opt_state, loss = step(params, opt_state, start, *batch)
        return (params, opt_state), loss

    batches = (jnp.swapaxes(tokens, 0, 1), jnp.swapaxes(weights, 0, 1), lrs, fracs)
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), batches)
    return params, opt_state, losses.T  # [N, S]


def train(
    graphdef,
    params,
    cfg: TrainConfig,
    sampler: Sampler,
    *,
    progress: Progress | None = None,
    loss_fn=token_loss,
    desc: str = "train",
    on_eval: Callable[[int, object], bool] | None = None,
    eval_every: int = 0,
    objective=None,
):
    """Train every member of ``params`` for ``cfg.steps`` steps; returns (params, losses [N, steps]).

    ``on_eval(step, params)`` runs every ``eval_every`` steps (rounded up to whole calls) and
    may stop training early by returning True; ``params`` is donated to the next step, so a
    callback that keeps them must copy them (``jax.device_get``). An ``objective`` (see
    ``train_chunk``) replaces ``loss_fn`` and reads each member's starting ``params`` too.
    """
    start = on_host(np.array, params) if objective is not None else None  # a copy: params are donated
    n_members = jax.tree.leaves(params)[0].shape[0]
    tx = optimizer_of(cfg)
    opt_state = _init_optimizer(params, tx)
    step, losses = 0, np.zeros((n_members, 0), np.float32)
    resumed = progress.load({"params": params, "opt_state": opt_state}) if progress else None
    if resumed is not None:
        step, state = resumed
        params, opt_state = state["params"], state["opt_state"]
        losses = np.asarray(state.get("losses", losses))
    mesh = parallel.data_mesh()
    if mesh is not None:  # several devices: every one holds the whole model, a slice of the batch
        params, opt_state, start = jax.device_put((params, opt_state, start), parallel.replicated(mesh))
    S = cfg.steps_per_call
    n_chunks = math.ceil(cfg.steps / S)
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, unit="step", leave=False, dynamic_ncols=True)
    pending, t0, last_save = None, time.perf_counter(), step
    for chunk in range(step // S, n_chunks):
        n = min(S, cfg.steps - chunk * S)
        data = [sampler(m, chunk) for m in range(n_members)]
        tokens = np.stack([d[0][:n] for d in data])
        weights = np.stack([d[1][:n] for d in data]).astype(np.float32)
        fracs = jnp.asarray((chunk * S + np.arange(n)) / cfg.steps, jnp.float32)
        lrs = learning_rates(cfg, chunk * S, n)
        last = None if objective is not None else loss_positions(weights)
        if mesh is not None:  # [N, S, B, L]: each device gets a slice of B, the per-step batch
            tokens, weights = (parallel.put_batch(mesh, x, axis=2) for x in (tokens, weights))
        params, opt_state, chunk_losses = train_chunk(
            graphdef, params, opt_state, tokens, weights, lrs, tx, loss_fn, fracs, objective, start, last
        )
        if pending is not None:
            losses = _account(losses, pending, bar, t0, desc, chunk * S - pending.shape[1])
        pending, step = chunk_losses, chunk * S + n
        # the check before the checkpoint: a run killed during it resumes before it, not after
        checked = on_eval is not None and step // eval_every > (step - n) // eval_every
        if checked and on_eval(step, params if mesh is None else parallel.one_device(params)):
            break
        due = cfg.save_every is not None and step - last_save >= cfg.save_every
        if progress is not None and due and step < cfg.steps:
            losses = _account(losses, pending, bar, t0, desc, step - n)
            pending = None
            progress.save(step, {"params": params, "opt_state": opt_state, "losses": losses})
            last_save = step
    if pending is not None:
        losses = _account(losses, pending, bar, t0, desc, step - pending.shape[1])
    bar.close()
    return (params if mesh is None else parallel.one_device(params)), losses


def loss_positions(weights: np.ndarray) -> int | None:
    """How many final positions hold every nonzero weight of ``weights`` [..., L] (None: all of
    them, or no weight at all): the positions whose logits a weighted loss reads. Answer
    weights give the answer length, so the trainer skips the rest of the final block."""
    used = np.flatnonzero(np.any(weights != 0, axis=tuple(range(weights.ndim - 1))))
    if len(used) == 0 or used[0] == 0:
        return None
    return int(weights.shape[-1] - used[0])


def _account(losses, chunk_losses, bar, t0, desc, first_step):
    chunk = np.asarray(chunk_losses)
    if not np.all(np.isfinite(chunk)):
        bad = int(np.argwhere(~np.isfinite(chunk))[0][1]) + first_step
        raise TrainingDiverged(
            f"{desc}: loss became {chunk[~np.isfinite(chunk)][0]} at step {bad}; "
            "lower train.lr or raise train.warmup"
        )
    bar.update(chunk.shape[1])
    rate = bar.n / max(time.perf_counter() - t0, 1e-9)
    bar.set_postfix(loss=f"{chunk[:, -1].mean():.4f}", steps_per_s=f"{rate:.1f}")
    return np.concatenate([losses, chunk], axis=1)


@partial(jax.jit, static_argnames=("graphdef", "answer_len"))
def _exact_match(graphdef, params, tokens_BxL, answer_len: int):
    def one(p):
        logits = nnx.merge(graphdef, p)(tokens_BxL[:, :-1], last=answer_len)
        pred = jnp.argmax(logits, axis=-1)
        return jnp.all(pred == tokens_BxL[:, -answer_len:], axis=-1)

    return over_members(one, params)


def exact_match(graphdef, params, tokens: np.ndarray, answer_len: int, batch: int = 512) -> np.ndarray:
    """Greedy exact match per member and item, [N, M], in teacher-forced passes.

    Greedy decoding is right iff every answer position's argmax is the target given the
    correct prefix, so one forward pass replaces decoding.
    """
    return each_member(
        lambda p: padded_map(lambda x: _exact_match(graphdef, p, x, answer_len), tokens, batch, out_axis=1),
        params,
    )
