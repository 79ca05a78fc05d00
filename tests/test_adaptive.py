"""Adaptive strategies: each loss term does what it is for. Trained from one start on the same
data, a member with the term ends where the term pulls it (activations near its start for
probe_evasion, a low loss under weight noise for noise_robust) and one without it does not."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sandbag.data import answer_weights, ladder_sampler
from sandbag.models import ModelConfig
from sandbag.redteam import OBJECTIVES, STRATEGIES
from sandbag.schema import Adaptive
from sandbag.tasks import make_task
from sandbag.train import TrainConfig, init_population, token_loss, train

TASK = make_task("addition", slots=3, digits=2)
CFG = ModelConfig(
    name="t", n_layers=2, d_model=16, n_heads=2, vocab_size=TASK.vocab_size, max_len=TASK.seq_len
)
TCFG = TrainConfig(steps=60, batch_size=16, steps_per_call=20, warmup=5, lr=3e-3, save_every=None)
TOKENS = jnp.asarray(TASK.generate(np.random.default_rng(0), 64, 2, "eval").tokens())
WEIGHTS = jnp.asarray(answer_weights(64, TASK))


def knobs(**kw) -> dict:
    return {**Adaptive().__dict__, **kw}


def fit(objective):
    graphdef, start = init_population(CFG, [0])
    kept = jax.tree.map(jnp.array, start)  # train donates its input
    params, losses = train(graphdef, start, TCFG, ladder_sampler(TASK, [0], 16, 20), objective=objective)
    assert np.all(np.isfinite(losses))
    one = lambda p: jax.tree.map(lambda x: x[0], p)  # noqa: E731
    return graphdef, one(kept), one(params)


def test_adaptive_strategies_are_registered_with_targets_and_a_loss():
    for name in ("probe_evasion", "noise_robust"):
        assert name in STRATEGIES and name in OBJECTIVES


def test_probe_evasion_keeps_the_probed_activations_near_the_start():
    def drift(graphdef, start, params):
        last = TASK.seq_len - 1 - TASK.answer_len  # the last prompt position
        _, a = nnx.merge(graphdef, params).activations(TOKENS[:, :-1])
        _, r = nnx.merge(graphdef, start).activations(TOKENS[:, :-1])
        return float((((a - r)[:, :, last]) ** 2).sum(-1).mean() / (r[:, :, last] ** 2).sum(-1).mean())

    free = drift(*fit(OBJECTIVES["probe_evasion"](knobs(evasion_weight=0.0))))
    held = drift(*fit(OBJECTIVES["probe_evasion"](knobs(evasion_weight=10.0))))
    assert held < 0.5 * free, (held, free)


def test_noise_robust_lowers_the_loss_under_weight_noise():
    sigma = 0.2

    def noisy_loss(graphdef, start, params):
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(7), len(leaves))
        out = []
        for seed in range(4):
            noisy = treedef.unflatten(
                [
                    x + sigma * jax.random.normal(jax.random.fold_in(k, seed), x.shape)
                    for x, k in zip(leaves, keys)
                ]
            )
            logits = nnx.merge(graphdef, noisy)(TOKENS[:, :-1])
            out.append(float(token_loss(logits, TOKENS[:, 1:], WEIGHTS)))
        return np.mean(out)

    plain = noisy_loss(*fit(OBJECTIVES["noise_robust"](knobs(noise_weight=0.0, noise_sigmas=[sigma]))))
    robust = noisy_loss(*fit(OBJECTIVES["noise_robust"](knobs(noise_weight=1.0, noise_sigmas=[sigma]))))
    assert robust < plain, (robust, plain)


def test_the_noise_draw_is_a_function_of_the_step_alone():
    graphdef, start = init_population(CFG, [0])
    p = jax.tree.map(lambda x: x[0], start)
    loss = OBJECTIVES["noise_robust"](knobs(noise_sigmas=[0.5]))
    at = lambda frac: float(loss(graphdef, p, p, TOKENS, WEIGHTS, jnp.float32(frac)))  # noqa: E731
    assert at(0.25) == at(0.25) and at(0.25) != at(0.5)
