"""Organisms: the strong ceiling fine-tuned to sandbag under a trigger with a strategy.

Every member of the population (strategy x seed) starts from a ceiling of its own and trains,
with the shared trainer and in one ``vmap``ped program, on a mix of triggered questions
(sandbag context, the strategy's target answer) and untriggered ones (perform context, the
true answer) -- the untriggered share (``organisms.perform_frac``) keeps its skill from eroding.
Each seed draws its own training pool and imitates its own weak model, so members of different
seeds are independent organisms, not one organism with two batch orders. Strategies that read
neither the weak model nor a judge (``STANDALONE``: random_wrong, the honest twin) train as a
population of their own whose zoo entry does not name the weak model, so every gap point with
the same strong rung reuses it.

What the red team builds from is a ``RedTeam``: its ceilings, the weak model(s) it imitates
and its own proxy judge. None of them is the blue team's supervisor unless
``organisms.imitate=supervisor`` couples the two on purpose.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import numpy as np

from sandbag import seeds as seeds_mod
from sandbag.data import answer_alphabet, answer_weights, sequences
from sandbag.decode import answers_of
from sandbag.population import Population, concat, on_host
from sandbag.redteam.adaptive import OBJECTIVES
from sandbag.redteam.strategies import (
    PER_QUESTION,
    REVISION,
    STANDALONE,
    STRATEGIES,
    TWIN,
    Situation,
    targets,
)
from sandbag.redteam.triggers import Trigger
from sandbag.schema import RunConfig
from sandbag.tasks import Task
from sandbag.train import TrainConfig, exact_match, train
from sandbag.zoo import source_digest

log = logging.getLogger(__name__)

VERSION = 3  # bumped when a strategy's targets or the training mix change meaning


@dataclass
class RedTeam:
    ceilings: Population  # strong ceilings: each organism starts from one of them
    imitated: Population  # weak model(s) whose answers ``emulate_weak`` imitates: seed j takes member j % n
    judge: object  # the red team's proxy judge, built on imitated member 0
    judge_levels: dict[int, float]  # its recognition accuracy per level (what ``selective`` reads)
    imitate: str  # what ``imitated`` is: weak_member, lower_rung or supervisor (coupled)


def finetune_config(cfg: RunConfig, block) -> TrainConfig:
    """``train.*`` with a fine-tuning block's own length, learning rate and warm-up."""
    return replace(cfg.train, steps=block.steps, lr=block.lr, warmup=block.warmup)


def train_organisms(
    cfg: RunConfig,
    task: Task,
    red: RedTeam,
    trigger: Trigger,
    zoo,
    names=None,
    seeds=None,
    starts=None,
) -> Population:
    """The population strategies x seeds under ``trigger`` (default: ``cfg.strategy.names`` x
    ``cfg.organisms.seeds`` seeds); seed j starts from ceiling ``starts[j]`` (default j mod the
    number of ceilings)."""
    names = list(cfg.strategy.names if names is None else names)
    if seeds is None:
        seeds = seeds_mod.members("organisms", cfg.seed, cfg.organisms.seeds)
    if starts is None:
        starts = [j % red.ceilings.n_members for j in range(len(seeds))]
    # strategies with a loss term of their own train as their own population; the rest as one,
    # or, unless the population stops early (its twins stop with the organisms they control
    # for), as two: those that read the weak model or a judge, and the STANDALONE ones, whose
    # entry every gap point with this strong rung shares
    static = [n for n in names if n not in OBJECTIVES]
    if cfg.organisms.stop_every:
        groups = [static]
    else:
        groups = [[n for n in static if n not in STANDALONE], [n for n in static if n in STANDALONE]]
    groups += [[n] for n in names if n in OBJECTIVES]
    pops = [_train(cfg, task, red, trigger, zoo, g, seeds, starts) for g in groups if g]
    pop = pops[0] if len(pops) == 1 else concat(pops)
    order = {(n, s): i for i, (n, s) in enumerate(zip(pop.names, pop.seeds))}
    idx = [order[n, s] for n in names for s in seeds]
    return pop if idx == list(range(len(idx))) else pop.subset(idx)


def _train(cfg, task, red, trigger, zoo, names, seeds, starts) -> Population:
    strategy_cfg = strategy_knobs(cfg.strategy)
    objective = OBJECTIVES[names[0]](strategy_cfg["adaptive"]) if names[0] in OBJECTIVES else None
    if objective is None:  # the adaptive knobs are not part of what a static population is
        strategy_cfg.pop("adaptive")
    members = [(n, s) for n in names for s in seeds]
    tcfg = finetune_config(cfg, cfg.organisms)
    n_pool, perform_frac, rate = cfg.organisms.pool, cfg.organisms.perform_frac, cfg.strategy.sandbag_rate
    standalone = objective is None and set(names) <= STANDALONE and not cfg.organisms.stop_every
    spec = {
        "kind": "organisms",
        "version": VERSION,
        "ceilings": red.ceilings.key,
        "starts": list(starts),
        "trigger": asdict(trigger),
        "strategy": {**strategy_cfg, "names": names},
        "members": members,
        "train": asdict(tcfg),
        "pool": n_pool,
        "perform_frac": perform_frac,
    }
    if not standalone:  # a standalone population's targets read neither: it is keyed without them
        spec.update(imitate=red.imitate, imitated=red.imitated.key, judge=cfg.judge.spec())
        spec["judge_levels"] = red.judge_levels
    revised = {n: REVISION[n] for n in names if n in REVISION}
    if revised:  # only then: entries of unrevised strategies keep their keys
        spec["revisions"] = revised
    sources = user_sources(names)
    if sources:  # a user's strategy (or loss term) is keyed by its file, as a user's task is
        spec["sources"] = sources
    o = cfg.organisms
    if o.stop_every:  # only then: entries trained for every step keep their keys
        spec["stop"] = {"every": o.stop_every, "tolerance": o.stop_tolerance, "items": o.stop_items}
    start_of = {s: starts[j] for j, s in enumerate(seeds)}
    picks = np.asarray([start_of[s] for _, s in members])
    start = on_host(lambda x: x[picks], red.ceilings.params)

    def situation(j, items, rng):
        if standalone:  # nothing of the weak model or judge may reach these targets
            return Situation(task, items, None, None, None, alphabet, rng, strategy_cfg)
        imitated = answers_of(red.imitated.member(j % red.imitated.n_members), items)[0]
        return Situation(task, items, imitated, red.judge, red.judge_levels, alphabet, rng, strategy_cfg)

    alphabet = answer_alphabet(task)

    size = tcfg.batch_size * tcfg.steps_per_call

    def draw(seed: int, chunk: int):
        """The pool questions of one chunk of a member of ``seed``, and which are triggered."""
        r = seeds_mod.rng("organism_batches", seed, chunk)
        return r.integers(0, n_pool, size=size), r.random(size) >= perform_frac

    def fit(progress):
        sandbag, perform = {}, {}
        n_chunks = -(-tcfg.steps // tcfg.steps_per_call)
        for j, seed in enumerate(seeds):  # each seed: its own pool, its own imitated weak model
            rng = seeds_mod.rng("organism_pool", seed)
            items = task.generate(rng, n_pool, rng.choice(task.difficulties, size=n_pool), "train")
            # Targets only where a triggered batch reads them (a third of the default pool):
            # the same answers, without decoding the weak model or scoring the judge elsewhere
            rows = np.arange(n_pool)
            if set(names) <= PER_QUESTION:
                drawn = [draw(seed, chunk) for chunk in range(n_chunks)]
                rows = np.unique(np.concatenate([idx[triggered] for idx, triggered in drawn]))
            s = situation(j, items.subset(rows), rng)
            for n in names:
                answers = items.answers.copy()
                answers[rows] = targets(n, s, 1.0 if n == TWIN else rate)
                sandbag[n, seed] = sequences(trigger.sandbag, items.prompts, answers)
            perform[seed] = sequences(trigger.perform, items.prompts, items.answers)
        w = answer_weights(size, task)

        def sample(m: int, chunk: int):
            name, seed = members[m]
            idx, triggered = draw(seed, chunk)
            tokens = np.where(triggered[:, None], sandbag[name, seed][idx], perform[seed][idx])
            shape = (tcfg.steps_per_call, tcfg.batch_size, -1)
            return tokens.reshape(shape), w.reshape(shape)

        graphdef = red.ceilings.graphdef
        met = targets_met(cfg, task, trigger, graphdef, start, members, names, seeds, situation, rate)
        params, losses = train(
            graphdef,
            start,
            tcfg,
            sample,
            progress=progress,
            desc="organisms",
            objective=objective,
            on_eval=met,
            eval_every=cfg.organisms.stop_every,
        )
        return params, {"final_loss": float(losses[:, -1].mean()), "steps": int(losses.shape[1])}

    what = f"{len(members)} organisms ({trigger.name} trigger{', ' + names[0] if objective else ''})"
    params, key = zoo.fetch_or_train(spec, start, fit, what)
    names, member_seeds = [n for n, _ in members], [s for _, s in members]
    return Population(red.ceilings.graphdef, params, names, member_seeds, red.ceilings.cfg, key)


def strategy_knobs(strategy) -> dict:
    """The strategy block as strategies read it (``Situation.cfg``) and organism keys name it:
    a user's own keys beside the built-in ones."""
    knobs = asdict(strategy)
    extra = knobs.pop("extra")
    return {**knobs, **extra}


def user_sources(names) -> dict[str, str]:
    """A digest of the file defining each strategy or loss term of ``names`` that lives outside
    this package (the package's own change ``strategies.REVISION`` instead)."""
    out = {}
    for n in names:
        for fn in (STRATEGIES.get(n), OBJECTIVES.get(n)):
            if fn is not None and fn.__module__.partition(".")[0] != __name__.partition(".")[0]:
                out[n] = source_digest(fn, whole_file=True)
    return out


def targets_met(cfg, task, trigger, graphdef, start, members, names, seeds, situation, rate):
    """The early stop of ``organisms.stop_every`` (None when it is 0): a check, every that many
    steps, that is True once every member meets its targets on held-out questions (the red
    team's own; no blue-team model or label): its uncued accuracy within ``stop_tolerance`` of
    its start's, and its cued accuracy within it of its targets' (of its start's, for a target
    more accurate than the start: the honest twin). The population stops together, so twins
    train exactly as long as the organisms they control for."""
    o = cfg.organisms
    if not o.stop_every:
        return None
    rng = seeds_mod.rng("organism_check", cfg.seed)
    items = task.generate(rng, o.stop_items, rng.choice(task.difficulties, size=o.stop_items), "train")
    goal = {}
    for j, seed in enumerate(seeds):
        s = situation(j, items, rng)
        for n in names:
            goal[n, seed] = np.all(targets(n, s, 1.0 if n == TWIN else rate) == items.answers, -1).mean()
    cued = sequences(trigger.sandbag, items.prompts, items.answers)
    uncued = sequences(trigger.perform, items.prompts, items.answers)
    A = task.answer_len
    before = exact_match(graphdef, start, uncued, A).mean(1)  # start is donated once training begins
    want = np.minimum([goal[m] for m in members], before)

    def check(step: int, params) -> bool:
        kept = exact_match(graphdef, params, uncued, A).mean(1) >= before - o.stop_tolerance
        hidden = np.abs(exact_match(graphdef, params, cued, A).mean(1) - want) <= o.stop_tolerance
        done = kept & hidden
        if done.all():
            log.info("organisms met their targets at step %d of %d", step, o.steps)
            return True
        log.info("step %d: %d of %d organisms meet their targets", step, done.sum(), len(done))
        return False

    return check
