"""``+experiment=gap_scan``: which (weak, strong) pairs of rungs give a task a capacity gap.

Finding a task and a pair with a clean gap is the hardest part of setting up a sandbagging
study (REPORT.md lists tasks that gave none), so it is the first run on a new task. Every rung
of ``conf/model/`` -- a new rung is one YAML there or in a ``hydra.searchpath`` directory --
up to ``scan.max_params`` trains exactly as the ladder trains it (``scan.seeds`` members, one
``vmap``ped population, the same zoo entry), so a later experiment on a passing pair starts
from the scan's models. Every pair is judged by the ladder's own criteria (``sandbag.criteria``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
from flax import nnx
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from sandbag import criteria, report, schema
from sandbag.models import ModelConfig, Transformer, param_count
from sandbag.pipelines import ladder
from sandbag.schema import ConfigError, RunConfig, Rung
from sandbag.tasks import Task
from sandbag.zoo import Zoo

log = logging.getLogger(__name__)
PACKAGE_CONF = Path(__file__).resolve().parents[2] / "conf"


def config_dirs() -> list[Path]:
    """The directories of Hydra's search path, in its order (the package's ``conf/``, then a
    user's ``hydra.searchpath``); the package's ``conf/`` alone outside a Hydra run."""
    if not HydraConfig.initialized():
        return [PACKAGE_CONF]
    sources = HydraConfig.get().runtime.config_sources
    return [Path(s["path"]) for s in sources if s["schema"] == "file"]


def find_rungs(dirs: list[Path]) -> dict[str, Rung]:
    """Every ``model/*.yaml`` under ``dirs`` by option name; the first directory wins, as in Hydra."""
    found: dict[str, Rung] = {}
    for d in dirs:
        for path in sorted(Path(d, "model").glob("*.yaml")):
            if path.stem not in found:
                try:
                    found[path.stem] = schema.rung(OmegaConf.load(path), f"{path}: ")
                except schema.SchemaError as e:
                    raise ConfigError(str(e)) from None
    return found


def n_params(rung: Rung, task: Task) -> int:
    """Parameters of one member on ``task``'s vocabulary, from shapes alone (nothing allocated)."""
    model = nnx.eval_shape(lambda: Transformer(ModelConfig.of_rung(rung, task.vocab_size), nnx.Rngs(0)))
    return param_count(nnx.state(model, nnx.Param))


def scanned(cfg: RunConfig, task: Task, rungs: dict[str, Rung]) -> dict[str, tuple[Rung, int]]:
    """The rungs this scale can afford and the task fits in, smallest first, with their sizes."""
    sizes = {name: n_params(rung, task) for name, rung in rungs.items()}
    out = {}
    for name in sorted(rungs, key=sizes.get):
        rung, size = rungs[name], sizes[name]
        if cfg.scan.max_params is not None and size > cfg.scan.max_params:
            log.info("gap_scan: skipping %s (%s params > scan.max_params)", name, f"{size:,}")
        elif task.seq_len > rung.max_len:
            log.info("gap_scan: skipping %s (max_len %d < %d tokens)", name, rung.max_len, task.seq_len)
        else:
            out[name] = (rung, size)
    if len(out) < 2:
        raise ConfigError(
            f"gap_scan needs two rungs to compare; of {', '.join(rungs)} only {', '.join(out) or 'none'} "
            f"fit(s) scan.max_params={cfg.scan.max_params} and the task's {task.seq_len} tokens"
        )
    return out


def run(cfg: RunConfig, task: Task, zoo: Zoo, out_dir: Path) -> dict[str, float]:
    dirs = config_dirs()
    rungs = scanned(cfg, task, find_rungs(dirs))
    accs, metrics = {}, {}
    for i, (name, (rung, size)) in enumerate(rungs.items()):
        log.info("gap_scan: rung %s (%d of %d, %s params)", name, i + 1, len(rungs), f"{size:,}")
        as_ladder = replace(cfg, weak=rung, ladder_seeds=cfg.scan.seeds)  # the ladder's zoo entry
        pop = ladder.train_rung(as_ladder, task, "weak", zoo)
        accs[name] = ladder.accuracy_by_member(task, pop, cfg.eval.n_per_level, cfg.seed)
        metrics[f"scan/{name}/params"] = size
        metrics[f"scan/{name}/acc"] = float(accs[name].mean())
        for j, k in enumerate(task.difficulties):
            metrics[f"scan/{name}/acc_d{k}"] = float(accs[name][:, j].mean())
            metrics[f"scan/{name}/spread_d{k}"] = float(np.ptp(accs[name][:, j]))
    pairs = criteria.scan_pairs(accs, cfg.min_gap)
    for p in pairs:
        metrics[f"scan/{p.name}/gap"], metrics[f"scan/{p.name}/gap_max"] = p.gap, p.gap_max
        metrics[f"scan/{p.name}/passes"] = float(p.passes)
        if (rungs[p.weak][0], rungs[p.strong][0]) == (cfg.weak, cfg.strong):  # the configured pair
            metrics["gap"], metrics["gap_max"] = p.gap, p.gap_max
    metrics["scan/n_passing"] = sum(p.passes for p in pairs)
    known_gaps = {path.stem for d in dirs for path in Path(d, "gap").glob("*.yaml")}
    report.scan_outputs(task, accs, {n: size for n, (_, size) in rungs.items()}, pairs, known_gaps, out_dir)
    return metrics
