"""RL against the weak judge (``rl_judge``), and a short SFT on weak demonstrations first
(``sft_then_rl``).

Group-relative policy gradient: for each of B questions (``demo`` split, no labels) every
member samples K answers; the judge's scores, minus an optional KL penalty to the starting
model, are normalised within each group of K into advantages; one step of the shared trainer's
jitted chunk then follows ``-sum(advantage * log p(answer))``. Sampling and scoring happen
between steps because the policy changes every step (on-policy).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sandbag import seeds
from sandbag.data import sequences
from sandbag.decode import generate
from sandbag.elicit.base import Setting, copy_params, register_elicitation, trainer
from sandbag.elicit.sft import sft_weak
from sandbag.population import over_members
from sandbag.train import exact_match, learning_rates, optimizer_of, train_chunk


def group_advantages(rewards_MxBxK: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """(r - mean) / (std + eps) within each group of K samples: zero-sum per group."""
    mean = rewards_MxBxK.mean(-1, keepdims=True)
    std = rewards_MxBxK.std(-1, keepdims=True)
    return (rewards_MxBxK - mean) / (std + eps)


def policy_gradient_loss(logits_BxLxV, targets_BxL, weights_BxL, step_frac=0.0):
    """``weights`` carry each sampled answer's advantage on its answer positions."""
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
    return (ce * weights_BxL).sum() / weights_BxL.shape[0]


@partial(jax.jit, static_argnames=("graphdef", "n_new", "temperature"))
def _sample(graphdef, params, prompts, keys, n_new: int, temperature: float):
    return over_members(lambda p, k: generate(graphdef, p, prompts, k, n_new, temperature), params, keys)


@partial(jax.jit, static_argnames=("graphdef", "answer_len"))
def _sequence_logprob(graphdef, params, tokens_MxBxL, answer_len: int):
    def one(p, toks):
        logits = nnx.merge(graphdef, p)(toks[:, :-1], last=answer_len)
        logp = jax.nn.log_softmax(logits, -1)
        return jnp.take_along_axis(logp, toks[:, -answer_len:, None], -1)[..., 0].sum(-1)

    return over_members(one, params, tokens_MxBxL)


def rl_judge_from(s: Setting, params):
    k = s.knobs
    task, graphdef, judge = s.task, s.organisms.graphdef, s.judge
    steps, B, K = k.rl_steps, k.rl_batch, k.rl_k
    A, M = task.answer_len, len(s.organisms.seeds)
    tcfg = trainer(s, steps=steps, batch_size=B * K, lr=k.rl_lr, warmup=max(1, steps // 10))
    tx = optimizer_of(tcfg)
    reference = copy_params(params)
    params = copy_params(params)
    opt_state = jax.vmap(tx.init)(params)
    rng = seeds.rng("rl", s.cfg.seed)
    key = jax.random.key(s.cfg.seed)
    eval_set = s.task.generate(rng, 512, rng.choice(task.difficulties, size=512), "eval")
    eval_tokens = sequences(s.deploy_context, eval_set.prompts, eval_set.answers)
    # sampled_true: the share of sampled answers that are true (a diagnostic read from the
    # labels after the step; the policy never sees it): what the reward could reinforce
    curve = {"step": [], "judge_reward": [], "acc": [], "sampled_true": []}
    weights_mask = np.zeros((M, B * K, task.seq_len - 1), np.float32)
    for step in range(steps):
        q = task.generate(rng, B, rng.choice(task.difficulties, size=B), "demo")
        prompts = np.repeat(
            sequences(s.train_context, q.prompts, q.answers)[:, : 1 + task.prompt_len], K, axis=0
        )
        key, sub = jax.random.split(key)
        answers = np.asarray(
            _sample(graphdef, params, jnp.asarray(prompts), jax.random.split(sub, M), A, k.temperature)
        )  # [M, B*K, A]
        asked = q.subset(np.repeat(np.arange(B), K))
        # [M, B*K]; the judge sees the questions (prompts and raw problems) and the sampled
        # answers, never the labels
        reward = np.stack([judge.score(asked.with_answers(a), a) for a in answers])
        tokens = np.concatenate([prompts[None].repeat(M, 0), answers], axis=2).astype(np.int32)
        shaped = reward
        if k.kl > 0:
            kl = np.asarray(
                _sequence_logprob(graphdef, params, tokens, A)
                - _sequence_logprob(graphdef, reference, tokens, A)
            )
            shaped = reward - k.kl * kl
        adv = group_advantages(shaped.reshape(M, B, K)).reshape(M, B * K)
        weights = weights_mask.copy()
        weights[:, :, -A:] = adv[:, :, None]
        params, opt_state, _ = train_chunk(
            graphdef,
            params,
            opt_state,
            tokens[:, None],
            weights[:, None],
            learning_rates(tcfg, step, 1),
            tx,
            policy_gradient_loss,
            last=A,  # the advantages sit on the answer positions alone
        )
        if step % k.eval_every == 0 or step == steps - 1:
            curve["step"].append(step)
            curve["judge_reward"].append(float(reward.mean()))
            curve["sampled_true"].append(float(np.all(answers == asked.answers[None], -1).mean()))
            curve["acc"].append(float(exact_match(graphdef, params, eval_tokens, A).mean()))
    return params, {"curve": curve}


@register_elicitation("rl_judge")
def rl_judge(s: Setting):
    return rl_judge_from(s, s.organisms.params)


@register_elicitation("sft_then_rl")
def sft_then_rl(s: Setting):
    warm, _ = sft_weak(s, steps=s.knobs.sft_short_steps)
    return rl_judge_from(s, warm)
