"""The capability-gap scan and the small-gap stop: which (weak, strong) pairs a user can run a
task at, and a ladder without a gap never silently feeding organisms that have nothing to hide.

The criteria and the pair list are pure functions, tested on synthetic accuracy tables; the
CLI tests check the mechanics at scale=smoke, where nothing is learned."""

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import ADDITION, SMALL_RUNGS, TESTS_DIR, results_of, run_cli
from hydra import compose, initialize_config_dir

from sandbag import criteria, report
from sandbag.config import ConfigError, load
from sandbag.criteria import scan_pairs
from sandbag.pipelines import gap_scan, ladder
from sandbag.run import CONF_DIR
from sandbag.tasks import make_task

# Measured by capability_ladder on multiplication at scale=cpu (README): a clean gap.
TINY = [0.94, 0.16, 0.03, 0.00]
MEDIUM = [1.00, 0.86, 0.71, 0.08]
# The k-digit-times-one-digit task: one layer learns it, no gap at any pair.
ONE_LAYER = [1.00, 0.98, 0.94, 0.91, 0.86]


def seeds_of(curve, jitter=0.02):
    """Two seeds of a curve, ``jitter`` apart at every level."""
    c = np.asarray(curve)
    return np.stack([c, np.clip(c - jitter, 0, 1)])


def passing(pairs):
    return [(p.weak, p.strong) for p in pairs if p.passes]


def test_the_measured_multiplication_ladder_meets_every_criterion():
    checks = criteria.ladder_checks(TINY, MEDIUM)
    assert all(ok for _, ok, _ in checks), checks
    assert checks[2][2] == "max gap 0.70"


@pytest.mark.parametrize(
    "weak, strong, failing",
    [
        ([0.85, 0.16, 0.03, 0.00], MEDIUM, 0),  # the weak supervisor is not competent on easy items
        ([0.94, 0.55, 0.45, 0.35], [1.0, 1.0, 1.0, 1.0], 1),  # the weak rung can do the hardest items
        (TINY, [1.00, 0.70, 0.40, 0.05], 2),  # no level with a gap of 0.6
        (TINY, [1.00, 0.86, 0.71, 0.80], 3),  # the strong rung's accuracy rises with difficulty
    ],
)
def test_each_ladder_criterion_fails_on_its_own(weak, strong, failing):
    oks = [ok for _, ok, _ in criteria.ladder_checks(weak, strong)]
    assert oks == [i != failing for i in range(4)]


def test_a_lottery_weak_rung_fails_stability_alone():
    """Eight-operand addition's one-layer rung: 0.16 or 0.99 on one operand, by seed."""
    weak = np.array([[0.99, 0.20, 0.10, 0.05], [0.91, 0.12, 0.02, 0.00]])
    assert criteria.stability_check(weak)[1]
    lottery = np.array([[0.99, 0.45, 0.10, 0.01], [0.95, 0.15, 0.02, 0.00]])
    assert not criteria.stability_check(lottery)[1]
    strong = seeds_of(MEDIUM)
    checks = scan_pairs({"tiny": lottery, "medium": strong})[0].checks
    assert [ok for _, ok, _ in checks] == [True, True, True, True, False]


def test_a_clean_gap_lists_its_pair_and_only_it():
    accs = {
        "nano": seeds_of([0.60, 0.05, 0.00, 0.00]),
        "tiny": seeds_of(TINY),
        "medium": seeds_of(MEDIUM),
    }
    pairs = scan_pairs(accs)
    assert [(p.weak, p.strong) for p in pairs] == [("nano", "tiny"), ("nano", "medium"), ("tiny", "medium")]
    assert passing(pairs) == [("tiny", "medium")]
    tm = pairs[2]
    assert tm.gap_max == pytest.approx(0.70, abs=1e-9) and tm.level == 1
    assert tm.gap == pytest.approx(np.mean(accs["medium"].mean(0) - accs["tiny"].mean(0)))


def test_a_task_one_layer_learns_lists_no_pair():
    accs = {
        "nano": seeds_of([0.98, 0.90, 0.80, 0.70, 0.60]),
        "tiny": seeds_of(ONE_LAYER),
        "small": seeds_of([1.0] * 5),
        "medium": seeds_of([1.0] * 5),
    }
    assert passing(scan_pairs(accs)) == []


def test_min_gap_is_the_scan_threshold_too():
    accs = {"tiny": seeds_of(TINY), "medium": seeds_of(MEDIUM)}
    assert passing(scan_pairs(accs, min_gap=0.75)) == []


def test_a_new_rung_is_one_yaml_on_the_search_path(tmp_path):
    user = tmp_path / "my_conf"
    (user / "model").mkdir(parents=True)
    (user / "model" / "micro.yaml").write_text(
        "name: micro\nn_layers: 1\nd_model: 8\nn_heads: 2\nmlp_ratio: 4\nmax_len: 64\n"
    )
    (user / "model" / "tiny.yaml").write_text("name: tiny\nn_layers: 9\n")  # shadowed: conf/ comes first
    rungs = gap_scan.find_rungs([Path(CONF_DIR), user])
    assert {"nano", "tiny", "small", "medium", "base", "large", "micro"} <= set(rungs)
    assert rungs["micro"].d_model == 8 and rungs["tiny"].n_layers == 1
    task = make_task("addition", slots=3, digits=2)
    assert gap_scan.n_params(rungs["micro"], task) < gap_scan.n_params(rungs["nano"], task)


def typed(*overrides: str, conf: str = CONF_DIR):
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        return load(compose("config", overrides=[*overrides, "logger=none"]))


def test_the_scan_excludes_rungs_too_costly_for_the_scale():
    cfg, task = typed("+experiment=gap_scan")  # scale=cpu: nano to medium
    names = list(gap_scan.scanned(cfg, task, gap_scan.find_rungs([Path(CONF_DIR)])))
    assert names == ["nano", "tiny", "small", "medium"]
    cfg, task = typed("+experiment=gap_scan", "scale=gpu")
    assert len(gap_scan.scanned(cfg, task, gap_scan.find_rungs([Path(CONF_DIR)]))) == 6
    cfg, task = typed("+experiment=gap_scan", "scan.max_params=10000")
    with pytest.raises(ConfigError, match="two rungs"):
        gap_scan.scanned(cfg, task, gap_scan.find_rungs([Path(CONF_DIR)]))


def test_the_outputs_of_a_passing_pair_compose_as_a_gap(tmp_path):
    """The table, the plot, and a conf/gap/ entry that Hydra composes into the scanned rungs."""
    task = make_task("multiplication")
    accs = {"nano": seeds_of([0.6, 0.05, 0.0, 0.0]), "tiny": seeds_of(TINY), "small": seeds_of(MEDIUM)}
    sizes = {"nano": 5_000, "tiny": 15_000, "small": 105_000}
    report.scan_outputs(task, accs, sizes, scan_pairs(accs), {"tiny_medium"}, tmp_path)
    assert (tmp_path / "gap_scan.png").stat().st_size > 0
    md = (tmp_path / "gap_scan.md").read_text()
    assert "0.93 (0.92-0.94)" in md and "| tiny | small |" in md
    assert "model@weak=tiny model@strong=small model@lower=tiny" in md
    assert "gap=tiny_small once gap_tiny_small.yaml is saved as conf/gap/tiny_small.yaml" in md
    assert sorted(p.name for p in tmp_path.glob("gap_*.yaml")) == ["gap_tiny_small.yaml"]
    conf = tmp_path / "conf"
    (conf / "gap").mkdir(parents=True)
    (conf / "gap" / "scanned.yaml").write_text((tmp_path / "gap_tiny_small.yaml").read_text())
    cfg, _ = typed("+experiment=gap_point", "gap=scanned", f"hydra.searchpath=[file://{conf}]")
    assert (cfg.weak.name, cfg.strong.name, cfg.lower.name) == ("tiny", "small", "tiny")


def test_a_small_gap_stops_every_stage_but_the_ladder(caplog, monkeypatch):
    monkeypatch.setattr(ladder, "_warned", set())
    cfg, _ = typed("+experiment=organisms")
    small = {"gap": 0.05, "gap_max": 0.12}
    with pytest.raises(ladder.SmallGap, match=r"gap of 0\.12 .*min_gap=0\.6.*gap_scan.*allow_small_gap=true"):
        ladder.check_gap(cfg, small, stop=True)
    assert isinstance(ladder.SmallGap("x"), ConfigError)  # exit code 2, one error line
    ladder.check_gap(cfg, {"gap": 0.4, "gap_max": 0.7}, stop=True)  # a gap: nothing to say
    allowed, _ = typed("+experiment=organisms", "allow_small_gap=true")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # checked again by every experiment of one process
            ladder.check_gap(allowed, small, stop=True)
            ladder.check_gap(cfg, small, stop=False)  # capability_ladder: warns only
    lines = [r.getMessage() for r in caplog.records if "gap_scan" in r.getMessage()]
    assert len(lines) == 1 and "tiny/medium" in lines[0]


SCAN = ["+experiment=gap_scan", "scale=smoke", "logger=none", "task=addition", "task.slots=3"]


@pytest.mark.slow
def test_the_scan_runs_every_rung_and_shares_the_ladder_zoo(tmp_path):
    """A smoke scan with a user's extra rung: every rung's and pair's metrics, the table and plot;
    then the ladder of one scanned pair trains nothing."""
    user = tmp_path / "my_conf"
    (user / "model").mkdir(parents=True)
    (user / "model" / "micro.yaml").write_text(
        "name: micro\nn_layers: 1\nd_model: 8\nn_heads: 2\nmlp_ratio: 4\nmax_len: 64\n"
    )
    search = f"hydra.searchpath=[file://{TESTS_DIR}/conf,file://{user}]"
    run_dir, zoo = tmp_path / "scan", tmp_path / "zoo"
    proc = run_cli([*SCAN, search, "scan.max_params=20000"], run_dir, zoo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = results_of(run_dir)["metrics"]
    rungs = ["micro", "nano", "tiny"]  # smallest first; small and up exceed max_params
    for r in rungs:
        assert {f"scan/{r}/acc_d{k}" for k in (1, 2, 3)} <= set(m)
        assert 0 <= m[f"scan/{r}/spread_d1"] <= 1
    for pair in ("micro_nano", "micro_tiny", "nano_tiny"):
        assert m[f"scan/{pair}/passes"] in (0.0, 1.0) and f"scan/{pair}/gap_max" in m
    assert not any(k.startswith("scan/small") for k in m)
    assert m["zoo/trained"] == 3
    assert (run_dir / "gap_scan.png").exists() and "| micro | nano |" in (run_dir / "gap_scan.md").read_text()
    assert len(list(run_dir.glob("gap_*.yaml"))) == m["scan/n_passing"]
    assert "every (weak, strong) pair" in proc.stdout
    ladder_dir = tmp_path / "ladder"
    proc = run_cli(["+experiment=capability_ladder", *SCAN[1:], *ADDITION[1:], *SMALL_RUNGS], ladder_dir, zoo)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m2 = results_of(ladder_dir)["metrics"]
    assert (m2["zoo/trained"], m2["zoo/reused"]) == (0, 2)
    assert m2["weak/acc_d1"] == pytest.approx(m["scan/nano/acc_d1"])
    assert {"gap", "gap_max"} <= set(m2)  # the gap it ran at; below min_gap, so one warning line
    logged = "".join(p.read_text() for p in ladder_dir.glob("*.log"))  # the run's log file: each line once
    warnings = [line for line in logged.splitlines() if "+experiment=gap_scan" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0]


@pytest.mark.slow
def test_organisms_on_a_ladder_without_a_gap_stop_with_one_line(tmp_path):
    args = ["+experiment=organisms", "scale=smoke", "logger=none", *ADDITION, "task.slots=3", *SMALL_RUNGS]
    run_dir = tmp_path / "run"
    proc = run_cli([*args, "allow_small_gap=false"], run_dir, tmp_path / "zoo")
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "gap_scan" in errors[0] and "min_gap=0.6" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "results.json").exists()
    assert len([p for p in (tmp_path / "zoo").iterdir() if p.is_dir()]) == 2  # the two rungs, nothing after
