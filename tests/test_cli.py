"""The command line: a smoke run writes the public results schema and a plot; bad input is
one clear ``error:`` line and exit code 2 before any compute; other and external tasks run."""

import numpy as np
import pytest
from conftest import SMALL_RUNGS, SMOKE, log_of, results_of, run_cli
from hydra import compose, initialize_config_dir

from sandbag.config import ConfigError, check_argv, validate
from sandbag.run import CONF_DIR
from sandbag.tasks import TASKS, make_task
from sandbag.tasks.base import SPLITS

EXP = "+experiment=capability_ladder"
BUILTIN = sorted(n for n, cls in TASKS.items() if cls.__module__.startswith("sandbag."))  # shipped tasks


@pytest.mark.slow
def test_a_smoke_run_writes_results_and_a_plot(smoke_run):
    proc, run_dir, _ = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_of(run_dir)
    assert results["schema_version"] == 1
    assert results["config"]["experiment"] == "capability_ladder"
    assert results["config"]["task"]["name"] == "signed_sum"  # the default task
    assert results["config"]["logger"]["name"] == "none"
    metrics = results["metrics"]
    levels = make_task(
        "signed_sum", **{k: v for k, v in results["config"]["task"].items() if k != "name"}
    ).difficulties
    for role in ("weak", "strong"):
        for name in [f"{role}/acc", *(f"{role}/acc_d{k}" for k in levels)]:
            assert 0.0 <= metrics[name] <= 1.0, name
        assert isinstance(metrics[f"{role}/params"], int) and metrics[f"{role}/params"] > 0
    assert metrics["weak/params"] < metrics["strong/params"]
    assert metrics["gap"] == pytest.approx(metrics["strong/acc"] - metrics["weak/acc"])
    for name in ("gap_max", "wall_time_s"):
        assert name in metrics
    assert 0 < metrics["time/ladder_s"] + metrics["time/reports_s"] <= metrics["wall_time_s"]
    png = run_dir / "accuracy_by_difficulty.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy by difficulty" in proc.stdout, "the summary table should be printed"


# (argv, substrings the message must contain: the bad value and what would be valid)
BAD_INPUT = {
    "unknown task": ([EXP, "task=nope"], ["nope", "multiplication", "signed_sum"]),
    "unknown rung": ([EXP, "model@weak=nope"], ["nope", "nano", "tiny", "medium", "large"]),
    "zero steps": ([EXP, "train.steps=0"], ["train.steps", "0", "positive"]),
    "negative width": ([EXP, "weak.d_model=-1"], ["weak.d_model", "-1", "positive"]),
    "heads do not divide width": ([EXP, "strong.n_heads=5"], ["strong.n_heads=5", "d_model=96"]),
    "task longer than the context": ([EXP, "task.slots=20"], ["67", "max_len=64"]),
    "bad task size": ([EXP, "task.slots=0"], ["slots", "0"]),
    "zero learning rate": ([EXP, "train.lr=0"], ["train.lr", "0"]),
    "infinite learning rate": ([EXP, "train.lr=inf"], ["train.lr", "inf"]),
    "unknown task field": ([EXP, "task.width=40"], ["width"]),
    "missing experiment": ([], ["+experiment", "capability_ladder"]),
    "unknown experiment": (["+experiment=nope"], ["nope", "capability_ladder"]),
    "bad value in a sweep": ([EXP, "train.steps=10,0", "--multirun"], ["train.steps", "0"]),
    "non-integer seed": ([EXP, "seed=abc"], ["seed", "abc"]),
    "more ladder seeds than its block": ([EXP, "ladder_seeds=101"], ["ladder_seeds=101", "at most 100"]),
    "fewer gold items than a detector reads": (
        ["+experiment=detector_bakeoff", "bakeoff.gold=50"],
        ["noise_injection", "200", "bakeoff.gold=50"],
    ),
    "no bake-off trigger": (
        ["+experiment=detector_bakeoff", "bakeoff.triggers=[]"],
        ["bakeoff.triggers", "flag"],
    ),
    "a detector's bad setting": (
        ["+experiment=detector_bakeoff", "detectors.noise_injection.gold=abc"],
        ["detectors.noise_injection", "abc"],
    ),
}


@pytest.mark.parametrize("argv, expected", BAD_INPUT.values(), ids=BAD_INPUT.keys())
def test_bad_input_is_one_clear_error(argv, expected):
    with pytest.raises(ConfigError) as err:
        check_argv(argv, CONF_DIR)
    message = str(err.value)
    for text in expected:
        assert text in message, f"{text!r} missing from the error message: {message!r}"


@pytest.mark.parametrize(
    "overrides",
    [["task.digits=1"], ["task.slots=1", "task.digits=20"]],
    ids=["one-digit operands", "operands too large for int64"],
)
def test_a_task_size_that_passes_validation_can_be_generated(overrides):
    """Whatever ``check_argv`` accepts must not crash later with a traceback: either it is
    refused up front (ConfigError, exit 2) or every split can be drawn at every level."""
    try:
        check_argv([EXP, *overrides], CONF_DIR)
    except ConfigError:
        return
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        task = validate(compose("config", overrides=[EXP, *overrides]))
    for split in SPLITS:
        for d in task.difficulties:
            try:
                task.generate(np.random.default_rng(0), 4, d, split)
            except Exception as e:  # noqa: BLE001
                pytest.fail(
                    f"{' '.join(overrides)} passes validation but the run would crash drawing {split} "
                    f"items at difficulty {d}: {type(e).__name__}: {str(e)[:160]}"
                )


@pytest.mark.parametrize("name", BUILTIN)
def test_every_registered_task_is_selectable_from_the_command_line(name):
    """The registry is mirrored by the Hydra group: ``task=NAME`` works for every task."""
    try:
        check_argv([EXP, f"task={name}"], CONF_DIR)
    except ConfigError as e:
        pytest.fail(f"task={name} is registered but not selectable (missing conf/task/{name}.yaml?): {e}")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv, bad",
    [
        ([*SMOKE, "task=nope"], "nope"),
        ([*SMOKE, "train.steps=0"], "train.steps"),
        (["scale=smoke"], "+experiment"),
    ],
    ids=["unknown task", "zero steps", "missing experiment"],
)
def test_bad_input_exits_2_without_a_traceback_or_results(tmp_path, argv, bad):
    run_dir = tmp_path / "run"
    proc = run_cli(argv, run_dir, tmp_path / "zoo")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert bad in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "results.json").exists()
    assert not (tmp_path / "zoo").exists(), "nothing should be trained or stored"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["multiplication"])
def test_the_other_builtin_tasks_run_end_to_end(tmp_path, name):
    run_dir = tmp_path / "run"
    proc = run_cli([*SMOKE, *SMALL_RUNGS, f"task={name}"], run_dir, tmp_path / "zoo")
    assert proc.returncode == 0, f"task={name} (documented in the README) fails:\n{proc.stderr[-3000:]}"
    metrics = results_of(run_dir)["metrics"]
    assert results_of(run_dir)["config"]["task"]["name"] == name
    for k in make_task(name).difficulties:
        assert f"weak/acc_d{k}" in metrics and f"strong/acc_d{k}" in metrics


@pytest.mark.slow
def test_an_external_task_runs_end_to_end(tmp_path, copy3_module):
    conf = tmp_path / "user_conf"
    (conf / "task").mkdir(parents=True)
    (conf / "task" / "copy3.yaml").write_text(f"name: copy3\nmodule: {copy3_module}\n")
    run_dir = tmp_path / "run"
    proc = run_cli(
        [*SMOKE, *SMALL_RUNGS, "task=copy3", f"hydra.searchpath=[file://{conf}]"], run_dir, tmp_path / "zoo"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_of(run_dir)
    assert results["config"]["task"] == {"name": "copy3", "module": str(copy3_module)}
    metrics = results["metrics"]
    assert {f"weak/acc_d{k}" for k in (1, 2, 3)} <= metrics.keys()
    assert "weak/acc_d4" not in metrics
    assert "task copy3" in log_of(proc, run_dir)


@pytest.mark.parametrize("path_given", [True, False], ids=["a path keeps programs", "empty turns it off"])
def test_the_compile_cache_keeps_compiled_programs_where_zoo_compile_cache_says(tmp_path, path_given):
    """``zoo.compile_cache`` is where ``python -m sandbag.run`` keeps XLA's compiled programs,
    however quick their compilation; '' keeps none."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "jax"
    code = (
        "import sys; from sandbag.run import use_compile_cache; use_compile_cache(sys.argv[1]);"
        "import jax, jax.numpy as jnp; jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready();"
        "print(jax.config.jax_compilation_cache_dir)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    arg = str(cache) if path_given else ""
    proc = subprocess.run(
        [sys.executable, "-c", code, arg], env=env, check=True, cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.stdout.split()[-1] == (str(cache) if path_given else "None"), "JAX's own cache setting"
    kept = list(cache.iterdir()) if cache.exists() else []
    assert bool(kept) == path_given, kept


def test_a_compile_cache_copied_to_another_directory_is_still_hit(tmp_path):
    """A copy of ``zoo.compile_cache`` (a CI cache, another checkout) serves the same programs:
    a run given the copy finds every program in it and writes no new entry. (JAX's default
    writes the cache's own path into each program's key, so a copy never hit.)"""
    import os
    import shutil
    import subprocess
    import sys

    code = (
        "import sys; from sandbag.run import use_compile_cache; use_compile_cache(sys.argv[1]);"
        "import jax, jax.numpy as jnp; jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready();"
        "print(jax.config.jax_compilation_cache_dir)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    first, copy = tmp_path / "first", tmp_path / "copy"
    subprocess.run([sys.executable, "-c", code, str(first)], env=env, check=True, cwd=tmp_path)
    shutil.copytree(first, copy)
    before = sorted(p.name for p in copy.iterdir())
    subprocess.run([sys.executable, "-c", code, str(copy)], env=env, check=True, cwd=tmp_path)
    assert before and sorted(p.name for p in copy.iterdir()) == before


def test_a_run_turns_on_the_compile_cache_it_is_configured_with(tmp_path, monkeypatch):
    """``execute`` passes ``zoo.compile_cache`` to ``use_compile_cache`` before any compute."""
    from sandbag import run

    seen = []

    class Stop(Exception):
        pass

    def record(path):
        seen.append(path)
        raise Stop

    monkeypatch.setattr(run, "use_compile_cache", record)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", [*SMOKE, f"zoo.compile_cache={tmp_path / 'jax'}"])
    with pytest.raises(Stop):
        run.execute(cfg, tmp_path)
    assert seen == [str(tmp_path / "jax")]
