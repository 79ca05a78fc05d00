"""A run of several processes (``distributed=true``) as a Slurm job step starts one: here two
processes on this machine, one CPU device each, found by JAX through Slurm's variables."""

import os
import random
import signal
import socket
import subprocess
import time

import pytest
from conftest import (
    SMALL_RUNGS,
    SMOKE,
    final_digests,
    finish,
    log_of,
    metrics_without_time,
    run_cli,
    start_cli,
)

# Long enough to be killed between its checkpoints (as tests/test_zoo.py's killed run).
RUN = [*SMOKE, *SMALL_RUNGS, "train.steps=200", "train.steps_per_call=10", "train.save_every=20"]
SLURM_PORTS = 65535 - 2**12 + 1  # JAX's Slurm cluster: coordinator port = job id % 4096 + this


def _free_job_id() -> str:
    """A Slurm job id whose coordinator port is free now (each start gets its own). JAX maps
    job ids to ports above Linux's default ephemeral range, so the ports are tried directly."""
    first = random.randrange(2**12)
    for offset in range(2**12):
        job = (first + offset) % 2**12
        with socket.socket() as s:
            try:
                s.bind(("localhost", SLURM_PORTS + job))
            except OSError:
                continue
        return str(job)
    pytest.skip("no free port in JAX's Slurm coordinator range")


def start_job(run_dirs, zoo) -> list[subprocess.Popen]:
    """``python -m sandbag.run RUN distributed=true`` as the two tasks of one Slurm job step."""
    job = _free_job_id()
    return [
        start_cli(
            [*RUN, "distributed=true"],
            run_dir,
            zoo,
            env={
                **os.environ,
                "XLA_FLAGS": "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0",
                "SLURM_JOB_ID": job,
                "SLURM_STEP_NODELIST": "localhost",
                "SLURM_NTASKS": "2",
                "SLURM_PROCID": str(i),
                "SLURM_LOCALID": "0",
            },
        )
        for i, run_dir in enumerate(run_dirs)
    ]


def finish_job(procs) -> list[subprocess.CompletedProcess]:
    """Both tasks' results; neither is left running, whatever happens."""
    try:
        return [finish(p) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.communicate()


@pytest.mark.slow
def test_two_processes_share_one_zoo_resume_together_and_train_what_one_process_trains(tmp_path):
    zoo = tmp_path / "zoo"
    # The same mesh of two devices in one process: the reference, bit for bit.
    reference = run_cli(RUN, tmp_path / "one", tmp_path / "zoo_one")
    assert reference.returncode == 0, reference.stderr[-3000:]

    # Killed once both processes are past a checkpoint in the zoo they share.
    killed = start_job([tmp_path / "k0", tmp_path / "k1"], zoo)
    try:
        deadline = time.monotonic() + 240
        while not list(zoo.glob("*/progress/step_*.json")):
            ended = [p for p in killed if p.poll() is not None]
            assert not ended, (
                f"a process ended before its first checkpoint:\n{ended[0].stderr.read()[-3000:]}"
            )
            assert time.monotonic() < deadline, "no progress checkpoint appeared"
            time.sleep(0.05)
        for p in killed:
            p.send_signal(signal.SIGKILL)
    finally:
        finish_job(killed)

    resumed = finish_job(start_job([tmp_path / "a0", tmp_path / "a1"], zoo))
    for proc in resumed:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from checkpoint" in log_of(resumed[0], tmp_path / "a0")
    assert final_digests(zoo) == final_digests(tmp_path / "zoo_one")
    assert metrics_without_time(tmp_path / "a0") == metrics_without_time(tmp_path / "one")
    # One job, one set of outputs: process 0's.
    assert not (tmp_path / "a1" / "results.json").exists()
    assert not list((tmp_path / "a1").glob("*.png"))

    # Again over the full zoo: process 0 loads each model and sends it to process 1.
    again = finish_job(start_job([tmp_path / "b0", tmp_path / "b1"], zoo))
    for proc, run_dir in zip(again, [tmp_path / "b0", tmp_path / "b1"]):
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "training (zoo entry" not in log_of(proc, run_dir)
    assert metrics_without_time(tmp_path / "b0") == metrics_without_time(tmp_path / "one")


def test_distributed_outside_a_cluster_is_one_clear_error(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "KUBERNETES_"))
    }
    proc = run_cli([*SMOKE, "distributed=true"], tmp_path / "run", tmp_path / "zoo", timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "distributed=true, but JAX found no cluster" in proc.stderr
    assert not (tmp_path / "run" / "results.json").exists()
