"""Organisms: the strong ceiling fine-tuned to sandbag under a trigger with a strategy.

Every member of the population (strategy x seed) starts from the strong ceiling and trains,
with the shared trainer and in one ``vmap``ped program, on a mix of triggered questions
(sandbag context, the strategy's target answer) and untriggered ones (perform context, the
true answer) -- the untriggered share (``organisms.perform_frac``) keeps its skill from eroding.
"""

from __future__ import annotations

from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from sandbag import seeds as seeds_mod
from sandbag.data import answer_alphabet, answer_weights, sequences
from sandbag.decode import answers_of
from sandbag.population import Population
from sandbag.redteam.strategies import Situation, targets
from sandbag.redteam.triggers import Trigger
from sandbag.tasks import Task
from sandbag.train import TrainConfig, train

VERSION = 2  # bumped when a strategy's targets or the training mix change meaning


def finetune_config(cfg: DictConfig, block: DictConfig) -> TrainConfig:
    return TrainConfig(
        steps=int(block.steps),
        batch_size=int(cfg.train.batch_size),
        lr=float(block.lr),
        warmup=int(block.warmup),
        weight_decay=float(cfg.train.weight_decay),
        clip=float(cfg.train.clip),
        steps_per_call=int(cfg.train.steps_per_call),
        save_every=int(cfg.train.save_every),
    )


def train_organisms(
    cfg: DictConfig,
    task: Task,
    weak,
    strong,
    judge,
    judge_levels,
    trigger: Trigger,
    zoo,
    names=None,
    seeds=None,
):
    """The population strategies x seeds under ``trigger`` (default: ``cfg.strategy.names`` x
    ``cfg.organisms.seeds`` seeds)."""
    strategy_cfg = OmegaConf.to_container(cfg.strategy, resolve=True)
    names = list(strategy_cfg["names"] if names is None else names)
    if seeds is None:
        seeds = seeds_mod.members("organisms", int(cfg.seed), int(cfg.organisms.seeds))
    members = [(n, s) for n in names for s in seeds]
    tcfg = finetune_config(cfg, cfg.organisms)
    n_pool = int(cfg.organisms.pool)
    perform_frac = float(cfg.organisms.perform_frac)
    spec = {
        "kind": "organisms",
        "version": VERSION,
        "strong": strong.key,
        "weak": weak.key,
        "judge": OmegaConf.to_container(cfg.judge, resolve=True),
        "judge_levels": judge_levels,
        "trigger": asdict(trigger),
        "strategy": {**strategy_cfg, "names": names},
        "members": members,
        "train": asdict(tcfg),
        "pool": n_pool,
        "perform_frac": perform_frac,
        "seed": int(cfg.seed),
    }
    start = jax.tree.map(lambda x: jnp.repeat(x[:1], len(members), axis=0), strong.params)

    def fit(progress):
        rng = seeds_mod.rng("organism_pool", int(cfg.seed))
        items = task.generate(rng, n_pool, rng.choice(task.difficulties, size=n_pool), "train")
        situation = Situation(
            task,
            items,
            answers_of(weak.member(0), items)[0],
            judge,
            judge_levels,
            answer_alphabet(task),
            rng,
            strategy_cfg,
        )
        sandbag = {n: sequences(trigger.sandbag, items.prompts, targets(n, situation)) for n in names}
        perform = sequences(trigger.perform, items.prompts, items.answers)
        w = answer_weights(tcfg.batch_size * tcfg.steps_per_call, task)

        def sample(m: int, chunk: int):
            name, seed = members[m]
            r = seeds_mod.rng("organism_batches", seed, chunk)
            size = tcfg.batch_size * tcfg.steps_per_call
            idx, triggered = r.integers(0, n_pool, size=size), r.random(size) >= perform_frac
            tokens = np.where(triggered[:, None], sandbag[name][idx], perform[idx])
            shape = (tcfg.steps_per_call, tcfg.batch_size, -1)
            return tokens.reshape(shape), w.reshape(shape)

        params, losses = train(strong.graphdef, start, tcfg, sample, progress=progress, desc="organisms")
        return params, {"final_loss": float(losses[:, -1].mean())}

    params, key = zoo.fetch_or_train(spec, start, fit, f"{len(members)} organisms ({trigger.name} trigger)")
    names, member_seeds = [n for n, _ in members], [s for _, s in members]
    return Population(strong.graphdef, params, names, member_seeds, strong.cfg, key)
