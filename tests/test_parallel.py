"""Data parallelism: on two devices the trainer splits every batch over both and ends with the
weights one device would reach; ``distributed=true`` joins a multi-host run before any compute.

The device count is fixed when JAX starts, so each training run happens in a fresh process
with its own ``XLA_FLAGS``."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import comparable_leaves
from hydra import compose, initialize_config_dir

from sandbag import pipelines
from sandbag.config import ConfigError, check_argv
from sandbag.run import CONF_DIR, execute

# Trains the configuration of tests/test_train.py (populations of one and two members, and a
# batch two devices cannot split) and prints, as JSON, what reached the jitted step and what
# came out of it.
SCRIPT = r"""
import json

import addition_task  # noqa: F401  (the tests' own task; tests/ is on PYTHONPATH)
import jax
import numpy as np

from sandbag import train as train_mod
from sandbag.data import ladder_sampler
from sandbag.models import ModelConfig
from sandbag.tasks import make_task

task = make_task("addition", slots=3, digits=2)
cfg = ModelConfig(
    name="t", n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab_size, max_len=task.seq_len
)

def placement(x):
    s = getattr(x, "sharding", None)  # None: a host array, placed by jit as before
    if s is None:
        return None
    return {
        "spec": list(getattr(s, "spec", [])),
        "devices": len(s.device_set),
        "replicated": s.is_fully_replicated,
        "shards": [list(sh.data.shape) for sh in x.addressable_shards],
    }

seen = []
real_chunk = train_mod.train_chunk

def spy(graphdef, params, opt_state, tokens, weights, *rest):
    seen.append({"tokens": placement(tokens), "weights": placement(weights),
                 "params": placement(jax.tree.leaves(params)[0])})
    return real_chunk(graphdef, params, opt_state, tokens, weights, *rest)

train_mod.train_chunk = spy
lowered = []
LOWERING = "/jax/core/compile/jaxpr_to_mlir_module_duration"
jax.monitoring.register_event_duration_secs_listener(
    lambda event, *_, **__: lowered.append(event) if event == LOWERING else None
)
runs = {}
for name, seeds, batch, steps in [("one", [0], 8, 6), ("two", [0, 1], 8, 6), ("odd", [0], 7, 3)]:
    seen.clear()
    tcfg = train_mod.TrainConfig(steps=steps, batch_size=batch, steps_per_call=3, warmup=2)
    graphdef, params = train_mod.init_population(cfg, seeds)
    params, losses = train_mod.train(graphdef, params, tcfg, ladder_sampler(task, seeds, batch, 3))
    # Evaluation of the trained params, then of the same params as the zoo loads them: the
    # programs lowered for it (lowering precedes the persistent compile cache, so it counts
    # the programs a run needs whether or not an earlier run compiled them)
    tokens = np.zeros((4, task.seq_len), np.int32)
    lowered.clear()
    for p in (params, jax.tree.map(np.asarray, params)):
        train_mod._exact_match(graphdef, p, tokens, task.answer_len)
    runs[name] = {
        "chunks": list(seen),
        "out": placement(jax.tree.leaves(params)[0]),
        "eval_programs": len(lowered),
        "losses": losses.tolist(),
        "params": {jax.tree_util.keystr(p): np.asarray(x).tolist()
                   for p, x in jax.tree_util.tree_leaves_with_path(params)},
    }
print(json.dumps({"device_count": jax.device_count(), "runs": runs}))
"""


def start(devices: int) -> subprocess.Popen:
    """SCRIPT in a fresh process that sees ``devices`` CPU devices."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def result(proc: subprocess.Popen) -> tuple[dict, str]:
    """SCRIPT's JSON and its log."""
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.splitlines()[-1]), err


def test_two_devices_split_the_batch_and_train_as_one_device():
    procs = start(2), start(1)  # side by side: each is mostly single-threaded compilation
    (two, two_log), (one, _) = map(result, procs)
    assert two["device_count"] == 2 and one["device_count"] == 1

    for run, n_chunks in (("one", 2), ("two", 2), ("odd", 1)):  # 6 or 3 steps, 3 per call
        assert len(two["runs"][run]["chunks"]) == len(one["runs"][run]["chunks"]) == n_chunks
    for name in ("one", "two"):
        members = len(two["runs"][name]["losses"])
        for chunk in two["runs"][name]["chunks"]:
            for batch in (chunk["tokens"], chunk["weights"]):
                # [members, steps, batch, L]: the batch axis is split, each device holds half
                assert batch["spec"] == [None, None, "data", None] and batch["devices"] == 2, batch
                assert [s[:3] for s in batch["shards"]] == [[members, 3, 4]] * 2, batch
            assert chunk["params"]["replicated"] and chunk["params"]["devices"] == 2
        # the trained params come back on one device: evaluating replicated ones runs on both
        assert two["runs"][name]["out"]["devices"] == 1, two["runs"][name]["out"]
    for run in (two["runs"]["one"], two["runs"]["two"], one["runs"]["one"], one["runs"]["two"]):
        # and as the zoo loads a model: one evaluation program serves both, not one each
        # ("odd" evaluates as "one" did: nothing new to lower)
        assert run["eval_programs"] == 1, run["eval_programs"]
    assert two["runs"]["odd"]["eval_programs"] == one["runs"]["odd"]["eval_programs"] == 0
    for chunk in two["runs"]["odd"]["chunks"]:  # 7 rows: replicated on both devices, with a warning
        assert chunk["tokens"]["replicated"] and chunk["tokens"]["devices"] == 2
    assert "batch 7 is not divisible by 2 devices" in two_log
    # One device: nothing is placed by hand, the step gets host arrays exactly as before.
    assert all(c["tokens"] is None for run in one["runs"].values() for c in run["chunks"])

    for name in ("one", "two", "odd"):
        a, b = two["runs"][name], one["runs"][name]
        np.testing.assert_allclose(a["losses"], b["losses"], rtol=1e-4, atol=1e-4)
        got = comparable_leaves({k: np.asarray(v) for k, v in a["params"].items()})
        want = comparable_leaves({k: np.asarray(v) for k, v in b["params"].items()})
        assert got.keys() == want.keys()
        for leaf in got:
            np.testing.assert_allclose(got[leaf], want[leaf], rtol=1e-4, atol=1e-4, err_msg=f"{name} {leaf}")


def test_distributed_true_initializes_jax_before_the_experiment(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda: calls.append("initialize"))
    monkeypatch.setitem(
        pipelines.EXPERIMENTS, "capability_ladder", lambda *args: calls.append("experiment") or {}
    )
    overrides = ["+experiment=capability_ladder", "logger=none"]
    check_argv([*overrides, "distributed=true"], CONF_DIR)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        default = compose("config", overrides=overrides)
        switched = compose("config", overrides=[*overrides, "distributed=true"])
    assert default.distributed is False
    execute(default, tmp_path)
    assert calls == ["experiment"]
    execute(switched, tmp_path)
    assert calls == ["experiment", "initialize", "experiment"]


def test_only_process_0_starts_a_wandb_run_and_writes_the_jobs_outputs(tmp_path, monkeypatch):
    """Under ``distributed=true`` every process runs the job: W&B would get one run per process
    and the job's directory every process's results.json, were the others not routed away."""
    import sandbag.run as run_mod
    import sandbag.tracking as tracking_mod

    wandb_runs, out_dirs = [], []
    monkeypatch.setattr(
        tracking_mod, "WandbTracker", lambda *a, **k: wandb_runs.append(a) or tracking_mod.NoTracker()
    )
    monkeypatch.setitem(
        pipelines.EXPERIMENTS, "capability_ladder", lambda cfg, task, zoo, out: out_dirs.append(out) or {}
    )
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config", overrides=["+experiment=capability_ladder", "logger=wandb", "logger.mode=offline"]
        )
    job = tmp_path / "job"
    job.mkdir()

    monkeypatch.setattr(run_mod, "primary_process", lambda: False)
    execute(cfg, job)
    assert wandb_runs == [] and out_dirs[-1] != job and not out_dirs[-1].exists()
    assert list(job.iterdir()) == []

    monkeypatch.setattr(run_mod, "primary_process", lambda: True)
    execute(cfg, job)
    assert len(wandb_runs) == 1 and out_dirs[-1] == job
    assert (job / "results.json").exists()


# What ``cpu_devices`` gives JAX, in a fresh process without a device count in XLA_FLAGS.
DEVICES = r"""
import json, sys
from sandbag.run import use_cpu_devices
used = use_cpu_devices(json.loads(sys.argv[1]), int(sys.argv[2]))
import jax
print(json.dumps([used, jax.device_count()]))
"""


def devices_for(setting, batch: int, xla_flags: str = "") -> list:
    env = {**os.environ, "XLA_FLAGS": xla_flags, "JAX_PLATFORMS": "cpu"}
    args = [sys.executable, "-c", DEVICES, json.dumps(setting), str(batch)]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


def test_cpu_devices_sets_the_cpu_backends_device_count_unless_xla_flags_does():
    assert devices_for(3, 128) == [3, 3]
    assert devices_for(1, 128) == [1, 1]
    assert devices_for("auto", 7) == [1, 1], "auto: only device counts that divide the batch"
    cores = len(os.sched_getaffinity(0))
    want = max(d for d in range(1, min(cores, 4) + 1) if 128 % d == 0)
    assert devices_for("auto", 128) == [want, want]
    assert devices_for(3, 128, "--xla_force_host_platform_device_count=2") == [None, 2]


def test_a_bad_cpu_devices_stops_before_any_compute():
    for bad in ("0", "two", "1.5"):
        with pytest.raises(ConfigError, match="cpu_devices"):
            check_argv(["+experiment=capability_ladder", f"cpu_devices={bad}"], CONF_DIR)
