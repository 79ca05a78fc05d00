"""The typed configuration of a run, built once from the composed Hydra config.

Each stage reads a frozen dataclass (``RunConfig.organisms``, ``.bakeoff``, ...) whose fields
mirror the YAML keys, so ``cfg.organisms.steps`` is an ``int`` everywhere downstream: no
casts, no ``.get`` with a default in a team. The types and ranges written here *are* the
validation: ``build`` checks every field against them and reports the first bad value as one
``SchemaError`` naming the key, what it got and what is valid. Names that must be registered
(strategies, detectors, ...) are checked against their registries by ``sandbag.config``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from sandbag.train import TrainConfig

IMITATE = ("weak_member", "lower_rung", "supervisor")
W2S_STARTS = ("scratch", "easy_levels")


class ConfigError(ValueError):
    """Bad user input: reported as one message and exit code 2 (``sandbag.run``). Defined in the
    engine, re-exported by ``sandbag.config``, so a pipeline can refuse a run too (a ladder
    with no capability gap) without importing the layer above it."""


class SchemaError(ValueError):
    """A value of the composed config has the wrong type or range."""


def _check(ok, adjective: str = "", interval: str = "") -> dict:
    return {"check": (ok, adjective, interval)}


POSITIVE = _check(lambda v: v > 0, adjective="positive")
NON_NEGATIVE = _check(lambda v: v >= 0, adjective="non-negative")
FRACTION = _check(lambda v: 0.0 <= v <= 1.0, interval="[0, 1]")
OPEN_FRACTION = _check(lambda v: 0.0 < v < 1.0, interval="(0, 1)")
RATE = _check(lambda v: 0.0 < v <= 1.0, interval="(0, 1]")


def one_of(*choices: str) -> dict:
    return {"choices": choices}


@dataclass(frozen=True)
class Rung:
    """One rung of the capability ladder (``conf/model/*.yaml``)."""

    name: str
    n_layers: int = field(metadata=POSITIVE)
    d_model: int = field(metadata=POSITIVE)
    n_heads: int = field(metadata=POSITIVE)
    mlp_ratio: int = field(metadata=POSITIVE)
    max_len: int = field(metadata=POSITIVE)
    lr: float | None = field(default=None, metadata=POSITIVE)  # overrides train.lr for this rung


@dataclass(frozen=True)
class Eval:
    n_per_level: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class Judge:
    name: str
    steps: int = field(default=0, metadata=NON_NEGATIVE)  # the verifier's training
    batch_size: int = field(default=0, metadata=NON_NEGATIVE)
    lr: float = field(default=0.0, metadata=NON_NEGATIVE)
    pool: int = field(default=0, metadata=NON_NEGATIVE)
    recognition: float = field(default=0.0, metadata=FRACTION)  # partial_oracle: the share it verifies
    extra: dict = field(default_factory=dict)  # a user's own keys (see _build)

    def spec(self) -> dict:
        """What a zoo entry trained against this judge records of it: ``recognition`` only for
        the judge that reads it, a user's own keys only where there are some, so entries
        trained against the others keep their keys."""
        out = dataclasses.asdict(self)
        if self.name != "partial_oracle":
            out.pop("recognition")
        if not out["extra"]:
            out.pop("extra")
        return out


@dataclass(frozen=True)
class Trigger:
    name: str


@dataclass(frozen=True)
class Adaptive:
    """The loss terms of the adaptive strategies (``sandbag/redteam/adaptive.py``)."""

    evasion_weight: float = field(default=1.0, metadata=NON_NEGATIVE)  # probe_evasion
    noise_weight: float = field(default=1.0, metadata=NON_NEGATIVE)  # noise_robust
    noise_sigmas: list[float] = field(default_factory=lambda: [0.001, 0.002, 0.004, 0.008, 0.016, 0.032])


@dataclass(frozen=True)
class Strategy:
    names: list[str]
    target: float = field(default=0.5, metadata=FRACTION)
    selective_threshold: float = field(default=0.75, metadata=FRACTION)
    sandbag_rate: float = field(default=1.0, metadata=RATE)
    adaptive: Adaptive = field(default_factory=Adaptive)
    extra: dict = field(default_factory=dict)  # a user's own keys (see _build)


@dataclass(frozen=True)
class Organisms:
    imitate: str = field(metadata=one_of(*IMITATE))
    seeds: int = field(metadata=POSITIVE)
    steps: int = field(metadata=POSITIVE)
    lr: float = field(metadata=POSITIVE)
    warmup: int = field(metadata=NON_NEGATIVE)
    perform_frac: float = field(metadata=OPEN_FRACTION)
    pool: int = field(metadata=POSITIVE)
    # Stop early once every member meets its targets on held-out questions, checked every
    # ``stop_every`` steps (0: never; train all ``steps``): uncued accuracy within
    # ``stop_tolerance`` of its start's, cued accuracy within it of its targets'.
    stop_every: int = field(default=0, metadata=NON_NEGATIVE)
    stop_tolerance: float = field(default=0.05, metadata=OPEN_FRACTION)
    stop_items: int = field(default=512, metadata=POSITIVE)


@dataclass(frozen=True)
class Controls:
    names: list[str]
    match: str
    seeds: int = field(metadata=POSITIVE)
    steps: int = field(metadata=POSITIVE)
    lr: float = field(metadata=POSITIVE)
    warmup: int = field(metadata=NON_NEGATIVE)
    eval_every: int = field(metadata=POSITIVE)
    overshoot: float = field(metadata=NON_NEGATIVE)
    patience: int = field(metadata=POSITIVE)
    pool: int = field(metadata=POSITIVE)
    tolerance: float = field(metadata=NON_NEGATIVE)  # 0: no stop on a match


@dataclass(frozen=True)
class Verifier:
    steps: int = field(metadata=POSITIVE)
    pool: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class Bakeoff:
    triggers: list[str]
    seeds: int = field(metadata=POSITIVE)
    controls: list[str]
    control_seeds: int = field(metadata=POSITIVE)
    reference_trigger: str
    reference_strategies: list[str]
    reference_controls: list[str]
    reference_seeds: int = field(metadata=POSITIVE)
    reference_ceilings: int = field(metadata=POSITIVE)
    gold: int = field(metadata=POSITIVE)


@dataclass(frozen=True)
class Elicitation:
    methods: list[str]
    distinguishable: list[bool]  # which settings run: training looks like deployment, or not
    trigger: str
    strategy: str
    seeds: int = field(metadata=POSITIVE)
    n_demos: int = field(metadata=POSITIVE)
    sft_steps: int = field(metadata=POSITIVE)
    sft_short_steps: int = field(metadata=POSITIVE)
    sft_lr: float = field(metadata=POSITIVE)
    n_gold: int = field(metadata=POSITIVE)
    gold_steps: int = field(metadata=POSITIVE)
    rl_steps: int = field(metadata=POSITIVE)
    rl_batch: int = field(metadata=POSITIVE)
    rl_k: int = field(metadata=POSITIVE)
    rl_lr: float = field(metadata=POSITIVE)
    temperature: float = field(metadata=POSITIVE)
    kl: float = field(metadata=NON_NEGATIVE)
    eval_every: int = field(metadata=POSITIVE)
    w2s_steps: int = field(metadata=POSITIVE)
    confidence_alpha: float = field(metadata=FRACTION)
    confidence_warmup: float = field(metadata=POSITIVE)
    # weak-to-strong students start from scratch, or from the strong rung trained on the ground
    # truth of the easiest half of the levels (latent skill, none of the weak labels' questions)
    w2s_start: str = field(default="scratch", metadata=one_of(*W2S_STARTS))
    extra: dict = field(default_factory=dict)  # a user's own keys (see _build)


@dataclass(frozen=True)
class Logger:
    name: str = field(metadata=one_of("wandb", "none"))
    project: str = "sandbag"
    mode: str = field(default="offline", metadata=one_of("online", "offline", "disabled"))
    run_name: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class Scan:
    """``+experiment=gap_scan``: seeds per rung, and the largest rung (parameters, for the task's
    vocabulary) worth training at this scale; None scans every rung of ``conf/model/``."""

    seeds: int = field(metadata=POSITIVE)
    max_params: int | None = field(default=None, metadata=POSITIVE)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run reads, typed. ``task`` and ``detectors`` stay plain dicts: their keys
    belong to a task's constructor and to each detector's own config block."""

    experiment: str
    seed: int = field(metadata=NON_NEGATIVE)
    task: dict
    weak: Rung
    strong: Rung
    lower: Rung
    judge: Judge
    trigger: Trigger
    strategy: Strategy
    train: TrainConfig
    eval: Eval
    ladder_seeds: int = field(metadata=POSITIVE)
    organisms: Organisms
    controls: Controls
    verifier: Verifier
    bakeoff: Bakeoff
    elicitation: Elicitation
    logger: Logger
    scan: Scan
    min_gap: float = field(metadata=FRACTION)  # the ``gap_max`` later stages need (sandbag.criteria)
    allow_small_gap: bool = False  # go on past the ladder when its gap_max is below min_gap
    # the rungs whose member 0 supervises in turn (+experiment=supervisor_sweep)
    supervisors: list[str] = field(default_factory=lambda: ["nano", "tiny", "small"])
    detectors: dict = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)  # a user's modules or .py files, imported first

    def rung(self, role: str) -> Rung:
        """``weak``, ``strong`` or ``lower``."""
        return getattr(self, role)


TRAIN_CHECKS = {
    "steps": POSITIVE,
    "batch_size": POSITIVE,
    "lr": POSITIVE,
    "warmup": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "clip": POSITIVE,
    "steps_per_call": POSITIVE,
    "save_every": POSITIVE,
}


def build(cfg: DictConfig | dict) -> RunConfig:
    """The typed config of ``cfg`` (a composed Hydra config); SchemaError on the first bad value."""
    node = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    return _build(RunConfig, node, "")


def rung(node: DictConfig | dict, where: str) -> Rung:
    """A rung read from its own YAML (``conf/model/NAME.yaml``); ``where`` prefixes the error."""
    node = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    return _build(Rung, node, where)


def _build(cls, node, where: str):
    if not isinstance(node, dict):
        raise SchemaError(f"{where.rstrip('.') or 'the config'} must be a mapping, got {node!r}")
    hints = typing.get_type_hints(cls)
    values = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if "extra" in names:  # a block a user's strategy, judge or method may add keys to: kept, untyped
        values["extra"] = {k: v for k, v in node.items() if k not in names}
        names.discard("extra")
    for f in dataclasses.fields(cls):
        if f.name == "extra" and "extra" in values:
            continue
        key = where + f.name
        if f.name not in node:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise SchemaError(f"{key} is missing")
        meta = TRAIN_CHECKS.get(f.name, {}) if cls is TrainConfig else f.metadata
        values[f.name] = _value(hints[f.name], node[f.name], key, meta)
    return cls(**values)


def _value(kind, value, key: str, meta):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None:
            return None
        kind = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, key + ".")
    if origin is list:
        items = value if isinstance(value, list) else [value]  # `distinguishable: false` means [false]
        return [_value(args[0], v, f"{key}[{i}]", {}) for i, v in enumerate(items)]
    if kind is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{key} must be a mapping, got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise SchemaError(f"{key} must be a name, got {value!r}")
        choices = meta.get("choices")
        if choices and value not in choices:
            raise SchemaError(f"{key}: unknown {value!r}; valid: {', '.join(choices)}")
        return value
    number = kind is float and isinstance(value, int) or isinstance(value, kind)
    ok, adjective, interval = meta.get("check", (lambda v: True, "", ""))
    infinite = isinstance(value, float) and not math.isfinite(value)
    if isinstance(value, bool) or not number or infinite or not ok(value):
        noun = "integer" if kind is int else "number"
        what = f"a {adjective} {noun}" if adjective else f"a {noun}"
        if interval:
            what += f" in {interval}"
        raise SchemaError(f"{key} must be {what}, got {value!r}")
    return kind(value)
