"""The transformer and the decoder: the KV cache changes speed, never the answer; the model
is causal (so teacher-forced exact match is honest); activations are the residual stream."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sandbag.data import ladder_sampler
from sandbag.decode import generate
from sandbag.models import ModelConfig, Transformer
from sandbag.population import over_members
from sandbag.tasks import make_task
from sandbag.train import TrainConfig, init_population, train

TASK = make_task("addition", slots=3, digits=2)


def tiny_config(n_layers: int = 2) -> ModelConfig:
    return ModelConfig(
        name="t", n_layers=n_layers, d_model=32, n_heads=2, vocab_size=TASK.vocab_size, max_len=TASK.seq_len
    )


@pytest.fixture(scope="module")
def models():
    """{name: (graphdef, params)} for an untrained and a briefly trained tiny model."""
    cfg = tiny_config()
    graphdef, params = nnx.split(Transformer(cfg, nnx.Rngs(params=0)))
    pop_def, pop = init_population(cfg, [1])
    tcfg = TrainConfig(steps=30, batch_size=32, lr=3e-3, warmup=5, steps_per_call=10)
    pop, losses = train(pop_def, pop, tcfg, ladder_sampler(TASK, [1], 32, 10))
    assert losses[0, -1] < losses[0, 0], "the briefly trained model should have learned something"
    trained = jax.tree.map(lambda x: x[0], pop)
    return {"untrained": (graphdef, params), "trained": (pop_def, trained)}


@partial(jax.jit, static_argnames="graphdef")
def forward(graphdef, params, tokens):
    return nnx.merge(graphdef, params)(tokens)


@partial(jax.jit, static_argnames=("graphdef", "prefill", "length"))
def forward_cached(graphdef, params, tokens, prefill: int, length=None):
    """Logits from a prefill of the first ``prefill`` tokens, then one token at a time, with a
    cache of ``length`` positions (default the model's max_len)."""
    model = nnx.merge(graphdef, params)
    logits, cache = model.decode_step(tokens[:, :prefill], 0, model.empty_cache(tokens.shape[0], length))
    steps = [logits]
    for t in range(prefill, tokens.shape[1]):
        logits, cache = model.decode_step(tokens[:, t : t + 1], t, cache)
        steps.append(logits)
    return jnp.concatenate(steps, axis=1)


def prompts(n: int = 16, seed: int = 0) -> jnp.ndarray:
    """Context slot + prompt, the part a decoder is given."""
    rng = np.random.default_rng(seed)
    items = TASK.generate(rng, n, rng.choice(TASK.difficulties, size=n), "eval")
    return jnp.asarray(items.tokens()[:, : 1 + TASK.prompt_len])


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_greedy_decoding_with_cache_equals_full_recomputation(models, which):
    graphdef, params = models[which]
    p = prompts()
    key = jax.random.key(0)
    cached = generate(graphdef, params, p, key, TASK.answer_len, temperature=0.0, use_cache=True)
    full = generate(graphdef, params, p, key, TASK.answer_len, temperature=0.0, use_cache=False)
    assert cached.shape == (16, TASK.answer_len) and cached.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(full))
    # Greedy means: each token is the argmax of the full forward pass over what came before.
    seq = jnp.concatenate([p, full], axis=1)
    logits = forward(graphdef, params, seq[:, :-1])
    argmax = np.asarray(jnp.argmax(logits[:, p.shape[1] - 1 :], axis=-1))
    np.testing.assert_array_equal(argmax, np.asarray(full))


@pytest.mark.parametrize("which", ["untrained", "trained"])
def test_sampling_with_cache_equals_full_recomputation_for_the_same_key(models, which):
    graphdef, params = models[which]
    p = prompts(32, seed=1)
    key = jax.random.key(42)
    n_new = TASK.answer_len
    cached = generate(graphdef, params, p, key, n_new, temperature=1.0, use_cache=True)
    full = generate(graphdef, params, p, key, n_new, temperature=1.0, use_cache=False)
    np.testing.assert_array_equal(np.asarray(cached), np.asarray(full))
    other = generate(graphdef, params, p, jax.random.key(43), n_new, temperature=1.0, use_cache=True)
    assert not np.array_equal(np.asarray(cached), np.asarray(other)), "another key should sample differently"


@pytest.mark.parametrize("length", [None, TASK.seq_len], ids=["max_len", "just the sequence"])
def test_cached_logits_match_the_full_forward_pass(models, length):
    graphdef, params = models["trained"]
    seq = jnp.asarray(
        np.random.default_rng(0).integers(0, TASK.vocab_size, size=(4, TASK.seq_len)), jnp.int32
    )
    full = forward(graphdef, params, seq)
    cached = forward_cached(graphdef, params, seq, 1 + TASK.prompt_len, length)
    assert cached.shape == full.shape
    np.testing.assert_allclose(np.asarray(cached), np.asarray(full), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_activations_are_the_residual_stream_of_every_layer(n_layers):
    cfg = tiny_config(n_layers)
    graphdef, params = nnx.split(Transformer(cfg, nnx.Rngs(params=0)))

    @jax.jit
    def run(params, seq):
        model = nnx.merge(graphdef, params)
        logits, acts = model.activations(seq)
        pos = jnp.arange(seq.shape[1])
        x, by_hand = model.embed(seq) + model.pos(pos)[None], []
        for block in model.blocks:  # the stream after each block, in order
            x, _ = block(x, pos, None, None)
            by_hand.append(x)
        return logits, acts, model(seq), model.head(model.ln_f(acts[-1])), jnp.stack(by_hand)

    seq = prompts(5)
    logits, acts, plain, from_last, by_hand = run(params, seq)
    assert acts.shape == (n_layers, 5, seq.shape[1], cfg.d_model)
    np.testing.assert_allclose(np.asarray(acts), np.asarray(by_hand), atol=1e-6)
    np.testing.assert_allclose(np.asarray(plain), np.asarray(logits), atol=1e-6)
    # The last layer's activations are what the head reads.
    np.testing.assert_allclose(np.asarray(from_last), np.asarray(logits), atol=1e-5)


@pytest.mark.parametrize("n_layers", [1, 2])
@pytest.mark.parametrize("last", [1, 4])
def test_the_logits_of_the_last_positions_alone_are_those_of_the_full_pass(models, n_layers, last):
    if n_layers == 2:
        graphdef, params = models["trained"]
    else:
        graphdef, params = nnx.split(Transformer(tiny_config(n_layers), nnx.Rngs(params=0)))
    seq = jnp.asarray(
        np.random.default_rng(1).integers(0, TASK.vocab_size, size=(6, TASK.seq_len)), jnp.int32
    )
    full = forward(graphdef, params, seq)
    tail = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x, last=last))(params, seq)
    assert tail.shape == (6, last, TASK.vocab_size)
    np.testing.assert_allclose(np.asarray(tail), np.asarray(full[:, -last:]), atol=1e-5, rtol=0)


def test_the_model_is_causal(models):
    """Changing a token never changes the logits before it: teacher forcing cannot peek."""
    graphdef, params = models["trained"]
    seq = jnp.asarray(
        np.random.default_rng(1).integers(0, TASK.vocab_size, size=(3, TASK.seq_len)), jnp.int32
    )
    j = TASK.seq_len - 3
    changed = seq.at[:, j:].set((seq[:, j:] + 1) % TASK.vocab_size)
    a, b = np.asarray(forward(graphdef, params, seq)), np.asarray(forward(graphdef, params, changed))
    np.testing.assert_allclose(a[:, :j], b[:, :j], atol=1e-6)
    assert not np.allclose(a[:, j:], b[:, j:]), "later logits should see the change"


def test_decoding_past_the_context_is_refused(models):
    """Asking for more tokens than max_len holds must fail loudly, not return garbage
    (positions past the table are clamped or zero-filled silently)."""
    graphdef, params = models["untrained"]
    p = prompts(2)
    too_many = TASK.seq_len - p.shape[1] + 1
    with pytest.raises(ValueError, match="max_len"):
        generate(graphdef, params, p, jax.random.key(0), too_many, temperature=0.0, use_cache=True)


def test_over_members_gives_each_member_what_vmap_gives_it():
    """Populations evaluate through ``over_members`` (a loop over members on the CPU): every
    member's result is the one a vmapped program gives it, for several stacked arguments."""
    cfg = ModelConfig(name="t", n_layers=1, d_model=16, n_heads=2, vocab_size=TASK.vocab_size, max_len=64)
    graphdef, params = init_population(cfg, [0, 1, 2])
    tokens = jnp.stack([prompts(8, seed=s) for s in range(3)])  # a batch of its own per member

    def logits(p, toks):
        return nnx.merge(graphdef, p)(toks)

    got = jax.jit(lambda *a: over_members(logits, *a))(params, tokens)
    want = jax.jit(jax.vmap(logits))(params, tokens)
    assert got.shape == (3, 8, 1 + TASK.prompt_len, TASK.vocab_size)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
    assert not np.allclose(np.asarray(got[0]), np.asarray(got[1])), "members and their batches differ"
