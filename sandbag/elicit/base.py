"""Elicitation: training that tries to recover a sandbagger's hidden capability with weak
supervision only. Every method trains the whole organism population (its seeds) in one
vmapped program with the shared trainer, in the *training context* -- the deployment cue
itself, or the training cue when training is distinguishable from deployment -- and is then
measured in the deployment context.

A new method is one function (here or in a user module) with ``@register_elicitation`` and
its name in ``elicitation.methods``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from sandbag import seeds as seeds_mod
from sandbag.data import answer_weights, sequences
from sandbag.population import Population, on_host
from sandbag.registry import Registry
from sandbag.schema import Elicitation, RunConfig
from sandbag.tasks import Items, Task
from sandbag.tasks.base import TRAINING
from sandbag.train import TrainConfig
from sandbag.zoo import Zoo

ELICITATIONS = Registry("elicitation method")  # name -> function(Setting) -> (params, extras)
register_elicitation = ELICITATIONS.register


@dataclass
class Setting:
    """What an elicitation method works with: the organisms and the weak supervision (the weak
    supervisor's demonstrations and its judge) -- never a label the blue team lacks."""

    cfg: RunConfig  # the whole run config; the method's knobs are under ``elicitation``
    task: Task
    organisms: Population
    demos: Items  # the weak supervisor's answers on the demo split
    strong: Population  # the strong rung: the architecture of weak-to-strong students
    judge: object
    deploy_context: int  # the cue under which the organisms sandbag (and are measured)
    distinguishable: bool
    zoo: Zoo | None = None  # where a method keeps what it trains once for many runs

    @property
    def train_context(self) -> int:
        """The cue on every training input: distinguishable training carries the training cue."""
        return TRAINING if self.distinguishable else self.deploy_context

    @property
    def knobs(self) -> Elicitation:
        return self.cfg.elicitation


def trainer(s: Setting, **changes) -> TrainConfig:
    """``train.*`` with a method's own schedule; methods never checkpoint (they are minutes long)."""
    return replace(s.cfg.train, save_every=None, **changes)


def curve_tokens(s: Setting, n: int = 512) -> np.ndarray:
    """Evaluation questions, true answers, in the deployment context: what accuracy curves read."""
    rng = seeds_mod.rng("elicit_curve", s.cfg.seed)
    items = s.task.generate(rng, n, rng.choice(s.task.difficulties, size=n), "eval")
    return sequences(s.deploy_context, items.prompts, items.answers)


def copy_params(params):
    """The trainer donates its input; methods train on a copy so the organisms stay intact."""
    return on_host(np.array, params)


def fixed_sampler(tokens: np.ndarray, task: Task, tcfg: TrainConfig, seeds: list[int]):
    """Batches drawn with replacement from a fixed set of sequences; member m draws with seeds[m]."""
    w = answer_weights(tcfg.batch_size * tcfg.steps_per_call, task)
    shape = (tcfg.steps_per_call, tcfg.batch_size, -1)

    def sample(m: int, chunk: int):
        r = seeds_mod.rng("elicit_batches", seeds[m], chunk)
        idx = r.integers(0, len(tokens), size=tcfg.batch_size * tcfg.steps_per_call)
        return tokens[idx].reshape(shape), w.reshape(shape)

    return sample


def item_tokens(context: int, items: Items) -> np.ndarray:
    return sequences(context, items.prompts, items.answers)
