"""One job of the gap sweep (``+experiment=gap_point``): the organisms, detector bake-off and
elicitation experiments for one (weak, strong) pair, into one output directory. The zoo shares
every model the three have in common, and across the sweep's jobs."""

from __future__ import annotations

from pathlib import Path

from sandbag.pipelines import bakeoff, elicitation, organisms
from sandbag.schema import RunConfig
from sandbag.tasks import Task
from sandbag.zoo import Zoo


def run(cfg: RunConfig, task: Task, zoo: Zoo, out_dir: Path) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for stage in (organisms, bakeoff, elicitation):
        got = stage.run(cfg, task, zoo, out_dir)
        times = {k: metrics.get(k, 0.0) + v for k, v in got.items() if k.startswith("time/")}
        metrics.update({**got, **times})  # each stage's wall time, summed over the three
    return metrics
