"""``+experiment=supervisor_sweep``: the supervisor-strength axis. One organism population (the
configured pair's, as in ``elicitation``) is elicited by supervisors of increasing strength --
every rung named in ``supervisors``, member 0 of its ladder population, its demonstrations and
its judge -- so recovery can be read against the supervisor's own accuracy (Ryd et al.'s
"a very weak supervisor recovers less" is a point on that curve). Training is indistinguishable
from deployment; ``elicitation.methods`` picks the methods (weak-to-strong students are not run:
they are not elicitation of the organisms).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from sandbag import report, seeds
from sandbag.decode import answers_of
from sandbag.elicit.base import ELICITATIONS, Setting
from sandbag.pipelines import gap_scan, ladder
from sandbag.pipelines import setting as setting_mod
from sandbag.pipelines.elicitation import baselines, outcome, summary
from sandbag.pipelines.organisms import organisms as train_organisms
from sandbag.pipelines.setting import behaviour, timed
from sandbag.redteam import get_trigger
from sandbag.schema import RunConfig
from sandbag.supervision import demonstrations, make_judge
from sandbag.tasks import Task
from sandbag.tasks.base import PAD
from sandbag.zoo import Zoo

log = logging.getLogger(__name__)


def run(cfg: RunConfig, task: Task, zoo: Zoo, out_dir: Path) -> dict[str, float]:
    rungs = gap_scan.find_rungs(gap_scan.config_dirs())  # sandbag.config checked the names
    shared = setting_mod.build(cfg, task, zoo)
    metrics, items = dict(shared.metrics), shared.items
    k = cfg.elicitation
    trigger = get_trigger(k.trigger)
    with timed(metrics, "organisms"):
        organisms, starts = train_organisms(
            cfg,
            task,
            shared,
            trigger,
            zoo,
            [k.strategy],
            seeds.members("organisms", cfg.seed, k.seeds),
            twins=False,
        )
    before = behaviour(organisms, shared.judge, items, trigger.sandbag)["correct"].mean(1)
    ceiling, _ = baselines(shared, starts)  # each supervisor's own accuracy is its PGR's baseline
    metrics["elicit/ceiling_acc"] = ceiling
    metrics.update(summary("elicit/before/acc", before))
    methods = [m for m in k.methods if m != "confidence_loss"]
    for name in cfg.supervisors:
        log.info("supervisor %s", name)
        p = f"supervisor/{name}"
        with timed(metrics, f"supervisor/{name}/ladder"):
            rung = ladder.train_rung(replace(cfg, weak=rungs[name]), task, "weak", zoo)  # the ladder's entry
        with timed(metrics, f"supervisor/{name}/judge"):
            judge = make_judge(cfg.judge, task, rung, zoo)
            demos = demonstrations(task, rung, k.n_demos, cfg.seed)
            answers = answers_of(rung.member(0), items, PAD)  # the supervisor answers plainly
        metrics[f"{p}/acc"] = acc = float(np.all(answers == items.answers[None], axis=-1).mean())
        metrics[f"{p}/params"] = rung.n_params
        s = Setting(cfg, task, organisms, demos, shared.strong, judge, trigger.sandbag, False)
        for method in methods:
            with timed(metrics, f"supervisor/{name}/{method}"):
                params, _ = ELICITATIONS[method](s)
            pop = organisms.with_params(params)
            metrics.update(
                outcome(
                    f"{p}/{method}", pop, judge, items, trigger.sandbag, s.train_context, before, ceiling, acc
                )
            )
    with timed(metrics, "reports"):
        report.supervisor_outputs(metrics, list(cfg.supervisors), methods, out_dir)
    return metrics
