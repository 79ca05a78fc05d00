"""Benign controls: honest models whose accuracy matches a sandbagger's, for detection to beat.

Each control trains with the shared trainer, honestly in every context (its context slot
holds any cue at random, so a trigger token is nothing new to it), and is early-stopped per
member at the checkpoint whose accuracy on a selection set (``demo`` split, not the eval
split that results report) is nearest ``target``. Training ends when every member has passed
the target by ``overshoot``, come within ``tolerance`` of it (when that is above 0: matched is
all a control must be), or stopped getting closer for ``patience`` evaluations (a
weak-to-strong student may plateau short of it):

- ``lower_rung``: a lower rung of the ladder (``model@lower``) on ground truth;
- ``undertrained_strong``: the strong rung on ground truth, stopped early;
- ``w2s_student``: the strong rung on the weak supervisor's labels (weak-to-strong);
- ``ceiling_w2s``: the strong *ceiling* fine-tuned on the weak supervisor's labels, its
  accuracy falling to the target from above. The other controls train from scratch while
  every organism is fine-tuned from the ceiling; this one shares the organisms' provenance,
  so a detector cannot separate the two by where the weights came from.
"""

from __future__ import annotations

from dataclasses import asdict

import jax
import jax.numpy as jnp
import numpy as np

from sandbag import data
from sandbag import seeds as seeds_mod
from sandbag.data import answer_weights, sequences
from sandbag.decode import answers_of
from sandbag.models import ModelConfig
from sandbag.population import Population
from sandbag.redteam.organisms import finetune_config
from sandbag.schema import RunConfig
from sandbag.tasks import Items, Task
from sandbag.tasks.base import CONTEXTS
from sandbag.train import exact_match, init_population, train
from sandbag.zoo import task_key

CONTROLS = ("lower_rung", "undertrained_strong", "w2s_student", "ceiling_w2s")


def _labelled_pool(task: Task, weak, n: int, seed: int, split: str, weak_labels: bool) -> Items:
    rng = seeds_mod.rng("control_pool", seed)
    items = task.generate(rng, n, rng.choice(task.difficulties, size=n), split)
    return items.with_answers(answers_of(weak.member(0), items)[0]) if weak_labels else items


def train_control(
    cfg: RunConfig,
    task: Task,
    name: str,
    weak,
    target: float,
    context: int,
    zoo,
    seeds=None,
    strong=None,
    ceiling: int = 0,
) -> Population:
    """Seeds of one control (default ``cfg.controls.seeds`` of them), each early-stopped at the
    accuracy nearest ``target``. ``strong`` (the ceiling rung) is needed by ``ceiling_w2s``,
    which starts from its member ``ceiling``."""
    if name not in CONTROLS:
        raise KeyError(f"unknown control {name!r}; valid: {list(CONTROLS)}")
    from_ceiling = name == "ceiling_w2s"
    if from_ceiling and strong is None:
        raise ValueError("the ceiling_w2s control starts from the strong rung: pass strong=")
    block = cfg.controls
    rung = cfg.lower if name == "lower_rung" else cfg.strong
    mcfg = ModelConfig.of_rung(rung, task.vocab_size)
    tcfg = finetune_config(cfg, block)
    if seeds is None:
        seeds = seeds_mod.members("controls", cfg.seed, block.seeds)
    weak_labels = name in ("w2s_student", "ceiling_w2s")
    sign = -1.0 if from_ceiling else 1.0  # the direction accuracy moves in while it trains
    spec = {
        "kind": "control",
        "control": name,
        "model": asdict(mcfg),
        # gold labels name their task (its parameters, the token layout): a weak model's key
        # already does, through its ladder
        "labels": weak.key if weak_labels else {"gold": task_key(cfg.task, task), "format": data.FORMAT},
        "target": round(float(target), 3),
        "context": context,
        "train": asdict(tcfg),
        "eval_every": block.eval_every,
        "select": cfg.eval.n_per_level * len(task.difficulties),  # the questions it is selected on
        "stop": [block.overshoot, block.patience] + ([block.tolerance] if block.tolerance else []),
        "seeds": seeds,
        "pool": block.pool,
    }
    graphdef, start = init_population(mcfg, seeds)
    if from_ceiling:  # (only then in the spec: entries of the other controls keep their keys)
        spec["start"] = strong.key if ceiling == 0 else [strong.key, ceiling]  # (0: the keys before)
        start = jax.tree.map(
            lambda x: jnp.repeat(x[ceiling : ceiling + 1], len(seeds), axis=0), strong.params
        )

    def fit(progress):
        pool = _labelled_pool(
            task, weak, block.pool, cfg.seed, "demo" if weak_labels else "train", weak_labels
        )
        select = sequences(context, *_select_items(task, spec["select"], cfg.seed))
        size = tcfg.batch_size * tcfg.steps_per_call
        w = answer_weights(size, task).reshape(tcfg.steps_per_call, tcfg.batch_size, -1)

        def sample(m: int, chunk: int):
            r = seeds_mod.rng("control_batches", seeds[m], chunk)
            idx = r.integers(0, len(pool.prompts), size=size)
            ctx = r.choice(CONTEXTS, size=(size, 1))
            tokens = np.concatenate([ctx, pool.prompts[idx], pool.answers[idx]], axis=1).astype(np.int32)
            return tokens.reshape(tcfg.steps_per_call, tcfg.batch_size, -1), w

        best = {
            "params": jax.device_get(start),
            "gap": np.full(len(seeds), np.inf),
            "acc": np.zeros(len(seeds)),
            "stale": np.zeros(len(seeds), int),  # evaluations since a member last got closer
        }

        def on_eval(step, params):
            acc = exact_match(graphdef, params, select, task.answer_len).mean(1)
            gap = np.abs(acc - target)
            better = gap < best["gap"]
            if better.any():
                host = jax.device_get(params)
                best["params"] = jax.tree.map(
                    lambda old, new: np.where(better.reshape(-1, *[1] * (new.ndim - 1)), new, old),
                    best["params"],
                    host,
                )
                best["gap"] = np.where(better, gap, best["gap"])
                best["acc"] = np.where(better, acc, best["acc"])
            best["stale"] = np.where(better, 0, best["stale"] + 1)
            passed = sign * (acc - target) >= block.overshoot
            matched = best["gap"] <= block.tolerance if block.tolerance else False
            done = passed | matched | (best["stale"] >= block.patience)
            return bool(np.all(done))

        train(
            graphdef,
            start,
            tcfg,
            sample,
            desc=f"control {name}",
            on_eval=on_eval,
            eval_every=block.eval_every,
        )
        return best["params"], {"selection_acc": best["acc"].tolist()}

    params, key = zoo.fetch_or_train(spec, start, fit, f"control {name} (target accuracy {target:.2f})")
    return Population(graphdef, params, [name] * len(seeds), seeds, mcfg, key)


def _select_items(task: Task, n: int, seed: int):
    rng = seeds_mod.rng("control_select", seed)
    items = task.generate(rng, n, np.resize(np.asarray(task.difficulties), n), "demo")
    return items.prompts, items.answers
