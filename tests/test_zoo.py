"""The zoo: content-addressed, exact round trips, corrupt entries retrained, progress
checkpoints, per-entry locks; and, end to end, a killed run resumes to the same results and
a second run reuses what the first trained."""

import json
import pickle
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from conftest import (
    SMALL_RUNGS,
    SMOKE,
    final_digests,
    finish,
    log_of,
    metrics_without_time,
    results_of,
    run_cli,
    start_cli,
)
from flax import nnx

from sandbag.models import ModelConfig, Transformer
from sandbag.zoo import Zoo

SPEC = {"kind": "ladder", "task": {"name": "addition", "slots": 3}, "seeds": [0, 1]}


def a_tree():
    """A population-shaped tree like the trainer's: nnx params with a leading member axis."""
    cfg = ModelConfig(name="t", n_layers=1, d_model=16, n_heads=2, vocab_size=17, max_len=12)
    states = [nnx.split(Transformer(cfg, nnx.Rngs(params=s)))[1] for s in (0, 1)]
    params = jax.tree.map(lambda *xs: np.stack(xs), *states)
    return {"params": params, "step": np.asarray(7, np.int32), "ids": np.arange(5, dtype=np.int32)}


def zeros_like(tree):
    return jax.tree.map(lambda x: np.zeros_like(np.asarray(x)), tree)


def assert_same_tree(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_then_load_returns_the_same_tree_and_metadata(tmp_path):
    entry = Zoo(tmp_path).entry(SPEC)
    tree = a_tree()
    assert not entry.complete and entry.load(zeros_like(tree)) is None
    entry.save(tree, {"final_loss": 0.25, "steps": 40})
    assert entry.complete
    loaded, meta = Zoo(tmp_path).entry(SPEC).load(zeros_like(tree))  # a fresh handle, as a new run has
    assert_same_tree(loaded, tree)
    assert meta["final_loss"] == 0.25 and meta["steps"] == 40


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_64_bit_leaves_round_trip(tmp_path, dtype):
    """Host arrays such as token ids or eval indices are int64 by numpy default; they must
    load back, not be declared corrupt (and retrained) on every run."""
    entry = Zoo(tmp_path).entry(SPEC)
    tree = {"ids": np.arange(6, dtype=dtype).reshape(2, 3)}
    entry.save(tree)
    got = entry.load(zeros_like(tree))
    assert got is not None, (
        f"a {np.dtype(dtype).name} leaf is reported corrupt: zoo._load_tree converts leaves with "
        "jax.numpy.asarray (32-bit without jax_enable_x64), so the digest never matches"
    )
    assert_same_tree(got[0], tree)


def test_the_key_is_a_function_of_the_spec(tmp_path):
    zoo = Zoo(tmp_path)
    same = {"seeds": [0, 1], "task": {"slots": 3, "name": "addition"}, "kind": "ladder"}  # other key order
    assert zoo.entry(SPEC).key == zoo.entry(same).key
    assert zoo.entry(SPEC).dir == zoo.entry(same).dir
    for changed in (
        {**SPEC, "seeds": [0, 2]},
        {**SPEC, "task": {"name": "addition", "slots": 4}},
        {**SPEC, "kind": "organism"},
        {**SPEC, "parent": "abc"},
    ):
        assert zoo.entry(changed).key != zoo.entry(SPEC).key, changed


def test_a_spec_cannot_hide_the_zoos_own_format(tmp_path):
    """A spec's own ``format`` would replace the zoo's ``FORMAT`` in the key, and a bump of it
    would then retrain nothing of that kind."""
    with pytest.raises(ValueError, match="may not set 'format'"):
        Zoo(tmp_path).entry({**SPEC, "format": 3})


def _data_files(entry):
    files = [p for p in (entry.dir / "final").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, "expected Orbax data files under final/"
    return files


def _truncate(entry):
    for p in _data_files(entry):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _garbage(entry):
    rng = np.random.default_rng(0)
    for p in _data_files(entry):
        p.write_bytes(rng.integers(0, 256, p.stat().st_size, dtype=np.uint8).tobytes())


def _wrong_digest(entry):
    meta = json.loads((entry.dir / "final.json").read_text())
    meta["digest"] = "0" * len(meta["digest"])
    (entry.dir / "final.json").write_text(json.dumps(meta))


def _missing_arrays(entry):
    import shutil

    shutil.rmtree(entry.dir / "final")


def _garbage_json(entry):
    (entry.dir / "final.json").write_text("{not json")


@pytest.mark.parametrize("corrupt", [_truncate, _garbage, _wrong_digest, _missing_arrays, _garbage_json])
def test_a_corrupt_entry_is_treated_as_absent_and_can_be_retrained(tmp_path, corrupt):
    entry = Zoo(tmp_path).entry(SPEC)
    tree = a_tree()
    entry.save(tree, {"steps": 1})
    corrupt(entry)
    assert entry.load(zeros_like(tree)) is None
    assert not entry.complete, "a corrupt entry must stop looking complete"
    entry.save(tree, {"steps": 2})  # the retrain path
    loaded, meta = entry.load(zeros_like(tree))
    assert_same_tree(loaded, tree)
    assert meta["steps"] == 2


def _progress_state(step: int):
    tree = a_tree()
    return {
        "params": tree["params"],
        "opt_state": {"mu": tree["ids"]},
        "losses": np.full((2, step), 0.5, np.float32),
    }


def test_progress_checkpoints_resume_from_the_newest_readable_one(tmp_path):
    entry = Zoo(tmp_path).entry(SPEC)
    like = {k: v for k, v in zeros_like(_progress_state(0)).items() if k != "losses"}
    assert entry.progress.load(like) is None
    entry.progress.save(20, _progress_state(20))
    entry.progress.save(40, _progress_state(40))
    names = sorted(p.name for p in entry.progress.root.iterdir())
    assert names == ["step_00000040", "step_00000040.json"], "older checkpoints should be removed"
    step, state = entry.progress.load(like)
    assert step == 40
    assert_same_tree(state, _progress_state(40))
    # A newer checkpoint that cannot be read (a kill mid-write) is skipped, not fatal.
    (entry.progress.root / "step_00000060.json").write_text('{"step": 60, "digest": "x"}')
    step, _ = entry.progress.load(like)
    assert step == 40


def test_a_finished_entry_drops_its_progress_checkpoints(tmp_path):
    entry = Zoo(tmp_path).entry(SPEC)
    entry.progress.save(20, _progress_state(20))
    entry.save(a_tree())
    assert not entry.progress.root.exists()


def test_the_entry_lock_is_exclusive(tmp_path):
    """Two runs sharing a zoo never train the same entry at once."""
    zoo = Zoo(tmp_path)
    inside, events = threading.Event(), []

    def other_run():
        inside.wait()
        with zoo.entry(SPEC).lock():
            events.append("other acquired")

    t = threading.Thread(target=other_run)
    t.start()
    with zoo.entry(SPEC).lock():
        inside.set()
        time.sleep(0.5)
        events.append("first released")
    t.join(timeout=10)
    assert events == ["first released", "other acquired"]


RESUME = [*SMOKE, *SMALL_RUNGS, "train.steps=200", "train.steps_per_call=10", "train.save_every=20"]


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_with_the_same_results(tmp_path):
    zoo = tmp_path / "zoo"
    clean = start_cli(RESUME, tmp_path / "c", tmp_path / "zoo2")  # the uninterrupted reference, meanwhile
    try:
        killed = start_cli(RESUME, tmp_path / "a", zoo)
        try:
            deadline = time.monotonic() + 240
            while not list(zoo.glob("*/progress/step_*.json")):
                assert killed.poll() is None, (
                    f"the run ended before its first checkpoint:\n{killed.stderr.read()}"
                )
                assert time.monotonic() < deadline, "no progress checkpoint appeared"
                time.sleep(0.05)
            killed.send_signal(signal.SIGKILL)
        finally:
            killed.kill()
            killed.communicate()
        assert not (tmp_path / "a" / "results.json").exists()

        resumed = run_cli(RESUME, tmp_path / "b", zoo)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "resuming from checkpoint" in log_of(resumed, tmp_path / "b")
    except BaseException:
        clean.kill()
        clean.communicate()
        raise
    clean = finish(clean)
    assert clean.returncode == 0, clean.stderr[-3000:]
    assert "resuming" not in log_of(clean, tmp_path / "c")
    assert metrics_without_time(tmp_path / "b") == metrics_without_time(tmp_path / "c")
    # Stronger than the metrics (which are near zero at smoke scale): bit-identical weights.
    assert final_digests(zoo) == final_digests(tmp_path / "zoo2")


@pytest.mark.slow
def test_a_second_run_reuses_the_zoo(smoke_run, tmp_path):
    first, first_dir, zoo = smoke_run
    assert first.returncode == 0, first.stderr[-3000:]
    assert "reused from zoo" not in log_of(first, first_dir)
    again = run_cli(SMOKE, tmp_path / "again", zoo)
    assert again.returncode == 0, again.stderr[-3000:]
    log = log_of(again, tmp_path / "again")
    assert re.search(r"weak rung tiny\b.*: reused from zoo", log), log[-3000:]
    assert re.search(r"strong rung medium\b.*: reused from zoo", log), log[-3000:]
    assert ": training" not in log
    counts = [results_of(d)["metrics"] for d in (first_dir, tmp_path / "again")]
    assert [(m["zoo/trained"], m["zoo/reused"]) for m in counts] == [(2, 0), (0, 2)]
    assert metrics_without_time(tmp_path / "again") == metrics_without_time(first_dir)
    assert results_of(tmp_path / "again")["config"] == results_of(first_dir)["config"]


# ------------------------------------------------------------------ two processes, one zoo

# One process of a concurrent run: import the zoo, say it is ready, wait for the go signal,
# then fetch_or_train. Its train_fn is slow, appends a line to a marker file each time it
# really trains, and returns a tree with random (unseeded) weights, so two trainings could
# never produce the same tree by accident.
FETCHER = """
import json, os, pickle, sys, time
from pathlib import Path

import numpy as np

from sandbag.zoo import Zoo

zoo_dir, spec, marker, ready, go, out = sys.argv[1], json.loads(sys.argv[2]), *map(Path, sys.argv[3:])
like = {
    "w": np.zeros((2, 3, 4), np.float32),
    "nested": {"ids": np.zeros(5, np.int64), "step": np.zeros((), np.int32)},
}


def train_fn(progress):
    start = time.time()
    time.sleep(1.0)
    tree = {
        "w": np.random.default_rng().standard_normal((2, 3, 4)).astype(np.float32),
        "nested": {"ids": np.arange(5, dtype=np.int64), "step": np.asarray(7, np.int32)},
    }
    line = json.dumps({"pid": os.getpid(), "spec": spec, "start": start, "end": time.time()})
    with open(marker, "a") as f:
        f.write(line + "\\n")
    return tree, {"trained_by": os.getpid()}


zoo = Zoo(zoo_dir)
ready.touch()
deadline = time.monotonic() + 120
while not go.exists():
    assert time.monotonic() < deadline, "no go signal"
    time.sleep(0.005)
tree, key = zoo.fetch_or_train(spec, like, train_fn, "test model")
out.write_bytes(pickle.dumps({"tree": tree, "key": key, "trained": zoo.trained, "reused": zoo.reused}))
"""


def _fetch_concurrently(tmp_path, zoo, specs: list[dict]) -> tuple[list[dict], list[dict]]:
    """Run one fetcher process per spec, released at the same moment; (their results, marker lines)."""
    script, marker, go = tmp_path / "fetcher.py", tmp_path / "trainings.jsonl", tmp_path / "go"
    script.write_text(FETCHER)
    procs = []
    for i, spec in enumerate(specs):
        args = [str(zoo), json.dumps(spec), str(marker), str(tmp_path / f"ready{i}"), str(go)]
        cmd = [sys.executable, str(script), *args, str(tmp_path / f"out{i}.pkl")]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(len(specs))):
            for p in procs:
                assert p.poll() is None, f"a fetcher died before it was ready:\n{p.communicate()[1]}"
            assert time.monotonic() < deadline, "the fetchers never got ready"
            time.sleep(0.01)
        go.touch()  # both are past their imports: release them together
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    results = [pickle.loads((tmp_path / f"out{i}.pkl").read_bytes()) for i in range(len(specs))]
    lines = [json.loads(line) for line in marker.read_text().splitlines()] if marker.exists() else []
    return results, lines


def test_two_processes_fetching_one_spec_train_it_once(tmp_path):
    zoo = tmp_path / "zoo"
    (a, b), trainings = _fetch_concurrently(tmp_path, zoo, [SPEC, SPEC])
    assert len(trainings) == 1, f"the model was trained {len(trainings)} times: {trainings}"
    assert sorted([len(a["trained"]), len(b["trained"])]) == [0, 1]
    assert sorted([len(a["reused"]), len(b["reused"])]) == [0, 1]
    assert a["key"] == b["key"]
    assert_same_tree(a["tree"], b["tree"])  # the waiter got the trainer's weights, not its own
    entry = Zoo(zoo).entry(SPEC)
    assert entry.complete and entry.key == a["key"]
    loaded, meta = entry.load(zeros_like(a["tree"]))
    assert_same_tree(loaded, a["tree"])
    assert meta["trained_by"] == trainings[0]["pid"]
    assert not entry.progress.root.exists()
    assert not list(entry.dir.glob("*.tmp*")), "temporary files left behind"


def test_two_processes_with_different_specs_both_train_at_once(tmp_path):
    """The lock is per entry: a run training one model never waits for another model."""
    zoo = tmp_path / "zoo"
    other = {**SPEC, "seeds": [2, 3]}
    (a, b), trainings = _fetch_concurrently(tmp_path, zoo, [SPEC, other])
    assert len(trainings) == 2 and [len(a["trained"]), len(b["trained"])] == [1, 1]
    assert sorted(json.dumps(t["spec"], sort_keys=True) for t in trainings) == sorted(
        json.dumps(s, sort_keys=True) for s in (SPEC, other)
    )
    first, second = sorted(trainings, key=lambda t: t["start"])
    assert second["start"] < first["end"], f"the trainings were serialised: {trainings}"
    assert a["key"] != b["key"]
    for got, spec in ((a, SPEC), (b, other)):
        loaded, _ = Zoo(zoo).entry(spec).load(zeros_like(got["tree"]))
        assert_same_tree(loaded, got["tree"])
