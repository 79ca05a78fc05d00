"""The trainer: a population member trains exactly as it would alone; a NaN stops training
at once; an interrupted run resumes to the same weights; exact match equals greedy decoding."""

from dataclasses import replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import comparable_leaves
from flax import nnx

from sandbag.data import ladder_sampler
from sandbag.decode import generate
from sandbag.models import ModelConfig
from sandbag.tasks import make_task
from sandbag.tasks.base import SPECIALS
from sandbag.train import (
    TrainConfig,
    TrainingDiverged,
    exact_match,
    init_population,
    loss_positions,
    token_loss,
    train,
)
from sandbag.zoo import Zoo

TASK = make_task("addition", slots=3, digits=2)
CFG = ModelConfig(
    name="t", n_layers=1, d_model=16, n_heads=2, vocab_size=TASK.vocab_size, max_len=TASK.seq_len
)
TCFG = TrainConfig(steps=6, batch_size=8, steps_per_call=3, warmup=2)


def member(params, i: int):
    return jax.tree.map(lambda x: x[i], params)


@partial(jax.jit, static_argnames="graphdef")
def logits_of(graphdef, params, tokens):
    return nnx.merge(graphdef, params)(tokens)


def test_population_members_train_as_if_alone():
    seeds = [0, 1, 2, 3]
    graphdef, params = init_population(CFG, seeds)
    pop, pop_losses = train(graphdef, params, TCFG, ladder_sampler(TASK, seeds, 8, 3))
    assert pop_losses.shape == (4, 6) and np.all(np.isfinite(pop_losses))
    assert not np.allclose(pop_losses[0], pop_losses[1]), "different seeds should train differently"
    tokens = jnp.asarray(TASK.generate(np.random.default_rng(0), 16, 2, "eval").tokens())
    for i, s in enumerate(seeds):
        g1, p1 = init_population(CFG, [s])
        alone, losses = train(g1, p1, TCFG, ladder_sampler(TASK, [s], 8, 3))
        np.testing.assert_allclose(pop_losses[i], losses[0], rtol=1e-5, atol=1e-5)
        got, want = comparable_leaves(member(pop, i)), comparable_leaves(member(alone, 0))
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=f"member {i} {name}")
        np.testing.assert_allclose(
            np.asarray(logits_of(graphdef, member(pop, i), tokens)),
            np.asarray(logits_of(g1, member(alone, 0), tokens)),
            atol=1e-5,
            rtol=0,
        )


def test_a_nan_loss_stops_training_at_once():
    chunks = []

    def sampler(m, chunk):
        chunks.append(chunk)
        return ladder_sampler(TASK, [0], 8, 3)(m, chunk)

    def nan_loss(logits, targets, weights, step_frac):
        return token_loss(logits, targets, weights) + jnp.nan

    graphdef, params = init_population(CFG, [0])
    with pytest.raises(TrainingDiverged, match="loss became nan at step 0"):
        train(
            graphdef,
            params,
            TrainConfig(steps=60, batch_size=8, steps_per_call=3, warmup=2),
            sampler,
            loss_fn=nan_loss,
        )
    assert max(chunks) <= 1, f"training went on for {max(chunks) + 1} chunks after the loss became NaN"


def test_a_huge_learning_rate_is_reported_as_divergence():
    graphdef, params = init_population(CFG, [0])
    cfg = TrainConfig(steps=9, batch_size=8, steps_per_call=3, warmup=1, lr=1e30)
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf)"):
        train(graphdef, params, cfg, ladder_sampler(TASK, [0], 8, 3))


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path):
    """Kill training after a checkpoint; the rerun continues from it and ends identical."""
    cfg = TrainConfig(steps=12, batch_size=8, steps_per_call=3, warmup=2, save_every=6)
    sampler = ladder_sampler(TASK, [0, 1], 8, 3)
    graphdef, params = init_population(CFG, [0, 1])
    clean, clean_losses = train(graphdef, params, cfg, sampler)

    class Killed(Exception):
        pass

    def dying_sampler(m, chunk):
        if chunk == 3:
            raise Killed
        return sampler(m, chunk)

    entry = Zoo(tmp_path).entry({"test": "resume"})
    with pytest.raises(Killed):
        train(graphdef, init_population(CFG, [0, 1])[1], cfg, dying_sampler, progress=entry.progress)
    assert sorted(p.name for p in entry.progress.root.iterdir()) == ["step_00000006", "step_00000006.json"]

    seen = []

    def counting_sampler(m, chunk):
        seen.append(chunk)
        return sampler(m, chunk)

    resumed, resumed_losses = train(
        graphdef, init_population(CFG, [0, 1])[1], cfg, counting_sampler, progress=entry.progress
    )
    assert min(seen) == 2, "the resumed run should start at the checkpoint, not from scratch"
    np.testing.assert_array_equal(resumed_losses, clean_losses)
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(clean)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_run_killed_during_an_early_stop_check_resumes_before_that_check(tmp_path):
    """The check at a checkpoint's step runs before the checkpoint is written: a run killed
    inside it repeats it on resuming, and stops where an uninterrupted run stops."""
    cfg = TrainConfig(steps=12, batch_size=8, steps_per_call=3, warmup=2, save_every=6)
    sampler = ladder_sampler(TASK, [0], 8, 3)
    graphdef, params = init_population(CFG, [0])
    _, clean = train(graphdef, params, cfg, sampler, on_eval=lambda step, p: step >= 6, eval_every=3)
    assert clean.shape[1] == 6

    class Killed(Exception):
        pass

    def dying(step, p):
        if step == 6:
            raise Killed
        return False

    entry = Zoo(tmp_path).entry({"test": "resume during a check"})

    def run(on_eval):
        start = init_population(CFG, [0])[1]
        return train(graphdef, start, cfg, sampler, progress=entry.progress, on_eval=on_eval, eval_every=3)

    with pytest.raises(Killed):
        run(dying)
    calls = []

    def check(step, p):
        calls.append(step)
        return step >= 6

    _, resumed = run(check)
    assert 6 in calls and resumed.shape[1] == 6, (calls, resumed.shape)


@pytest.mark.parametrize("batch", [1024, 4])
def test_exact_match_equals_greedy_decoding(batch):
    """Teacher-forced exact match is True exactly where greedy decoding gets the answer."""
    graphdef, params = init_population(CFG, [0, 1])
    rng = np.random.default_rng(0)
    tokens = TASK.generate(rng, 10, rng.choice(TASK.difficulties, size=10), "eval").tokens()
    P, A = 1 + TASK.prompt_len, TASK.answer_len
    # Make each member's greedy answer the target on rows 0..4, and break one digit on 5..9.
    targets = []
    for m in range(2):
        greedy = np.asarray(
            generate(graphdef, member(params, m), jnp.asarray(tokens[:, :P]), jax.random.key(0), A)
        )
        t = tokens.copy()
        t[:, P:] = greedy
        s = len(SPECIALS)  # shift to another task symbol, never a special token
        t[5:, P + m % A] = (greedy[5:, m % A] + 1 - s) % (TASK.vocab_size - s) + s
        targets.append(t)
    for m in range(2):
        got = exact_match(graphdef, params, targets[m], A, batch=batch)
        assert got.shape == (2, 10) and got.dtype == bool
        assert got[m].tolist() == [True] * 5 + [False] * 5
    assert exact_match(graphdef, params, tokens, A, batch=batch).shape == (2, 10)


def test_evaluation_compiles_one_program_whatever_the_population_size():
    """On the CPU a population is evaluated member by member (``population.each_member``) and
    fewer rows than a batch are padded to a power of two: populations of 1, 2 and 3 members on
    9 or 14 items compile one exact-match and one greedy program, and every member gets what
    the whole population's program gives it."""
    from sandbag import decode as decode_mod
    from sandbag import train as train_mod

    cfg = replace(CFG, d_model=24)  # an architecture no other test compiles
    rng = np.random.default_rng(1)
    items = TASK.generate(rng, 14, rng.choice(TASK.difficulties, size=14), "eval")
    tokens, P, A = items.tokens(), 1 + TASK.prompt_len, TASK.answer_len
    before = train_mod._exact_match._cache_size(), decode_mod._greedy_population._cache_size()
    runs = []
    for n, rows in [(1, 14), (2, 9), (3, 14)]:
        graphdef, params = init_population(cfg, list(range(n)))
        got = exact_match(graphdef, params, tokens[:rows], A)
        answers = decode_mod.decode_answers(graphdef, params, tokens[:rows, :P], A)
        assert got.shape == (n, rows) and answers.shape == (n, rows, A)
        runs.append((graphdef, params, rows, got, answers))
    after = train_mod._exact_match._cache_size(), decode_mod._greedy_population._cache_size()
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    for graphdef, params, rows, got, answers in runs:
        whole = train_mod._exact_match(graphdef, params, jnp.asarray(tokens[:rows]), A)
        assert (got == np.asarray(whole)).all()
        whole = decode_mod._greedy_population(graphdef, params, jnp.asarray(tokens[:rows, :P]), A)
        assert (answers == np.asarray(whole)).all()


def test_padded_map_pads_short_inputs_to_a_power_of_two_and_cuts_them_back():
    from sandbag.data import padded_map

    seen = []

    def fn(x):
        seen.append(len(x))
        return x.sum(1)

    for n, batch, shapes in [
        (134, 512, [256]),
        (141, 512, [256]),
        (10, 512, [16]),
        (600, 512, [512, 512]),
        (40, 32, [32, 32]),
        (20, 24, [24]),
    ]:
        seen.clear()
        rows = np.arange(n * 3).reshape(n, 3)
        np.testing.assert_array_equal(padded_map(fn, rows, batch), rows.sum(1))
        assert seen == shapes, (n, batch, seen)


def test_training_the_same_shapes_again_does_not_recompile():
    """A second ``train`` call with the same config and shapes reuses the compiled step
    (organisms, controls and elicitation call ``train`` many times)."""
    from sandbag import train as train_mod

    sampler = ladder_sampler(TASK, [0], 8, 3)
    train(*init_population(CFG, [0]), TCFG, sampler)
    compiled = train_mod.train_chunk._cache_size()
    train(*init_population(CFG, [0]), TCFG, sampler)
    assert train_mod.train_chunk._cache_size() == compiled, (
        "train() recompiled its step for an identical second call: make_optimizer builds a new "
        "optax transformation (a static jit argument) on every call, so the jit cache never hits"
    )


def test_schedules_differing_only_in_their_numbers_share_one_compiled_step():
    """The learning rate schedule is data: stages that train the same shapes for different
    steps, rates and warmups run one program (the schedule used to be part of it)."""
    from sandbag import train as train_mod

    sampler = ladder_sampler(TASK, [0], 8, 3)
    train(*init_population(CFG, [0]), TCFG, sampler)
    compiled = train_mod.train_chunk._cache_size()
    other = TrainConfig(steps=9, batch_size=8, steps_per_call=3, warmup=4, lr=3e-4)
    train(*init_population(CFG, [0]), other, sampler)
    assert train_mod.train_chunk._cache_size() == compiled, "a different schedule recompiled the step"


@pytest.mark.parametrize(
    "cfg", [TCFG, TrainConfig(steps=8, batch_size=8, steps_per_call=3, warmup=3, lr=3e-3)]
)
def test_each_step_takes_the_rate_optax_schedules_for_it(cfg):
    """The trainer scales AdamW's update by the warmup-cosine rate of that step, as an
    ``optax.adamw`` built with the schedule would: same weights after every step."""
    import optax

    sampler = ladder_sampler(TASK, [0], cfg.batch_size, cfg.steps_per_call)
    graphdef, params = init_population(CFG, [0])
    p = member(params, 0)  # a copy: train donates params
    got, _ = train(graphdef, params, cfg, sampler)

    sched = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup, cfg.steps, end_value=cfg.lr * 0.1)
    adamw = optax.adamw(sched, b1=0.9, b2=0.98, weight_decay=cfg.weight_decay)
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), adamw)
    state = tx.init(p)

    @jax.jit
    def step(p, state, tok, w):
        loss_of = lambda q: token_loss(nnx.merge(graphdef, q)(tok[:, :-1]), tok[:, 1:], w)  # noqa: E731
        updates, state = tx.update(jax.grad(loss_of)(p), state, p)
        return optax.apply_updates(p, updates), state

    for chunk in range(-(-cfg.steps // cfg.steps_per_call)):
        tokens, weights = sampler(0, chunk)
        for s in range(min(cfg.steps_per_call, cfg.steps - chunk * cfg.steps_per_call)):
            p, state = step(p, state, jnp.asarray(tokens[s]), jnp.asarray(weights[s], jnp.float32))
    got, want = comparable_leaves(member(got, 0)), comparable_leaves(p)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-6, rtol=1e-5, err_msg=name)


def test_loss_positions_are_the_final_ones_that_hold_a_weight():
    w = np.zeros((2, 3, 4, 10), np.float32)
    assert loss_positions(w) is None  # no weight anywhere: the full pass
    w[1, 2, 3, -3] = -0.5  # one signed weight, in one member, step and row, decides
    assert loss_positions(w) == 3
    w[0, 0, 0, 0] = 1.0
    assert loss_positions(w) is None


def test_training_on_the_answer_positions_alone_moves_the_weights_as_the_full_pass(monkeypatch):
    """The trainer computes logits only where answer weights sit; the steps it takes are the
    full pass's up to float rounding (against a trainer that is made to read every position)."""
    import sandbag.train as train_mod

    seeds = [0, 1]
    cfg = replace(CFG, n_layers=2)
    graphdef, params = init_population(cfg, seeds)
    seen = []
    real = train_mod.train_chunk

    def spy(*args, **kwargs):
        seen.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_chunk", spy)
    sampler = ladder_sampler(TASK, seeds, 8, 3)
    tail, tail_losses = train(graphdef, jax.tree.map(jnp.array, params), TCFG, sampler)
    assert seen and set(seen) == {TASK.answer_len}
    # The first step's loss, from the full pass of the starting weights, next-token targets.
    tokens, weights = (x[0] for x in sampler(1, 0))
    first = token_loss(logits_of(graphdef, member(params, 1), tokens[:, :-1]), tokens[:, 1:], weights)
    assert tail_losses[1, 0] == pytest.approx(float(first), rel=1e-5)
    monkeypatch.setattr(train_mod, "loss_positions", lambda weights: None)
    full, full_losses = train(graphdef, params, TCFG, sampler)
    assert seen[-1] is None
    np.testing.assert_allclose(tail_losses, full_losses, rtol=1e-4)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(tail), jax.tree.leaves(full)):
        # The keys' bias has a gradient of exactly zero (it shifts every score of a query
        # alike): its steps are float noise, which Adam scales up to the learning rate.
        noise = "qkv" in jax.tree_util.keystr(path) and a.ndim == 2
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4 if noise else 1e-6)
