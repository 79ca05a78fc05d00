"""``python -m sandbag.run +experiment=NAME [overrides]``: validate, run one pipeline, report.

Kept thin on purpose: the logic lives in importable modules that tests call directly.
Bad input is caught before Hydra starts any job (``config.check_argv``), so it costs one
clear message and exit code 2, never a traceback or a half-written output directory.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from sandbag import config as config_mod
from sandbag import pipelines
from sandbag.config import ConfigError
from sandbag.parallel import primary_process
from sandbag.tracking import make_tracker
from sandbag.train import TrainingDiverged
from sandbag.zoo import Zoo, ZooError

log = logging.getLogger("sandbag")
SCHEMA_VERSION = 1
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def write_results(out_dir: Path, cfg: DictConfig, metrics: dict) -> Path:
    """``results.json``, written atomically so a killed run never leaves one looking complete."""
    path = out_dir / "results.json"
    tmp = path.with_suffix(".json.tmp")
    body = {
        "schema_version": SCHEMA_VERSION,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "metrics": dict(sorted(metrics.items())),
    }
    tmp.write_text(json.dumps(body, indent=2))
    os.replace(tmp, path)
    return path


def use_compile_cache(path: str | None) -> None:
    """Keep every compiled program on disk, however quick its compilation: in smoke runs and
    tests compiling is most of the time, and a rerun, the next job of a sweep or the next gap
    point compiles the same programs. An explicit ``JAX_COMPILATION_CACHE_DIR`` wins; an empty
    ``path`` leaves the cache off.

    On the CPU the cache can be moved or copied (a CI cache, another checkout): by default JAX
    also turns on a GPU autotuning cache under ``path`` and writes that path into every
    program's compile options, which are part of each program's key, so a copy of the cache in
    another directory would never be hit. The CPU has nothing to autotune; it is turned off
    there. Call after ``use_cpu_devices`` (this starts JAX's backend)."""
    if not path or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    if jax.default_backend() == "cpu":
        jax.config.update("jax_persistent_cache_enable_xla_caches", "none")


def use_cpu_devices(setting, batch_size: int) -> int | None:
    """Give JAX's CPU backend ``setting`` devices (``cpu_devices``, conf/scale/*.yaml), so the
    trainer splits each batch over them; the count used, or None where it was left alone: an
    XLA_FLAGS device count wins, and a backend JAX has already started cannot change."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if setting == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        n = max(d for d in range(1, min(cores, 4) + 1) if batch_size % d == 0)
    else:
        n = int(setting)
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already ran something in this process (a notebook, a second job)
        log.warning("cpu_devices=%s ignored: JAX has already started with %d", setting, jax.device_count())
        return None
    return n


def execute(cfg: DictConfig, out_dir: Path) -> dict:
    """Run the experiment named by ``cfg.experiment`` and write its outputs into ``out_dir``."""
    use_cpu_devices(cfg.get("cpu_devices", "auto"), cfg.train.batch_size)
    if cfg.get("distributed"):
        start_distributed()
    use_compile_cache(cfg.zoo.get("compile_cache"))
    if not primary_process():  # every process computes the same: the job's outputs are process 0's
        with tempfile.TemporaryDirectory(prefix="sandbag-process-") as tmp:
            return _execute(cfg, Path(tmp), {"name": "none"})
    return _execute(cfg, out_dir, OmegaConf.to_container(cfg.logger, resolve=True))


def start_distributed() -> None:
    """``jax.distributed.initialize()``, once per process (a multirun's later jobs reuse it),
    before anything else touches JAX: ``jax.devices()`` then spans every host
    (sandbag/parallel.py) and the zoo is read and written by process 0 (sandbag/zoo.py)."""
    import jax

    global _distributed
    if not _distributed:
        try:
            jax.distributed.initialize()
        except ValueError as e:  # no coordinator, process count or id: not started as a cluster's job
            raise ConfigError(
                f"distributed=true, but JAX found no cluster to join ({e}): start every process "
                "under Slurm (srun), Open MPI (mpirun) or Kubernetes, or leave distributed=false"
            ) from None
        _distributed = True


_distributed = False


def _execute(cfg: DictConfig, out_dir: Path, logger: dict) -> dict:
    run_cfg, task = config_mod.load(cfg)
    zoo = Zoo(cfg.zoo.dir)
    tracker = make_tracker(logger, OmegaConf.to_container(cfg, resolve=True), str(out_dir))
    with tracker:
        t0 = time.perf_counter()
        metrics = pipelines.EXPERIMENTS[run_cfg.experiment](run_cfg, task, zoo, out_dir)
        metrics["wall_time_s"] = time.perf_counter() - t0
        metrics["zoo/trained"], metrics["zoo/reused"] = len(zoo.trained), len(zoo.reused)
        scalars = {k: v for k, v in metrics.items() if not isinstance(v, list)}  # curves: results.json only
        tracker.summary(scalars)
        tracker.log(scalars)
        write_results(out_dir, cfg, metrics)
        log.info("zoo: %d models trained, %d reused", len(zoo.trained), len(zoo.reused))
    return metrics


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        execute(cfg, out_dir)
    except (ConfigError, ZooError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as e:
        print(f"error: training diverged: {e}", file=sys.stderr)
        sys.exit(1)
    if primary_process():
        log.info("outputs in %s", out_dir)


def _keep_ctrl_c(unraisable) -> None:
    """Python drops an exception raised in a garbage-collector callback (JAX has one), so a
    Ctrl-C landing there would be lost: raise it again 50 ms later, from a timer signal
    (raised in this hook, it would be dropped as well)."""
    if issubclass(unraisable.exc_type, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
    else:
        sys.__unraisablehook__(unraisable)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    sys.unraisablehook = _keep_ctrl_c
    signal.signal(signal.SIGALRM, _interrupt)
    try:
        config_mod.check_argv(sys.argv[1:], CONF_DIR)
        _hydra_main()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # wherever it lands: composing, training, saving (the zoo resumes)
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)  # not sys.exit: tearing the interpreter down under a running XLA step can crash it


if __name__ == "__main__":
    main()
