"""Elicitation: training that tries to recover a sandbagger's hidden capability with weak
supervision only. Every method trains the whole organism population (its seeds) in one
vmapped program with the shared trainer, in the *training context* -- the deployment cue
itself, or the training cue when training is distinguishable from deployment -- and is then
measured in the deployment context.

A new method is one function (here or in a user module) with ``@register_elicitation`` and
its name in ``elicitation.methods``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from sandbag.data import answer_weights
from sandbag.redteam.organisms import Population, sequences
from sandbag.redteam.triggers import Trigger
from sandbag.tasks import Items, Task
from sandbag.tasks.base import TRAINING
from sandbag.train import TrainConfig

ELICITATIONS: dict[str, Callable] = {}


def register_elicitation(name: str):
    def deco(fn):
        ELICITATIONS[name] = fn
        return fn

    return deco


@dataclass
class Setting:
    """What an elicitation method works with: the organisms and the weak supervision."""

    cfg: DictConfig  # the whole run config; the method's knobs are under ``elicitation``
    task: Task
    organisms: Population
    weak: object
    strong: object
    judge: object
    trigger: Trigger
    distinguishable: bool

    @property
    def train_context(self) -> int:
        """The cue on every training input: distinguishable training carries the training cue."""
        return TRAINING if self.distinguishable else self.trigger.sandbag

    @property
    def knobs(self) -> DictConfig:
        return self.cfg.elicitation


def copy_params(params):
    """The trainer donates its input; methods train on a copy so the organisms stay intact."""
    return jax.tree.map(jnp.copy, params)


def fixed_sampler(tokens: np.ndarray, task: Task, tcfg: TrainConfig, seeds: list[int]):
    """Batches drawn with replacement from a fixed set of sequences; member m draws with seeds[m]."""
    w = answer_weights(tcfg.batch_size * tcfg.steps_per_call, task)
    shape = (tcfg.steps_per_call, tcfg.batch_size, -1)

    def sample(m: int, chunk: int):
        r = np.random.default_rng([seeds[m], chunk, 0xE11C])
        idx = r.integers(0, len(tokens), size=tcfg.batch_size * tcfg.steps_per_call)
        return tokens[idx].reshape(shape), w.reshape(shape)

    return sample


def item_tokens(context: int, items: Items) -> np.ndarray:
    return sequences(context, items.prompts, items.answers)
