"""Running the Hydra app beyond one local job: multirun sweeps through the joblib and
submitit_local launchers (jobs in parallel worker processes, one output directory per job),
and the W&B sweep file, whose command is built here by wandb's own agent code."""

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from conftest import SMOKE, TESTS_DIR, results_of

from sandbag.config import check_argv
from sandbag.run import CONF_DIR

REPO = Path(__file__).resolve().parent.parent
SWEEP_FILE = REPO / "conf" / "wandb" / "gap_sweep.yaml"

# Two short jobs that differ only in the weak rung (the strong rung is the second job's weak
# one, so the two jobs also share one zoo entry, trained once).
FAST = [*SMOKE, "model@strong=tiny", "train.steps=20"]
WEAK_RUNGS = {"nano", "tiny"}


def multirun(tmp_path: Path, launcher: list[str]) -> tuple[subprocess.CompletedProcess, int, Path, Path]:
    """``python -m sandbag.run FAST LAUNCHER model@weak=nano,tiny --multirun``: (process, its
    pid, sweep dir, zoo). ``-m``/``--multirun`` must come first or last: Hydra's argparse
    rejects a flag between overrides."""
    sweep, zoo = tmp_path / "sweep", tmp_path / "zoo"
    cmd = [
        *(sys.executable, "-m", "sandbag.run", *FAST, f"zoo.dir={zoo}", *launcher),
        *("model@weak=nano,tiny", f"hydra.sweep.dir={sweep}", "--multirun"),
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), proc.pid, sweep, zoo


def check_jobs(proc: subprocess.CompletedProcess, sweep: Path, zoo: Path) -> list[Path]:
    """Both jobs wrote results with their own weak rung; the zoo trained each model once."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [sweep / "0", sweep / "1"]
    results = [results_of(job) for job in jobs]
    for r in results:
        assert r["config"]["experiment"] == "capability_ladder"
        assert 0.0 <= r["metrics"]["weak/acc"] <= 1.0
    assert {r["config"]["weak"]["name"] for r in results} == WEAK_RUNGS
    assert results[0]["metrics"]["weak/params"] != results[1]["metrics"]["weak/params"]
    logs = "".join((job / "run.log").read_text() for job in jobs)
    assert len(list(zoo.glob("*/final.json"))) == 2  # nano and tiny
    assert len(re.findall(r": training \(zoo entry", logs)) == 2, logs
    return jobs


def log_span(job: Path) -> tuple[datetime, datetime]:
    """When a job logged its first and last line."""
    stamps = re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", (job / "run.log").read_text(), re.M)
    first, last = (datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in (stamps[0], stamps[-1]))
    return first, last


@pytest.mark.slow
def test_a_joblib_sweep_runs_the_jobs_in_parallel(tmp_path):
    proc, _, sweep, zoo = multirun(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    jobs = check_jobs(proc, sweep, zoo)
    (start0, end0), (start1, end1) = map(log_span, jobs)
    assert max(start0, start1) < min(end0, end1), "the two jobs did not overlap in time"


@pytest.mark.slow
def test_a_submitit_local_sweep_runs_each_job_in_its_own_process(tmp_path):
    launcher = [
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
    ]
    proc, launcher_pid, sweep, zoo = multirun(tmp_path, launcher)
    check_jobs(proc, sweep, zoo)
    # Hydra's job outputs are in SWEEP/<job num>/ as with any launcher; submitit keeps its own
    # files in SWEEP/.submitit/<job id>/, and a local job's id is the pid of its process.
    job_ids = sorted(int(d.name) for d in (sweep / ".submitit").iterdir() if d.name.isdigit())
    assert len(job_ids) == 2 and launcher_pid not in job_ids, job_ids
    for job_id in job_ids:
        out = (sweep / ".submitit" / str(job_id) / f"{job_id}_0_log.out").read_text()
        assert f"JobEnvironment(job_id={job_id}," in out
        assert "outputs in" in out, out[-3000:]


# ------------------------------------------------------------------------------ W&B sweep


def sweep_config() -> dict:
    from wandb.sdk.launch.sweeps.utils import load_sweep_config  # what `wandb sweep FILE` reads with

    config = load_sweep_config(str(SWEEP_FILE))
    assert config, f"{SWEEP_FILE} could not be read"
    return config


def agent_command(config: dict, params: dict, monkeypatch, tmp_path: Path) -> tuple[list[str], dict]:
    """The argv and environment wandb's agent starts one run of this sweep with.

    It is wandb's own code (``wandb.wandb_agent.Agent._command_run``: macro substitution by
    ``wandb.sdk.launch.sweeps.utils.create_sweep_command`` and ``create_sweep_command_args``),
    with the process it would start recorded instead. ``params`` is the run's parameter set,
    as the sweep server sends it.
    """
    import wandb
    from wandb import wandb_agent

    started = {}

    class Recorder:
        def __init__(self, env=None, command=None, **kwargs):
            started.update(command=command, env=env)

    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    # The agent sets these in os.environ; monkeypatch puts them back afterwards.
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "agent"))
    monkeypatch.setenv(wandb.env.SWEEP_ID, "test-sweep")
    monkeypatch.setenv(wandb.env.RUN_ID, "unset")
    monkeypatch.setenv(wandb.env.SWEEP_PARAM_PATH, "unset")
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="test-sweep")
    agent._sweep_command = list(config["command"])  # what Agent.run takes from the sweep's config
    run = {"type": "run", "run_id": "run0", "program": config.get("program")}
    agent._command_run({**run, "args": {k: {"value": v} for k, v in params.items()}})
    return started["command"], started["env"]


def test_the_wandb_sweep_file_builds_gap_point_commands(monkeypatch, tmp_path):
    config = sweep_config()
    assert config["method"] == "grid" and "program" not in config
    gaps, seeds = config["parameters"]["gap"]["values"], config["parameters"]["seed"]["values"]
    assert gaps == ["nano_medium", "tiny_medium", "small_medium", "nano_small"] and seeds == [0, 1, 2]
    argv, _ = agent_command(config, {"gap": "nano_small", "seed": 0}, monkeypatch, tmp_path)
    head = ["/usr/bin/env"] if os.name == "posix" else []
    assert argv == [*head, "python", "-m", "sandbag.run", "+experiment=gap_point", "gap=nano_small", "seed=0"]
    # Every run of the grid composes to a valid config (the CLI's own check, no compute).
    for gap in gaps:
        argv, _ = agent_command(config, {"gap": gap, "seed": seeds[-1]}, monkeypatch, tmp_path)
        check_argv(argv[argv.index("sandbag.run") + 1 :], CONF_DIR)


@pytest.mark.slow
def test_a_wandb_agent_run_of_the_sweep_file_writes_results(monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    params = {
        "gap": "nano_tiny",  # the tests' own gap (tests/conf/gap/): the smallest rungs compile fastest
        "seed": 0,
        # what a test sweep would fix on top of the file's parameters (a smoke run, trimmed)
        "hydra.searchpath": f"[file://{TESTS_DIR}/conf]",
        "scale": "smoke",
        "logger": "none",
        "detector": "[difficulty_profile,judge_statistics]",
        "strategy.names": "[emulate_weak]",
        "elicitation": "sft_weak",
        "elicitation.distinguishable": False,
        "zoo.dir": str(tmp_path / "zoo"),
        "hydra.run.dir": str(run_dir),
    }
    argv, env = agent_command(sweep_config(), params, monkeypatch, tmp_path)
    assert argv[argv.index("python") :] == [
        *("python", "-m", "sandbag.run", "+experiment=gap_point", "gap=nano_tiny", "seed=0"),
        f"hydra.searchpath=[file://{TESTS_DIR}/conf]",
        *("scale=smoke", "logger=none", "detector=[difficulty_profile,judge_statistics]"),
        *("strategy.names=[emulate_weak]", "elicitation=sft_weak", "elicitation.distinguishable=False"),
        *(f"zoo.dir={tmp_path / 'zoo'}", f"hydra.run.dir={run_dir}"),
    ]
    # `python` as the agent finds it on PATH: make that this interpreter.
    env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = results_of(run_dir)
    assert results["config"]["experiment"] == "gap_point"
    assert (results["config"]["weak"]["name"], results["config"]["strong"]["name"]) == ("nano", "tiny")
    assert results["config"]["seed"] == 0
    assert results["metrics"]["gap"] == pytest.approx(
        results["metrics"]["strong/acc"] - results["metrics"]["weak/acc"]
    )
