"""Shared test set-up: CPU only, two host devices, no W&B, no progress bars, a private zoo.

The environment is set before anything imports jax, so every test (and every CLI
subprocess, which inherits ``os.environ``) sees the same platform.
"""

import os

os.environ["JAX_PLATFORMS"] = "cpu"
# Tests compile more than they compute (scale=smoke): the backend's optimisation level 0
# compiles faster and its programs run slower (the suite from an empty compile cache: 488 s
# at level 0, 555 s at the default; REPORT.md). A smoke sweep, which computes about as long
# as it compiles, runs faster at the default level.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
)
os.environ["WANDB_MODE"] = "disabled"
os.environ["TQDM_DISABLE"] = "1"
# Compiled programs are kept where a run keeps them (conf/config.yaml: zoo.compile_cache), and
# shared with every CLI subprocess: compiling is most of a test's time, so a second run of the
# suite loads what the first compiled. A cache only: results are the same without it.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.environ.get("SANDBAG_COMPILE_CACHE") or os.path.expanduser("~/.cache/sandbag/jax"),
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
# As ``run.use_compile_cache`` on the CPU: no GPU autotuning cache, whose path would enter every
# program's key, so a copy of the cache elsewhere (a CI cache) is hit.
os.environ.setdefault("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", "none")
# The tests' own task, ``addition`` (tests/addition_task.py), is a user task: importable in every
# CLI subprocess, selected there with ADDITION below.
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import addition_task  # noqa: E402, F401  (registers ``addition`` in this process)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# An external task, as a user would write it outside the package: copy three 2-digit
# numbers; difficulty k = how many of them are non-zero (so every level has hundreds of
# distinct problems and every split gets some of each level).
COPY3_SOURCE = textwrap.dedent(
    """
    import numpy as np

    from sandbag.tasks import Task, register_task


    @register_task("copy3")
    class Copy3(Task):
        symbols = tuple("0123456789=")
        difficulties = (1, 2, 3)
        prompt_len, answer_len = 7, 6

        def sample(self, rng, n, difficulty):
            x = rng.integers(1, 100, size=(n, 3))
            used = np.arange(3)[None, :] < np.asarray(difficulty)[:, None]
            order = np.argsort(rng.random((n, 3)), axis=1)
            return np.take_along_axis(np.where(used, x, 0), order, axis=1)

        def encode(self, problems):
            digits = np.stack([problems // 10, problems % 10], axis=2).reshape(len(problems), 6)
            eq = np.full((len(problems), 1), self.symbols.index("="))
            return np.concatenate([digits, eq], axis=1), digits

        def canonical(self, problems):
            return problems @ np.array([10_000, 100, 1])

        def paraphrase(self, rng, problems):
            return problems.copy()
    """
)

# The smallest command that runs the whole capability-ladder pipeline.
SMOKE = ["+experiment=capability_ladder", "scale=smoke", "logger=none"]
# CLI arguments that select the tests' ``addition`` task (tests/conf/task/addition.yaml).
ADDITION = ["task=addition", f"hydra.searchpath=[file://{TESTS_DIR}/conf]"]
# Faster rungs for end-to-end tests that run the pipeline several times.
SMALL_RUNGS = ["model@weak=nano", "model@strong=tiny"]


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject.toml): one worker per core, at most 4 -- each is a JAX process
    with its own thread pool and compiled programs, and the suite has few files that take long."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cores, 4)


@pytest.fixture(autouse=True)
def zoo_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own zoo, never the user's ``~/.cache/sandbag/zoo``."""
    path = tmp_path / "zoo"
    monkeypatch.setenv("SANDBAG_ZOO", str(path))
    return path


@pytest.fixture
def copy3_module(tmp_path):
    """Path of a user task module defining ``copy3``; unregistered again after the test."""
    from sandbag.tasks import TASKS

    path = tmp_path / "user_tasks" / "copy3.py"
    path.parent.mkdir()
    path.write_text(COPY3_SOURCE)
    yield path
    TASKS.pop("copy3", None)
    sys.modules.pop("copy3", None)


def run_cli(
    args: list[str], run_dir: Path, zoo: Path, *, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m sandbag.run ARGS hydra.run.dir=RUN_DIR`` with ``SANDBAG_ZOO=ZOO``, in ``env``
    (default: this process's environment)."""
    env = {**(os.environ if env is None else env), "SANDBAG_ZOO": str(zoo)}
    return subprocess.run(
        [sys.executable, "-m", "sandbag.run", *args, f"hydra.run.dir={run_dir}"],
        env=env,
        cwd=run_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ``python -m sandbag.run`` with SIGINT handled as Python does by default. pytest-xdist's workers
# ignore SIGINT and a child inherits that, so a test could not interrupt the run it started as
# a user's Ctrl-C would. (Restored in the child itself: a preexec_fn would fork a JAX process.)
RUN_WITH_SIGINT = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('sandbag.run', run_name='__main__', alter_sys=True)"
)


def start_cli(args: list[str], run_dir: Path, zoo: Path, *, env: dict | None = None) -> subprocess.Popen:
    """The command of ``run_cli`` (SIGINT as a user's Ctrl-C sends it), started in the background."""
    env = {**(os.environ if env is None else env), "SANDBAG_ZOO": str(zoo)}
    return subprocess.Popen(
        [sys.executable, "-c", RUN_WITH_SIGINT, *args, f"hydra.run.dir={run_dir}"],
        env=env,
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    """Wait for a ``start_cli`` process; the same result ``run_cli`` would have returned."""
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def metrics_without_time(run_dir: Path) -> dict:
    """A run's metrics without those that describe the run rather than the models: its wall
    time, its stages' times and how many models it trained or loaded from the zoo."""
    metrics = dict(results_of(run_dir)["metrics"])
    for key in ("wall_time_s", "zoo/trained", "zoo/reused"):
        metrics.pop(key)
    return {k: v for k, v in metrics.items() if not k.startswith("time/")}


def final_digests(zoo: Path) -> dict:
    """{rung name: digest of its trained weights} for every entry in a zoo."""
    out = {}
    for d in zoo.iterdir():
        spec, final = (json.loads((d / name).read_text()) for name in ("spec.json", "final.json"))
        out[spec["model"]["name"]] = final["digest"]
    return out


def log_of(proc: subprocess.CompletedProcess, run_dir: Path) -> str:
    """Everything a run logged: its stdout, stderr and Hydra's log file."""
    files = "".join(p.read_text() for p in run_dir.glob("*.log")) if run_dir.exists() else ""
    return proc.stdout + proc.stderr + files


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One default smoke run of the CLI (shared: it is the slowest thing the tests do)."""
    root = tmp_path_factory.mktemp("smoke")
    run_dir, zoo = root / "run", root / "zoo"
    proc = run_cli(SMOKE, run_dir, zoo)
    return proc, run_dir, zoo


def comparable_leaves(params) -> dict:
    """Every parameter by path, except the attention key bias: its gradient is zero in exact
    arithmetic (softmax ignores a constant shift of the scores), so Adam turns float noise
    into updates that differ with the reduction order. It has no effect on the model."""
    import jax

    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name, leaf = jax.tree_util.keystr(path), np.asarray(leaf)
        if "qkv" in name and "bias" in name:
            d = leaf.shape[-1] // 3
            leaf = np.concatenate([leaf[..., :d], leaf[..., 2 * d :]], axis=-1)
        out[name] = leaf
    return out


def addition_operands(task, prompts: np.ndarray) -> np.ndarray:
    """[n, slots] operands read back from rendered addition prompts ('00+37+91=')."""
    return np.array([[int(x) for x in task.render(p).rstrip("=").split("+")] for p in prompts])


def addition_answers(task, prompts: np.ndarray) -> np.ndarray:
    """The true answer tokens [n, A] of addition prompts, by Python arithmetic on the text."""
    sums = addition_operands(task, prompts).sum(1)
    return np.array([[task.vocab.index(c) for c in str(s).zfill(task.answer_len)] for s in sums])


def addition_rung(name: str, d_model: int, key: str):
    """(3-operand addition, a one-layer rung of width ``d_model`` trained on it for 300 steps):
    right on most level-1 items, wrong on most level-3 ones. ``key`` names it for the zoo."""
    from sandbag.data import ladder_sampler
    from sandbag.models import ModelConfig
    from sandbag.population import Population
    from sandbag.tasks import make_task
    from sandbag.train import TrainConfig, init_population, train

    task = make_task("addition", slots=3, digits=2)
    vocab = task.vocab_size
    cfg = ModelConfig(name=name, n_layers=1, d_model=d_model, n_heads=2, vocab_size=vocab, max_len=64)
    graphdef, params = init_population(cfg, [0])
    tcfg = TrainConfig(steps=300, batch_size=64, lr=3e-3, warmup=20, steps_per_call=50)
    params, _ = train(graphdef, params, tcfg, ladder_sampler(task, [0], 64, 50))
    return task, Population(graphdef, params, ["weak"], [0], cfg, key)


@pytest.fixture(scope="session")
def weak_supervisor():
    """A nano rung trained briefly on 3-operand addition (a weak supervisor with a real blind
    spot). Shared, so never donate it."""
    return addition_rung("nano", 16, "test-weak-nano-addition3")
