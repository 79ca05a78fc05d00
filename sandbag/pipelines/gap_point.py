"""One job of the gap sweep (``+experiment=gap_point``): the organisms, detector bake-off and
elicitation experiments for one (weak, strong) pair, into one output directory. The three share
one ladder and judge; the zoo shares every model they have in common, and across the sweep's
jobs."""

from __future__ import annotations

from pathlib import Path

from sandbag.pipelines import bakeoff, elicitation, organisms, setting
from sandbag.schema import RunConfig
from sandbag.tasks import Task
from sandbag.zoo import Zoo


def run(cfg: RunConfig, task: Task, zoo: Zoo, out_dir: Path) -> dict[str, float]:
    shared = setting.build(cfg, task, zoo)  # the ladder and the judge, built once for the three
    metrics = dict(shared.metrics)
    for stage in (organisms, bakeoff, elicitation):
        got = stage.run(cfg, task, zoo, out_dir, setting=shared)
        times = {
            k: metrics.get(k, 0.0) + v - shared.metrics.get(k, 0.0)
            for k, v in got.items()
            if k.startswith("time/")
        }
        # a key an earlier stage wrote keeps its value: the bake-off measures the organisms
        # again, under its first trigger, which need not be the organisms stage's
        fresh = {k: v for k, v in got.items() if k not in metrics}
        metrics.update({**fresh, **times})  # each stage's wall time, summed over the three
    return metrics
