"""The weak supervisor: its answers and demonstrations, the errors judges face, and the three
judges (agreement, likelihood, verifier) with their recognition and perceived accuracy.

The weak model is the shared ``weak_supervisor`` fixture (a briefly trained nano rung: right on
most easy items, wrong on most hard ones). Expected values are computed independently: by
reading prompts as text, or by a plain forward pass of the model.
"""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import addition_answers, addition_operands, addition_rung
from flax import nnx

from sandbag.data import answer_alphabet, eval_items, near_miss, one_token_changes
from sandbag.decode import answers_of, prompts_of
from sandbag.population import member
from sandbag.schema import Judge
from sandbag.supervision import JUDGES, make_judge, perceived_accuracy, recognition
from sandbag.supervision.weak import demonstrations, realistic_errors, weak_answers
from sandbag.tasks.base import NO, PAD, SPLITS, YES, split_hash
from sandbag.train import exact_match, init_population
from sandbag.zoo import Zoo

VERIFIER = {"name": "verifier", "steps": 100, "batch_size": 32, "lr": 1e-3, "pool": 256}


def judge_cfg(name: str, **overrides):
    return Judge(**{**(VERIFIER if name == "verifier" else {"name": name}), **overrides})


def single_model(rung):
    """Member 0 of a rung as a plain NNX model (for independent forward passes)."""
    return nnx.merge(rung.graphdef, jax.tree.map(lambda x: x[0], rung.params))


def one_change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: do ``a`` and ``b`` differ in exactly one position?"""
    return (a != b).sum(axis=1) == 1


# -- weak.py ------------------------------------------------------------------------------


def test_weak_answers_are_the_greedy_answers_of_member_zero(weak_supervisor):
    task, weak = weak_supervisor
    items = eval_items(task, 16, 0)
    got = weak_answers(weak, items)
    assert got.shape == items.answers.shape
    # Independently: greedy decoding, one token at a time, by full forward passes.
    model = single_model(weak)
    seq = jnp.asarray(prompts_of(items, PAD))
    for _ in range(task.answer_len):
        nxt = jnp.argmax(model(seq)[:, -1], axis=-1).astype(jnp.int32)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(got, np.asarray(seq[:, -task.answer_len :]))
    np.testing.assert_array_equal(answers_of(weak, items)[0], got)
    # The fixture is a real weak supervisor: good on easy items, poor on hard ones.
    right = task.check(got, items.answers)
    easy, hard = (right[items.difficulty == k].mean() for k in (1, 3))
    assert easy > 0.5 > hard, f"weak accuracy {easy:.2f} on level 1, {hard:.2f} on level 3"


def test_prompts_of_puts_the_context_before_the_prompt(weak_supervisor):
    task, _ = weak_supervisor
    items = eval_items(task, 4, 0)
    for ctx in (PAD, 3):
        p = prompts_of(items, ctx)
        assert p.shape == (len(items.prompts), 1 + task.prompt_len)
        assert np.all(p[:, 0] == ctx)
        np.testing.assert_array_equal(p[:, 1:], items.prompts)


def test_member_is_one_member_of_a_population():
    params = {"w": np.arange(12.0).reshape(3, 4), "b": np.arange(3.0)}
    m = member(params, 2)
    np.testing.assert_array_equal(m["w"], [[8.0, 9.0, 10.0, 11.0]])
    np.testing.assert_array_equal(m["b"], [2.0])


def test_answer_alphabet_lists_the_tokens_true_answers_use_per_position(weak_supervisor):
    task, _ = weak_supervisor  # 3 operands of 2 digits: sums 0..297, three answer digits
    alphabet = answer_alphabet(task)
    assert len(alphabet) == task.answer_len
    digit = {str(d): task.vocab.index(str(d)) for d in range(10)}
    assert sorted(alphabet[0].tolist()) == [digit["0"], digit["1"], digit["2"]]
    for j in (1, 2):
        assert sorted(alphabet[j].tolist()) == sorted(digit.values())


def test_a_near_miss_changes_exactly_one_position_to_a_plausible_token(weak_supervisor):
    task, _ = weak_supervisor
    alphabet = answer_alphabet(task)
    rng = np.random.default_rng(0)
    gold = task.generate(rng, 3000, rng.choice(task.difficulties, size=3000)).answers
    miss = near_miss(gold, alphabet, np.random.default_rng(1))
    assert miss.shape == gold.shape
    assert np.all(one_change(miss, gold)), "a near miss must differ in exactly one position"
    for j, alpha in enumerate(alphabet):
        assert np.isin(miss[:, j], alpha).all(), f"position {j} got a token outside the alphabet"
        assert (miss[:, j] != gold[:, j]).any(), f"position {j} is never the one changed"
    np.testing.assert_array_equal(miss, near_miss(gold, alphabet, np.random.default_rng(1)))


def test_realistic_errors_are_the_weak_models_mistakes_else_near_misses(weak_supervisor):
    task, weak = weak_supervisor
    items = eval_items(task, 64, 1)
    mine = weak_answers(weak, items)
    weak_wrong = ~task.check(mine, items.answers)
    assert 0 < weak_wrong.sum() < len(mine), "the fixture should be right on some items, wrong on others"
    errors = realistic_errors(items.answers, mine, answer_alphabet(task), np.random.default_rng(0))
    assert not task.check(errors, items.answers).any(), "a realistic error must never be the true answer"
    np.testing.assert_array_equal(errors[weak_wrong], mine[weak_wrong])
    assert np.all(one_change(errors[~weak_wrong], items.answers[~weak_wrong]))


def test_demonstrations_are_demo_split_items_labelled_by_the_weak_model(weak_supervisor):
    task, weak = weak_supervisor
    demos = demonstrations(task, weak, 300, seed=0)
    assert demos.prompts.shape == (300, task.prompt_len) and demos.answers.shape == (300, task.answer_len)
    lo, hi = SPLITS["demo"]
    h = split_hash(task.canonical(addition_operands(task, demos.prompts)))
    assert np.all((h >= lo) & (h < hi)), "demonstrations must come from the demo split only"
    # Every level is represented, and the difficulty recorded is the one the prompt has.
    assert set(demos.difficulty.tolist()) == set(task.difficulties)
    np.testing.assert_array_equal((addition_operands(task, demos.prompts) != 0).sum(1), demos.difficulty)
    # The labels are the weak model's answers, mistakes included -- not the truth.
    np.testing.assert_array_equal(demos.answers, weak_answers(weak, demos))
    truth = addition_answers(task, demos.prompts)
    assert not task.check(demos.answers, truth).all(), "weak labels should include the weak model's mistakes"
    again, other = demonstrations(task, weak, 300, seed=0), demonstrations(task, weak, 300, seed=1)
    np.testing.assert_array_equal(again.prompts, demos.prompts)
    assert not np.array_equal(other.prompts, demos.prompts)


# -- judges -------------------------------------------------------------------------------


def test_agreement_accepts_exactly_the_weak_models_own_answers(weak_supervisor):
    task, weak = weak_supervisor
    judge = make_judge(judge_cfg("agreement"), task, weak, zoo=None)
    items = eval_items(task, 32, 0)
    own = weak_answers(weak, items)
    misses = near_miss(own, answer_alphabet(task), np.random.default_rng(0))
    scores = judge.score_many(items, np.stack([own, misses, items.answers], axis=1))
    assert scores.shape == (len(own), 3)
    assert np.all(scores[:, 0] == 1.0)
    assert np.all(scores[:, 1] == 0.0)
    np.testing.assert_array_equal(scores[:, 2], task.check(own, items.answers).astype(np.float32))
    np.testing.assert_array_equal(judge.score(items, own), scores[:, 0])


def test_likelihood_is_the_geometric_mean_token_probability(weak_supervisor):
    task, weak = weak_supervisor
    judge = make_judge(judge_cfg("likelihood"), task, weak, zoo=None)
    items = eval_items(task, 16, 2)
    own = weak_answers(weak, items)
    rng = np.random.default_rng(0)
    random_answers = rng.choice(np.arange(len(task.vocab)), size=own.shape).astype(own.dtype)
    # The weak answer with its last digit changed ("0" <-> "1").
    zero, one = task.vocab.index("0"), task.vocab.index("1")
    last = own.copy()
    last[:, -1] = np.where(own[:, -1] == zero, one, zero)
    cands = np.stack([items.answers, own, last, random_answers], axis=1)
    scores = judge.score_many(items, cands)
    assert scores.shape == (len(own), 4)
    assert np.all((scores >= 0) & (scores <= 1))
    # Independently, for a few items: one forward pass over the whole sequence.
    model = single_model(weak)
    P, A = 1 + task.prompt_len, task.answer_len
    for i in range(4):
        for c in range(cands.shape[1]):
            seq = np.concatenate([[PAD], items.prompts[i], cands[i, c]]).astype(np.int32)
            logp = jax.nn.log_softmax(model(jnp.asarray(seq[None]))[0], axis=-1)
            want = np.exp(np.mean([logp[P + j - 1, seq[P + j]] for j in range(A)]))
            assert scores[i, c] == pytest.approx(float(want), rel=1e-4, abs=1e-6), (i, c)
    # Greedy maximises the last token given the same prefix: the weak answer scores at least
    # as high as its last-position near miss.
    assert np.all(scores[:, 1] >= scores[:, 2] - 1e-6)
    np.testing.assert_allclose(judge.score(items, own), scores[:, 1], rtol=1e-5)


def test_likelihood_scores_many_candidates_as_full_passes_do(weak_supervisor):
    """Every one-token change of the true answer (what the red team's best_wrong scores),
    across calls of the prompt-cached scorer and a padded last call, against one batched full
    forward pass per candidate."""
    task, weak = weak_supervisor
    judge = make_judge(judge_cfg("likelihood"), task, weak, zoo=None)
    items = eval_items(task, 24, 5)
    changes = one_token_changes(items.answers, answer_alphabet(task))
    cands = np.concatenate([items.answers[:, None], changes], axis=1)
    n, C, A = cands.shape
    assert n > 1024 // C and n % (1024 // C) != 0, "the case needs several calls, the last padded"
    scores = judge.score_many(items, cands)
    model = single_model(weak)
    seqs = np.concatenate([np.repeat(prompts_of(items, PAD), C, axis=0), cands.reshape(n * C, A)], axis=1)
    logp = jax.nn.log_softmax(model(jnp.asarray(seqs[:, :-1]))[:, -A:], axis=-1)
    picked = np.take_along_axis(np.asarray(logp), seqs[:, -A:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(scores, np.exp(picked.mean(-1)).reshape(n, C), rtol=1e-4, atol=1e-6)


def test_the_verifier_trains_through_the_zoo_and_scores_in_unit_interval(weak_supervisor, zoo_dir):
    task, weak = weak_supervisor
    items = eval_items(task, 16, 3)
    before = weak_answers(weak, items)
    zoo = Zoo(zoo_dir)
    judge = make_judge(judge_cfg("verifier"), task, weak, zoo)
    assert len(zoo.trained) == 1 and zoo.reused == []
    # Training the verifier (which starts from the weak rung) leaves the weak supervisor intact.
    try:
        after = weak_answers(weak, items)
    except RuntimeError as e:
        pytest.fail(f"training the verifier destroyed the weak supervisor's parameters: {e}")
    np.testing.assert_array_equal(after, before)

    wrong = realistic_errors(items.answers, before, answer_alphabet(task), np.random.default_rng(0))
    cands = np.stack([items.answers, wrong, before], axis=1)
    scores = judge.score_many(items, cands)
    assert scores.shape == (len(before), 3) and np.all((scores >= 0) & (scores <= 1))
    # The score is the least P(<yes>) against P(<no>) over the candidate's answer tokens, each
    # read at its own position, from one forward pass over (question, candidate).
    model = nnx.merge(weak.graphdef, jax.tree.map(lambda x: x[0], judge.params))
    A = task.answer_len
    for i in range(3):
        seq = np.concatenate([[PAD], items.prompts[i], cands[i, 1]]).astype(np.int32)
        logits = model(jnp.asarray(seq[None]))[0, -A:]
        want = min(float(jax.nn.softmax(logits[j, jnp.array([YES, NO])])[0]) for j in range(A))
        assert scores[i, 1] == pytest.approx(want, rel=1e-4, abs=1e-6)

    again = make_judge(judge_cfg("verifier"), task, weak, Zoo(zoo_dir))
    np.testing.assert_array_equal(again.score_many(items, cands), scores)
    zoo2 = Zoo(zoo_dir)
    make_judge(judge_cfg("verifier"), task, weak, zoo2)
    assert zoo2.reused == zoo.trained and zoo2.trained == [], "a second make_judge should reuse the zoo entry"
    # Another training config is another model.
    zoo3 = Zoo(zoo_dir)
    make_judge(judge_cfg("verifier", steps=10), task, weak, zoo3)
    assert len(zoo3.trained) == 1 and zoo3.trained != zoo.trained


def test_the_verifier_fits_any_weak_rung_that_fits_the_task(weak_supervisor, zoo_dir):
    """The verifier reads (question, candidate) -- ``seq_len`` tokens -- and gives a verdict on
    each answer token at its own position, so a weak rung whose ``max_len`` fits the task
    (what validation checks) must do; a shorter one is refused with a clear message."""
    task, weak = weak_supervisor
    for max_len in (task.seq_len, task.seq_len - 1):
        cfg = replace(weak.cfg, max_len=max_len)
        graphdef, params = init_population(cfg, [0])
        rung = replace(weak, cfg=cfg, graphdef=graphdef, params=params, key=f"weak-{max_len}")
        if max_len < task.seq_len:
            with pytest.raises(ValueError, match="max_len"):
                make_judge(judge_cfg("verifier", steps=4), task, rung, Zoo(zoo_dir))
            continue
        try:
            judge = make_judge(judge_cfg("verifier", steps=4), task, rung, Zoo(zoo_dir))
        except ValueError as e:
            pytest.fail(f"a weak rung with max_len = seq_len = {max_len} is refused as a verifier: {e}")
        items = eval_items(task, 2, 0)
        scores = judge.score_many(items, items.answers[:, None])
        assert scores.shape == (len(items.answers), 1) and np.all((scores >= 0) & (scores <= 1))


def test_an_unknown_judge_names_the_valid_ones(weak_supervisor):
    task, weak = weak_supervisor
    with pytest.raises(KeyError) as err:
        make_judge(judge_cfg("nope"), task, weak, zoo=None)
    for name in ("nope", *JUDGES):
        assert name in str(err.value)
    assert set(JUDGES) >= {"agreement", "likelihood", "verifier"}


@pytest.mark.parametrize("name", ["agreement", "likelihood"])
def test_recognition_reports_balanced_accuracy_per_level(weak_supervisor, name):
    task, weak = weak_supervisor
    judge = make_judge(judge_cfg(name), task, weak, zoo=None)
    got = recognition(judge, task, 32, seed=0)
    assert set(got) == {"acc", *(f"acc_d{k}" for k in task.difficulties)}
    assert all(0.0 <= v <= 1.0 for v in got.values())
    assert got["acc"] == pytest.approx(np.mean([got[f"acc_d{k}"] for k in task.difficulties]))
    if name == "agreement":
        # Where the weak model is right, agreement accepts the truth and rejects a near miss;
        # where it is wrong, it rejects the truth and accepts the weak model's own mistake. So
        # its recognition at each level is exactly the weak model's accuracy there.
        items = eval_items(task, 32, 0)
        right = exact_match(weak.graphdef, weak.params, items.tokens(), task.answer_len)[0]
        for k in task.difficulties:
            assert got[f"acc_d{k}"] == pytest.approx(right[items.difficulty == k].mean()), k
        assert got["acc_d1"] > got[f"acc_d{max(task.difficulties)}"], (
            "the judge's blind spot is the hard levels"
        )


def oracle_case(task, weak, seed: int = 0):
    """Eval questions with their answers blanked (as a detector's are), and candidates [n, 4, A]:
    the truth (from the prompt's text), the weak model's answers, near misses, realistic errors."""
    items = eval_items(task, 64, seed)
    truth = addition_answers(task, items.prompts)
    own = weak_answers(weak, items)
    rng = np.random.default_rng(seed)
    misses = near_miss(truth, answer_alphabet(task), rng)
    errors = realistic_errors(truth, own, answer_alphabet(task), rng)
    blank = items.with_answers(np.zeros_like(items.answers))
    return blank, truth, np.stack([truth, own, misses, errors], axis=1)


def test_a_partial_oracle_that_recognises_nothing_is_the_likelihood_judge(weak_supervisor):
    task, weak = weak_supervisor
    items, _, cands = oracle_case(task, weak)
    oracle = make_judge(judge_cfg("partial_oracle", recognition=0.0), task, weak, zoo=None)
    likelihood = make_judge(judge_cfg("likelihood"), task, weak, zoo=None)
    np.testing.assert_array_equal(oracle.score_many(items, cands), likelihood.score_many(items, cands))


def test_a_full_partial_oracle_accepts_every_true_answer_and_rejects_every_other(weak_supervisor):
    task, weak = weak_supervisor
    items, truth, cands = oracle_case(task, weak)
    judge = make_judge(judge_cfg("partial_oracle", recognition=1.0), task, weak, zoo=None)
    scores = judge.score_many(items, cands)  # the items carry no answers: the truth is the task's
    right = np.all(cands == truth[:, None], axis=-1)
    assert right[:, 0].all() and not right[:, 2:].any() and 0 < right[:, 1].sum() < len(right)
    np.testing.assert_array_equal(scores, right.astype(np.float32))
    assert recognition(judge, task, 32, seed=0) == {
        "acc": 1.0,
        **{f"acc_d{k}": 1.0 for k in task.difficulties},
    }


def test_a_partial_oracle_verifies_its_share_of_questions_the_same_for_every_paraphrase(weak_supervisor):
    """On the questions it verifies, a wrong candidate scores exactly 0 (the likelihood judge
    never does); elsewhere it is the likelihood judge. Which questions those are depends on the
    question, not its wording, and not on the split (all these come from one)."""
    task, weak = weak_supervisor
    items, truth, cands = oracle_case(task, weak)
    judge = make_judge(judge_cfg("partial_oracle", recognition=0.5), task, weak, zoo=None)
    likelihood = make_judge(judge_cfg("likelihood"), task, weak, zoo=None).score_many(items, cands)
    assert np.all(likelihood[:, 2] > 0)
    scores = judge.score_many(items, cands)
    verified = scores[:, 2] == 0.0
    assert 0.35 < verified.mean() < 0.65, (
        f"verified {verified.mean():.2f} of the questions at recognition 0.5"
    )
    right = np.all(cands == truth[:, None], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(scores[verified], right[verified])
    np.testing.assert_array_equal(scores[~verified], likelihood[~verified])
    reworded = task.paraphrases(np.random.default_rng(1), items.problems, items.difficulty)
    assert not np.array_equal(reworded.prompts, items.prompts)
    np.testing.assert_array_equal(judge.score_many(reworded, cands)[:, 2] == 0.0, verified)


def test_partial_oracles_on_different_models_verify_different_questions(weak_supervisor):
    """The red team's proxy judge is built on its own weak model: it must not learn from it
    which questions the blue team's judge checks."""
    from dataclasses import replace

    task, weak = weak_supervisor
    items, truth, cands = oracle_case(task, weak)
    cfg = judge_cfg("partial_oracle", recognition=0.5)
    blue = make_judge(cfg, task, weak, zoo=None).score_many(items, cands)[:, 2] == 0.0
    red = make_judge(cfg, task, replace(weak, key=weak.key + "[1]"), zoo=None).score_many(items, cands)
    red = red[:, 2] == 0.0
    assert 0.35 < red.mean() < 0.65
    assert 0.3 < (blue == red).mean() < 0.7, "the two verified sets should be unrelated"


def test_only_the_partial_oracle_s_zoo_record_carries_its_recognition():
    """Organisms are keyed by the judge they were trained against: a knob only the partial
    oracle reads must not change the keys of organisms trained against the other judges."""
    for name in ("agreement", "likelihood"):
        assert judge_cfg(name).spec() == {"name": name, "steps": 0, "batch_size": 0, "lr": 0.0, "pool": 0}
    assert judge_cfg("verifier", recognition=0.3).spec() == VERIFIER
    assert judge_cfg("partial_oracle", recognition=0.3).spec()["recognition"] == 0.3


def test_perceived_accuracy_is_what_the_judge_accepts_per_member(weak_supervisor):
    task, weak = weak_supervisor
    judge = make_judge(judge_cfg("agreement"), task, weak, zoo=None)
    items = eval_items(task, 16, 0)
    own = weak_answers(weak, items)
    misses = near_miss(items.answers, answer_alphabet(task), np.random.default_rng(0))
    got = perceived_accuracy(judge, items, np.stack([own, items.answers, misses]))
    assert got.shape == (3, len(own)) and got.dtype == bool
    assert got[0].all()
    np.testing.assert_array_equal(got[1], task.check(own, items.answers))
    np.testing.assert_array_equal(got[2], task.check(own, misses))


def test_the_verdict_loss_reads_each_position_s_verdict_from_the_sign_of_its_weight():
    from sandbag.supervision.judges import verdict_loss

    logits = jnp.zeros((1, 3, 12)).at[0, 0, YES].set(3.0).at[0, 1, NO].set(3.0).at[0, 2, YES].set(1.0)
    weights = jnp.array([[1.0, -2.0, 0.0]])  # token 0 right, token 1 wrong (weight 2), token 2 ignored
    logp = jax.nn.log_softmax(logits, -1)
    want = -(1.0 * logp[0, 0, YES] + 2.0 * logp[0, 1, NO]) / 3.0
    got = verdict_loss(logits, jnp.zeros((1, 3), jnp.int32), weights)
    assert float(got) == pytest.approx(float(want), rel=1e-5)


@pytest.mark.slow
def test_a_one_layer_verifier_is_good_on_easy_items_and_blind_on_hard_ones(zoo_dir):
    """The verifier's blind spot has the shape a sandbagger exploits: on the easiest level it
    accepts true answers and rejects realistic errors; on the hardest it does much worse.
    A one-layer rung with a single verdict after the answer stayed near chance on every level;
    a verdict on each answer token, read where the token stands, is within its reach."""
    task, weak = addition_rung("tiny", 32, "test-weak-tiny-addition3")
    vcfg = judge_cfg("verifier", steps=3000, batch_size=128, pool=16384)
    judge = make_judge(vcfg, task, weak, Zoo(zoo_dir))

    items = eval_items(task, 256, 5)
    rng = np.random.default_rng(5)
    wrong = realistic_errors(items.answers, weak_answers(weak, items), answer_alphabet(task), rng)
    scores = judge.score_many(items, np.stack([items.answers, wrong], axis=1))
    easy = items.difficulty == task.difficulties[0]
    assert (scores[easy, 0] >= 0.5).mean() > 0.8, "true answers on the easiest level are rejected"
    assert (scores[easy, 1] < 0.5).mean() > 0.8, "realistic errors on the easiest level are accepted"
    levels = recognition(judge, task, 256, 5)
    first, last = levels[f"acc_d{task.difficulties[0]}"], levels[f"acc_d{task.difficulties[-1]}"]
    assert first - last >= 0.15, f"no blind spot: recognition {first:.2f} easiest, {last:.2f} hardest"
