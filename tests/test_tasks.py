"""Tasks: deterministic generation, disjoint splits, correct answers, a real difficulty knob,
paraphrases, the exact checker, bad constructor arguments and user-defined tasks.

Correctness is judged by an independent reading of the rendered prompt (Python int
arithmetic), never by the task's own encoder.
"""

import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from sandbag.tasks import TASKS, Items, import_module, make_task
from sandbag.tasks.base import PAD, SPLITS

BUILTIN = sorted(TASKS)  # the shipped tasks and the tests' own addition (before any test registers more)


def _addition(prompt: str):
    """'00+37+00+91=' -> (sum, operands as a multiset, how many are non-zero)."""
    ops = [int(x) for x in prompt.rstrip("=").split("+")]
    return sum(ops), tuple(sorted(ops)), sum(x != 0 for x in ops)


def _signed_sum(prompt: str):
    """'+00-37+00+91=' -> (signed sum, operands as a multiset, how many are non-zero)."""
    ops = [int(x) for x in re.findall(r"[+-]\d+", prompt.rstrip("="))]
    return sum(ops), tuple(sorted(ops)), sum(x != 0 for x in ops)


def _multiplication(prompt: str):
    """'038*614=' -> (product, factors as a multiset, level: 1 if a factor is one, else digits
    of both factors - 1)."""
    a, b = (int(x) for x in prompt.rstrip("=").split("*"))
    return a * b, tuple(sorted((a, b))), 1 if 1 in (a, b) else len(str(a)) + len(str(b)) - 1


REFERENCE = {
    "addition": _addition,
    "multiplication": _multiplication,
    "signed_sum": _signed_sum,
}
INVALID_ARGS = {
    "addition": [{"slots": 0}, {"digits": 0}, {"slots": 40, "digits": 2}],
    "multiplication": [{"width": 0}, {"width": 10}, {"levels": 0}, {"levels": 4, "width": 2}],
    "signed_sum": [{"slots": 0}, {"digits": 0}, {"slots": 21, "digits": 2}, {"slots": 1, "digits": 18}],
}


def reference(name: str):
    if name not in REFERENCE:
        pytest.fail(f"task {name!r} has no reference evaluator in tests/test_tasks.py; add one")
    return REFERENCE[name]


def read(task, items: Items, i: int):
    """(prompt string, answer string) of item i."""
    return task.render(items.prompts[i]), task.render(items.answers[i])


def mixed(task, seed: int, n: int, split: str = "train") -> Items:
    rng = np.random.default_rng(seed)
    return task.generate(rng, n, rng.choice(task.difficulties, size=n), split)


@pytest.mark.parametrize("name", BUILTIN)
def test_generation_is_deterministic_for_a_seed(name):
    task = make_task(name)
    a, b, c = (mixed(task, s, 64) for s in (7, 7, 8))
    np.testing.assert_array_equal(a.prompts, b.prompts)
    np.testing.assert_array_equal(a.answers, b.answers)
    np.testing.assert_array_equal(a.difficulty, b.difficulty)
    assert not np.array_equal(a.prompts, c.prompts), "another seed should give other items"


@pytest.mark.parametrize("name", BUILTIN)
def test_splits_are_disjoint_up_to_paraphrase(name):
    """No problem (nor any paraphrase of it) is in two splits (train / demo / eval / gold)."""
    task = make_task(name)
    ref = reference(name)
    ids = {}
    for split in SPLITS:
        items = mixed(task, 0, 3000, split)
        ids[split] = {ref(task.render(p))[1] for p in items.prompts}
    for a, b in combinations(SPLITS, 2):
        assert not ids[a] & ids[b], f"{a} and {b} share problems"


@pytest.mark.parametrize("name", BUILTIN)
def test_answers_are_correct(name):
    task = make_task(name)
    ref = reference(name)
    items = mixed(task, 1, 500)
    for i in range(len(items.prompts)):
        prompt, answer = read(task, items, i)
        assert len(answer) == task.answer_len
        assert int(answer) == ref(prompt)[0], f"{prompt}{answer} is wrong"


@pytest.mark.parametrize("name", BUILTIN)
def test_every_level_has_the_layout_and_the_difficulty_it_claims(name):
    task = make_task(name)
    ref = reference(name)
    assert list(task.difficulties) == sorted(task.difficulties)
    for d in task.difficulties:
        items = task.generate(np.random.default_rng(d), 32, d, "eval")
        assert items.prompts.shape == (32, task.prompt_len)
        assert items.answers.shape == (32, task.answer_len)
        assert np.all(items.difficulty == d)
        tokens = items.tokens()
        assert tokens.shape == (32, task.seq_len) and tokens.dtype == np.int32
        assert np.all(tokens[:, 0] == PAD) and np.all((tokens >= 0) & (tokens < task.vocab_size))
        measured = {ref(task.render(p))[2] for p in items.prompts}
        assert measured == {d}, f"items generated at difficulty {d} read as {measured}"


@pytest.mark.parametrize("name", BUILTIN)
def test_paraphrase_keeps_the_answer_and_changes_the_prompt(name):
    task = make_task(name)
    ref = reference(name)
    d = max(task.difficulties)
    problems = task.sample(np.random.default_rng(3), 200, np.full(200, d))
    para = task.paraphrase(np.random.default_rng(4), problems)
    p0, a0 = task.encode(problems)
    p1, a1 = task.encode(para)
    np.testing.assert_array_equal(a0, a1)
    np.testing.assert_array_equal(task.canonical(problems), task.canonical(para))
    changed = np.any(p0 != p1, axis=1).mean()
    assert changed > 0.5, f"only {changed:.0%} of paraphrases differ from the original prompt"
    items = task.paraphrases(np.random.default_rng(4), problems, d)
    for i in range(20):
        prompt, answer = read(task, items, i)
        assert int(answer) == ref(prompt)[0]


@pytest.mark.parametrize("name", BUILTIN)
def test_check_is_exact_match(name):
    task = make_task(name)
    answers = mixed(task, 2, 8).answers
    assert task.check(answers, answers).tolist() == [True] * 8
    wrong = answers.copy()
    wrong[3, -1] = answers[3, -1] + 1 if answers[3, -1] + 1 < task.vocab_size else answers[3, -1] - 1
    wrong[5, 0] = answers[5, 0] + 1 if answers[5, 0] + 1 < task.vocab_size else answers[5, 0] - 1
    got = task.check(wrong, answers)
    assert got.shape == (8,)
    assert got.tolist() == [True, True, True, False, True, False, True, True]


@pytest.mark.parametrize("name, kwargs", [(n, kw) for n in BUILTIN for kw in INVALID_ARGS.get(n, [])])
def test_invalid_constructor_arguments_raise_value_error(name, kwargs):
    with pytest.raises(ValueError, match=name):
        make_task(name, **kwargs)


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(KeyError) as err:
        make_task("nope")
    assert "nope" in str(err.value)
    for name in BUILTIN:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("addition", {"digits": 1}),
        ("addition", {"slots": 1, "digits": 20}),
        ("signed_sum", {"digits": 1, "slots": 1}),
        ("multiplication", {"levels": 1, "width": 1}),
        ("multiplication", {"levels": 17, "width": 9}),
    ],
)
def test_an_accepted_configuration_can_draw_every_split_at_every_level(name, kwargs):
    """A size the constructor accepts must generate (or be refused up front with ValueError).

    Small problem spaces (e.g. one-digit operands) can leave a split empty at a level; huge
    ones overflow int64. Either should be refused when the task is made, not crash later.
    """
    try:
        task = make_task(name, **kwargs)
    except ValueError:
        return
    for split in SPLITS:
        for d in task.difficulties:
            try:
                task.generate(np.random.default_rng(0), 4, d, split)
            except Exception as e:  # noqa: BLE001
                pytest.fail(
                    f"make_task({name!r}, **{kwargs}) was accepted but generating {split} items at "
                    f"difficulty {d} fails: {type(e).__name__}: {str(e)[:200]}"
                )


def test_an_external_task_module_registers_its_task(copy3_module):
    assert "copy3" not in TASKS
    import_module(str(copy3_module))
    task = make_task("copy3")
    assert task.name == "copy3" and task.seq_len == 14
    for d in task.difficulties:
        for split in SPLITS:
            items = task.generate(np.random.default_rng(0), 16, d, split)
            assert items.prompts.shape == (16, 7) and items.answers.shape == (16, 6)
            for i in range(16):
                prompt, answer = read(task, items, i)
                assert prompt == answer + "="
                assert sum(answer[j : j + 2] != "00" for j in (0, 2, 4)) == d


def test_a_missing_task_module_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.py"):
        import_module(str(tmp_path / "nothere.py"))


def test_the_readme_task_example_works(tmp_path, copy3_module):
    """The copy3 example in the README is what users copy: it must generate every split."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python")[1:]]
    example = [b for b in blocks if '@register_task("copy3")' in b]
    assert len(example) == 1, "the README should show one copy3 task module"
    path = tmp_path / "readme" / "copy3.py"  # the stem the copy3_module fixture unregisters
    path.parent.mkdir()
    path.write_text(example[0])
    import_module(str(path))
    task = make_task("copy3")
    for split in SPLITS:
        for d in task.difficulties:
            try:
                task.generate(np.random.default_rng(0), 8, d, split)
            except RuntimeError as e:
                pytest.fail(
                    f"the README's copy3 cannot draw {split} items at difficulty {d} ({e}): level 1 has "
                    "only 9 distinct problems and none of them hashes into the eval split"
                )
