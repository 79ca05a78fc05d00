"""Validation of a composed config, before any compute.

Every problem becomes one ``ConfigError`` whose message names the bad value and the valid
choices; ``run.main`` turns it into exit code 2.
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path

import yaml
from hydra import compose, version
from hydra._internal.hydra import Hydra
from hydra._internal.utils import create_config_search_path, get_args_parser
from hydra.core.config_search_path import SearchPathQuery
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sandbag import schema, seeds
from sandbag.detect import DETECTORS, make_detector
from sandbag.elicit import ELICITATIONS
from sandbag.pipelines import EXPERIMENTS, gap_scan
from sandbag.redteam import CONTROLS, STRATEGIES, TRIGGERS
from sandbag.schema import ConfigError, RunConfig  # ConfigError lives below the pipelines
from sandbag.supervision import JUDGES
from sandbag.tasks import TASKS, Task, import_module, make_task
from sandbag.zoo import Zoo, ZooError

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR.parent / "conf"
# Hydra's options (attributes of its parsed argv) that print something instead of running a job.
PASS_THROUGH = ("help", "hydra_help", "cfg", "info", "shell_completion", "experimental_rerun")


def import_plugins(plugins) -> None:
    """Import a user's modules or ``.py`` files (``plugins=[...]``) so their detectors,
    strategies, judges and elicitation methods register before any name is checked."""
    for spec in plugins or []:
        try:
            import_module(str(spec))
        except Exception as e:  # noqa: BLE001 - a user's module failing to import is bad input
            raise ConfigError(f"plugin {spec!r} could not be imported: {e}") from None


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
    """Check everything a run depends on; return the task it will use. An unusable zoo
    directory is refused here, before any compute (a read-only one is not: it may serve)."""
    task = load(cfg)[1]
    try:
        Zoo(cfg.zoo.dir)
    except ZooError as e:
        raise ConfigError(str(e)) from None
    return task


def load(cfg: DictConfig) -> tuple[RunConfig, Task]:
    """The typed config and the task of a composed config, or one ConfigError."""
    if cfg.get("experiment") not in EXPERIMENTS:
        names = ", ".join(sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml")))
        what = (
            "no experiment chosen"
            if cfg.get("experiment") is None
            else f"unknown experiment {cfg.experiment!r}"
        )
        raise ConfigError(f"{what}; add +experiment=NAME with NAME one of: {names}")
    import_plugins(cfg.get("plugins"))
    devices = cfg.get("cpu_devices", "auto")
    whole = isinstance(devices, int) and not isinstance(devices, bool)
    if devices != "auto" and not (whole and devices >= 1):
        raise ConfigError(f"cpu_devices={devices!r}: must be auto or a whole number of devices, 1 or more")
    try:
        run = schema.build(cfg)
    except schema.SchemaError as e:
        raise ConfigError(str(e)) from None
    task = make_configured_task(cfg.task)
    for role in ("weak", "strong", "lower"):
        rung = run.rung(role)
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
    _check_seed_counts(run)
    if run.experiment != "capability_ladder":
        _validate_teams(run)
    return run, task


def _names(where: str, names, registry) -> None:
    for name in [names] if isinstance(names, str) else names:
        if name not in registry:
            raise ConfigError(f"unknown {where} {name!r}; valid: {', '.join(sorted(registry))}")


# every count of members and the block of member seeds it draws from (sandbag/seeds.py)
SEED_COUNTS = (
    ("ladder_seeds", "ladder"),
    ("scan.seeds", "ladder"),
    ("organisms.seeds", "organisms"),
    ("bakeoff.seeds", "organisms"),
    ("elicitation.seeds", "organisms"),
    ("controls.seeds", "controls"),
    ("bakeoff.control_seeds", "bakeoff_controls"),
    ("bakeoff.reference_seeds", "reference_organisms"),
    ("bakeoff.reference_seeds", "reference_controls"),
)


def _check_seed_counts(run: RunConfig) -> None:
    for key, role in SEED_COUNTS:
        n, most = operator.attrgetter(key)(run), seeds.capacity(role)
        if n > most:
            raise ConfigError(
                f"{key}={n}: at most {most} (the {role} members' block of seeds, sandbag/seeds.py)"
            )


def _validate_teams(run: RunConfig) -> None:
    """Every name a team will look up is registered; the red team has a weak model of its own."""
    _names("judge", run.judge.name, JUDGES)
    _names("trigger", run.trigger.name, TRIGGERS)
    if not run.strategy.names:
        raise ConfigError(
            f"strategy.names must list at least one strategy; valid: {', '.join(sorted(STRATEGIES))}"
        )
    _names("strategy", run.strategy.names, STRATEGIES)
    _names("control", run.controls.names, CONTROLS)
    if run.organisms.imitate == "weak_member" and run.ladder_seeds < 2:
        raise ConfigError(
            "organisms.imitate=weak_member needs a weak model of the red team's own beside the blue "
            f"team's supervisor: ladder_seeds must be >= 2, got {run.ladder_seeds} (or choose "
            "organisms.imitate=lower_rung, or supervisor to couple the two)"
        )
    if run.organisms.imitate == "lower_rung" and run.rung("lower") == run.rung("weak"):
        raise ConfigError(
            f"organisms.imitate=lower_rung: the lower rung is the weak rung ({run.weak.name}), whose "
            "zoo entry holds the blue team's supervisor; choose another model@lower, or "
            "organisms.imitate=weak_member (supervisor to couple the two)"
        )
    if run.experiment in ("detector_bakeoff", "gap_point"):
        b = run.bakeoff
        _names("bakeoff.triggers", [*b.triggers, b.reference_trigger], TRIGGERS)
        _names("bakeoff.reference_strategies", b.reference_strategies, STRATEGIES)
        _names("bakeoff.controls", [*b.controls, *b.reference_controls], CONTROLS)
        if not run.detectors:
            raise ConfigError(
                "no detector selected; pick some with detector=[noise_injection,linear_probe,...]"
            )
        _names("detector", list(run.detectors), DETECTORS)
        if not b.triggers:
            raise ConfigError(
                f"bakeoff.triggers must list at least one trigger; valid: {', '.join(sorted(TRIGGERS))}"
            )
        for name, block in run.detectors.items():
            try:
                needed = make_detector(name, dict(block or {})).gold_needed
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"detectors.{name}: {e}") from None
            if needed > b.gold:
                raise ConfigError(
                    f"detector {name} reads {needed} verified items but bakeoff.gold={b.gold}; "
                    f"raise bakeoff.gold to {needed} or lower the detector's own"
                )
    _names("controls.match", run.controls.match, STRATEGIES)
    if run.experiment == "supervisor_sweep":
        rungs = gap_scan.find_rungs(gap_scan.config_dirs())
        if not run.supervisors:
            raise ConfigError(f"supervisors must list at least one rung; valid: {', '.join(sorted(rungs))}")
        _names("supervisor rung", run.supervisors, rungs)
        if run.strong.name in run.supervisors:
            raise ConfigError(
                f"supervisors: {run.strong.name} is the strong rung, whose member 0 is the organisms' own "
                "ceiling; choose supervisors below it"
            )
        if run.organisms.imitate == "lower_rung" and run.lower.name in run.supervisors:
            raise ConfigError(
                f"supervisors: {run.lower.name} is the lower rung the organisms imitate under "
                "organisms.imitate=lower_rung (one zoo entry); leave it out, or choose another model@lower"
            )
    if run.experiment in ("elicitation", "gap_point", "supervisor_sweep"):
        k = run.elicitation
        _names("elicitation method", k.methods, ELICITATIONS)
        _names("elicitation.trigger", k.trigger, TRIGGERS)
        _names("elicitation.strategy", k.strategy, STRATEGIES)


def check_argv(argv: list[str], conf_dir: str) -> None:
    """Compose and validate the config(s) a command line asks for, without running anything.

    The command line is read by Hydra's own parser, so its options (``--config-dir``,
    ``--config-name``, ...) mean here what they will mean to Hydra. For a sweep, every value of
    every swept override is checked (others at their first value).
    """
    parser = get_args_parser()
    parser.error = _usage_error
    args = parser.parse_args(argv)
    if any(getattr(args, name) for name in PASS_THROUGH):
        return
    if args.config_dir is not None and not os.path.isdir(args.config_dir):
        raise ConfigError(f"--config-dir {args.config_dir!r} is not a directory")
    try:
        parsed = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as e:
        raise ConfigError(_one_line(f"could not parse the command line: {e}")) from None
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
    primary = os.path.join(PACKAGE_DIR, args.config_path or conf_dir)  # relative to run.py, as Hydra
    name = args.config_name or "config"
    # a sweep the config itself declares (gap_sweep's gap: ${sweep_gaps}): every value too,
    # unless the command line sets that key (it wins over the config's, as in Hydra's sweeper)
    swept = {o.get_key_element() for o in parsed}
    for key, values in _config_sweeps(base, primary, name, args.config_dir, swept):
        variants += [[*base, f"{key}={v}"] for v in values]
    for variant in variants:
        validate(_compose(variant, primary, name, args.config_dir))


def _config_sweeps(base, conf_dir, config_name, config_dir, swept) -> list[tuple[str, list[str]]]:
    """The ``hydra.sweeper.params`` of the composed config not swept on the command line."""
    cfg = _compose(base, conf_dir, config_name, config_dir, hydra=True)
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    out = []
    for key in params:
        if key not in swept:
            try:
                value = OmegaConf.select(cfg, f"hydra.sweeper.params.{key}")
            except OmegaConfBaseException:  # resolved only inside Hydra's app: each job checks itself
                continue
            out.append((key, [v.strip() for v in str(value).split(",")]))
    return out


def _usage_error(message: str):
    """Hydra's usage error as one line (argparse would print the whole usage first)."""
    words = message.removeprefix("unrecognized arguments: ").split()
    if message.startswith("unrecognized") and not all(w.startswith("-") for w in words):
        # argparse reads the overrides as one run of words: an option between them splits it.
        message += "; put Hydra's options (-m, -cd DIR, ...) before or after all the overrides"
    raise ConfigError(message)


def _one_line(message: str) -> str:
    """Hydra's missing-option error as one line: the bad value and the valid choices (from every
    config source: this package's groups, a user's search path, Hydra's own and its plugins')."""
    missing = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", message)
    if missing:
        group, value = missing.groups()
        valid = ", ".join(sorted(GlobalHydra.instance().config_loader().get_group_options(group)))
        return f"unknown {group} {value!r}; valid: {valid}"
    return " ".join(message.split("\nConfig search path")[0].split())


def _yaml_line(e: yaml.YAMLError) -> str:
    """A YAML syntax error as ``file:line: problem``."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f"{mark.name}:{mark.line + 1}" if mark else "a config file"
    return f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}"


def _compose(
    overrides: list[str], conf_dir: str, config_name: str, config_dir: str | None, hydra: bool = False
) -> DictConfig:
    """The config Hydra will compose: the same search path as ``hydra.main`` builds, with
    ``--config-dir`` where Hydra puts it (``hydra``: with Hydra's own node)."""
    GlobalHydra.instance().clear()
    version.setbase("1.3")
    search_path = create_config_search_path(search_path_dir=conf_dir)
    if config_dir is not None:
        where = f"file://{os.path.abspath(config_dir)}"
        search_path.prepend("command-line", where, anchor=SearchPathQuery(provider="schema"))
    try:
        Hydra.create_main_hydra2(task_name="run", config_search_path=search_path)
        return compose(config_name, overrides=overrides, return_hydra_config=hydra)
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_one_line(str(e))) from None
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_line(e)) from None
    finally:
        GlobalHydra.instance().clear()
