"""Validation of a composed config, before any compute.

Every problem becomes one ``ConfigError`` whose message names the bad value and the valid
choices; ``run.main`` turns it into exit code 2.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sandbag.tasks import TASKS, Task, import_module, make_task

PASS_THROUGH = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}


class ConfigError(ValueError):
    """Bad user input: reported as one message and exit code 2."""


def _positive(value, where: str, kind=int) -> None:
    if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where} must be a positive {kind.__name__}, got {value!r}")


def make_configured_task(task_cfg: DictConfig) -> Task:
    spec = OmegaConf.to_container(task_cfg, resolve=True)
    name, module = spec.pop("name", None), spec.pop("module", None)
    if module:
        try:
            import_module(module)
        except Exception as e:  # noqa: BLE001 - a user's module failing to import is bad input
            raise ConfigError(f"task module {module!r} could not be imported: {e}") from None
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; valid: {', '.join(sorted(TASKS))}")
    try:
        return make_task(name, **spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"task {name!r}: {e}") from None


def validate(cfg: DictConfig) -> Task:
    """Check everything a run depends on; return the task it will use."""
    from sandbag.pipelines import EXPERIMENTS

    if cfg.get("experiment") not in EXPERIMENTS:
        raise ConfigError(
            f"unknown or missing experiment {cfg.get('experiment')!r}; "
            f"choose one with +experiment=NAME, valid: {', '.join(EXPERIMENTS)}"
        )
    task = make_configured_task(cfg.task)
    for role in ("weak", "strong", "lower"):
        rung = cfg[role]
        for field in ("n_layers", "d_model", "n_heads", "mlp_ratio", "max_len"):
            _positive(rung.get(field), f"{role}.{field} (rung {rung.get('name')!r})")
        if rung.d_model % rung.n_heads:
            raise ConfigError(
                f"{role}.d_model={rung.d_model} is not divisible by {role}.n_heads={rung.n_heads}"
            )
        if task.seq_len > rung.max_len:
            raise ConfigError(
                f"task {task.name!r} at difficulty up to {max(task.difficulties)} needs a context of "
                f"{task.seq_len} tokens, but {role} rung {rung.name!r} has max_len={rung.max_len}; "
                f"lower the task's size or raise {role}.max_len"
            )
    for field in ("steps", "batch_size", "steps_per_call", "save_every"):
        _positive(cfg.train.get(field), f"train.{field}")
    _positive(float(cfg.train.lr), "train.lr", float)
    _positive(cfg.eval.get("n_per_level"), "eval.n_per_level")
    _positive(cfg.get("ladder_seeds"), "ladder_seeds")
    if cfg.experiment != "capability_ladder":
        _validate_teams(cfg)
    seed = cfg.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    return task


def _validate_teams(cfg: DictConfig) -> None:
    from sandbag.pipelines.organisms import IMITATE
    from sandbag.redteam import CONTROLS, STRATEGIES, TRIGGERS
    from sandbag.supervision import JUDGES

    for group, name, valid in (
        ("judge", cfg.judge.get("name"), JUDGES),
        ("trigger", cfg.trigger.get("name"), TRIGGERS),
    ):
        if name not in valid:
            raise ConfigError(f"unknown {group} {name!r}; valid: {', '.join(sorted(valid))}")
    names = list(cfg.strategy.get("names") or [])
    if not names:
        valid = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"strategy.names must list at least one strategy; valid: {valid}")
    for name in names:
        if name not in STRATEGIES:
            raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(sorted(STRATEGIES))}")
    target = cfg.strategy.get("target")
    if not isinstance(target, (int, float)) or not 0.0 <= target <= 1.0:
        raise ConfigError(f"strategy.target must be an accuracy in [0, 1], got {target!r}")
    for name in cfg.controls.names:
        if name not in CONTROLS:
            raise ConfigError(f"unknown control {name!r}; valid: {', '.join(CONTROLS)}")
    for block, fields in (
        ("organisms", ("seeds", "steps", "warmup", "pool")),
        ("controls", ("seeds", "steps", "warmup", "eval_every", "pool", "patience")),
        ("verifier", ("steps", "pool")),
    ):
        for field in fields:
            _positive(cfg[block].get(field), f"{block}.{field}")
    for block in ("organisms", "controls"):
        _positive(float(cfg[block].lr), f"{block}.lr", float)
    imitate = cfg.organisms.get("imitate")
    if imitate not in IMITATE:
        raise ConfigError(f"unknown organisms.imitate {imitate!r}; valid: {', '.join(IMITATE)}")
    if imitate == "weak_member" and cfg.ladder_seeds < 2:
        raise ConfigError(
            "organisms.imitate=weak_member needs a weak model of the red team's own beside the blue "
            f"team's supervisor: ladder_seeds must be >= 2, got {cfg.ladder_seeds} (or choose "
            "organisms.imitate=lower_rung, or supervisor to couple the two)"
        )
    rate = cfg.strategy.get("sandbag_rate", 1.0)
    if not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
        raise ConfigError(f"strategy.sandbag_rate must be a fraction in (0, 1], got {rate!r}")
    frac = cfg.organisms.get("perform_frac")
    if not isinstance(frac, (int, float)) or not 0.0 < frac < 1.0:
        raise ConfigError(f"organisms.perform_frac must be a fraction in (0, 1), got {frac!r}")
    if cfg.experiment in ("detector_bakeoff", "gap_point"):
        _validate_bakeoff(cfg, STRATEGIES, TRIGGERS, CONTROLS)
    if cfg.experiment in ("elicitation", "gap_point"):
        _validate_elicitation(cfg, STRATEGIES, TRIGGERS)


def _validate_elicitation(cfg: DictConfig, strategies, triggers) -> None:
    from sandbag.elicit import ELICITATIONS

    k = cfg.elicitation
    for name in k.methods:
        if name not in ELICITATIONS:
            raise ConfigError(
                f"unknown elicitation method {name!r}; valid: {', '.join(sorted(ELICITATIONS))}"
            )
    if k.trigger not in triggers:
        raise ConfigError(f"unknown elicitation.trigger {k.trigger!r}; valid: {', '.join(sorted(triggers))}")
    if k.strategy not in strategies:
        raise ConfigError(
            f"unknown elicitation.strategy {k.strategy!r}; valid: {', '.join(sorted(strategies))}"
        )
    d = k.distinguishable
    if not (isinstance(d, bool) or (not isinstance(d, str) and all(isinstance(v, bool) for v in d))):
        raise ConfigError(f"elicitation.distinguishable must be true, false or [false, true], got {d!r}")
    for field in (
        "seeds",
        "n_demos",
        "sft_steps",
        "sft_short_steps",
        "n_gold",
        "gold_steps",
        "rl_steps",
        "rl_batch",
        "rl_k",
        "eval_every",
        "w2s_steps",
    ):
        _positive(k.get(field), f"elicitation.{field}")


def _validate_bakeoff(cfg: DictConfig, strategies, triggers, controls) -> None:
    b = cfg.bakeoff
    for key, valid in (
        ("triggers", triggers),
        ("reference_strategies", strategies),
        ("controls", controls),
        ("reference_controls", controls),
    ):
        for name in b[key]:
            if name not in valid:
                raise ConfigError(f"bakeoff.{key}: unknown {name!r}; valid: {', '.join(sorted(valid))}")
    if b.reference_trigger not in triggers:
        raise ConfigError(
            f"unknown bakeoff.reference_trigger {b.reference_trigger!r}; valid: {', '.join(triggers)}"
        )
    for field in ("seeds", "control_seeds", "reference_seeds", "reference_ceilings", "gold"):
        _positive(b.get(field), f"bakeoff.{field}")
    if not cfg.get("detectors"):
        raise ConfigError("no detector selected; pick some with detector=[noise_injection,linear_probe,...]")


def check_argv(argv: list[str], conf_dir: str) -> None:
    """Compose and validate the config(s) a command line asks for, without running anything.

    For a sweep, every value of every swept override is checked (others at their first value).
    """
    if any(a.split("=")[0] in PASS_THROUGH for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"could not parse the command line: {e}") from None
    base, sweeps = [], []
    for o in parsed:
        if o.is_sweep_override():
            values = list(o.sweep_string_iterator())
            base.append(f"{o.get_key_element()}={values[0]}")
            sweeps.append((len(base) - 1, o.get_key_element(), values[1:]))
        else:
            base.append(o.input_line)
    variants = [base] + [
        base[:i] + [f"{key}={v}"] + base[i + 1 :] for i, key, values in sweeps for v in values
    ]
    for variant in variants:
        validate(_compose(variant, conf_dir))


def _one_line(message: str, conf_dir: str) -> str:
    """Hydra's missing-option error as one line: the bad value and the valid choices."""
    missing = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", message)
    if missing:
        group, value = missing.groups()
        valid = ", ".join(sorted(p.stem for p in Path(conf_dir, group).glob("*.yaml")))
        return f"unknown {group} {value!r}; valid: {valid}"
    return message.split("\nConfig search path")[0].strip()


def _compose(overrides: list[str], conf_dir: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            return compose("config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(str(e), conf_dir)) from None
    finally:
        GlobalHydra.instance().clear()
