"""The gap sweep: its configs, the report over finished gap points, and the whole sweep at
smoke scale (``python -m sandbag.run +experiment=gap_sweep``, then ``python -m sandbag.report``)."""

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import TESTS_DIR
from hydra import compose, initialize_config_dir

from sandbag.config import ConfigError
from sandbag.report import __main__ as report
from sandbag.report import sweep
from sandbag.run import CONF_DIR

GAPS = sorted(p.stem for p in (Path(CONF_DIR) / "gap").glob("*.yaml"))
PARAMS = {"nano": 1, "tiny": 2, "small": 3, "medium": 4, "large": 5}  # ladder order


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


@pytest.mark.parametrize("gap", GAPS)
def test_every_gap_pairs_a_weaker_supervisor_with_a_stronger_student(gap):
    cfg = _compose(["+experiment=gap_point", f"gap={gap}"])
    weak, strong, lower = (PARAMS[cfg[r].name] for r in ("weak", "strong", "lower"))
    assert weak < strong and lower < strong
    assert f"{cfg.weak.name}_{cfg.strong.name}" == gap


def test_the_sweep_is_a_multirun_over_at_least_four_gaps_with_a_report_callback():
    cfg = _compose(["+experiment=gap_sweep"])
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    gaps = cfg.hydra.sweeper.params.gap.split(",")
    assert len(set(gaps)) >= 4 and set(gaps) <= set(GAPS)
    assert cfg.hydra.callbacks.gap_report._target_ == "sandbag.report.GapReport"
    assert cfg.experiment == "gap_point"
    gpu = _compose(["+experiment=gap_sweep", "scale=gpu"]).hydra.sweeper.params.gap.split(",")
    assert set(gaps) < set(gpu) <= set(GAPS), "scale=gpu sweeps more gaps"


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_a_sweep_pair_below_min_gap_is_a_point_of_the_sweep_not_a_stop(scale):
    # small_medium's gap at scale=cpu is 0.48 (< min_gap 0.6): stopping there ended the sweep
    # at its third job, before the report. The single-stage experiments still stop.
    for experiment in ("gap_sweep", "gap_point"):
        assert _compose([f"+experiment={experiment}", f"scale={scale}"]).allow_small_gap is True
    assert _compose(["+experiment=organisms", f"scale={scale}"]).allow_small_gap is False
    assert _compose(["+experiment=gap_point", "allow_small_gap=false"]).allow_small_gap is False


def _fake_point(root: Path, weak: str, strong: str, seed: int, gap: float, **setting) -> None:
    """A finished gap point's results.json with the metric names the stages write."""
    m = {"gap": gap, "weak/acc": 0.3, "strong/acc": 0.3 + gap, "zoo/trained": 2, "zoo/reused": 5}
    m["wall_time_s"] = 60.0
    m |= {"time/ladder_s": 30.0, "time/organisms_s": 90.0 * seed}
    for d, auc in (("noise_injection", 0.5 + gap / 2), ("linear_probe", 0.9)):
        m |= {f"detector/{d}/auroc": auc, f"detector/{d}/auroc_lo": auc - 0.1}
        m |= {f"detector/{d}/auroc_hi": min(auc + 0.1, 1.0), f"detector/{d}/tpr_at_5fpr": 0.2}
        m[f"detector/{d}/auroc/emulate_weak"] = auc  # per-strategy: not a summary column
    m |= {"elicit/sft_weak/recovery": 0.1 * seed, "elicit/sft_weak/recovery_std": 0.0}
    m |= {"elicit/w2s_plain/pgr": 0.2, "elicit/confidence_loss/pgr": 0.25}
    m |= {"organism/emulate_weak/acc_triggered": 0.3, "organism/emulate_weak/acc_untriggered": 0.9}
    m["organism/emulate_weak/judge_acc_triggered"] = 0.3 + gap
    config = {"experiment": "gap_point", "weak": {"name": weak}, "strong": {"name": strong}, "seed": seed}
    config |= {"zoo": {"dir": f"/machine{seed}/zoo"}, **setting}  # where a point ran is not its setting
    d = root / f"{weak}_{strong}_{seed}{'_' + '_'.join(setting) if setting else ''}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"config": config, "metrics": m}))


@pytest.fixture
def finished(tmp_path) -> Path:
    for i, (weak, strong) in enumerate([("nano", "medium"), ("tiny", "medium"), ("small", "medium")]):
        for seed in (0, 1):
            _fake_point(tmp_path, weak, strong, seed, gap=0.8 - 0.2 * i)
    other = tmp_path / "ladder_run"  # another experiment's results are not gap points
    other.mkdir()
    (other / "results.json").write_text(json.dumps({"config": {"experiment": "organisms"}, "metrics": {}}))
    return tmp_path


def test_the_report_has_one_row_per_job_and_a_plot_per_quantity(finished):
    sweep.write_report(finished)
    rows = list(csv.DictReader(open(finished / "summary.csv")))
    assert len(rows) == 6
    assert [float(r["gap"]) for r in rows] == sorted(float(r["gap"]) for r in rows)
    assert {r["pair"] for r in rows} == {"nano/medium", "tiny/medium", "small/medium"}
    assert float(rows[0]["deception/emulate_weak"]) == pytest.approx(float(rows[0]["gap"]))
    assert "detector/noise_injection/auroc/emulate_weak" not in rows[0]
    for png in ("detector_auroc_vs_gap", "elicitation_recovery_vs_gap", "deception_vs_gap"):
        assert (finished / f"{png}.png").stat().st_size > 1000
    text = (finished / "report.md").read_text()
    assert "6 jobs over 3" in text
    assert "| nano/medium (n=2) | 0.80 |" in text
    assert "0.05 ± 0.05" in text  # sft_weak recovery over seeds 0 and 1: mean ± sd
    assert "12 models trained, 30 loads" in text
    # six jobs: ladder 6 x 30 s = 3.0 min; organisms 3 x 90 s (the seed-1 jobs) = 4.5 min, listed first
    assert "| organisms | 4.5 |\n| ladder | 3.0 |" in text


def test_python_m_sandbag_report_remakes_the_report(finished):
    assert report.main([str(finished)]) == 0
    first = (finished / "summary.csv").read_text()
    (finished / "summary.csv").unlink()
    (finished / "report.md").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "sandbag.report", str(finished)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert (finished / "summary.csv").read_text() == first
    assert (finished / "report.md").exists()


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["--help"]])
def test_report_usage_errors_exit_2(argv, capsys):
    assert report.main(argv) == 2
    assert "usage: python -m sandbag.report DIR" in capsys.readouterr().err


def test_report_on_a_folder_without_gap_points_is_one_clear_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert (
        f"no finished gap points (results.json of experiment gap_point) under {tmp_path}"
        in capsys.readouterr().err
    )
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "summary.csv").exists()


def test_a_gap_in_the_sweeps_own_list_is_checked_before_the_first_job():
    """``gap: ${sweep_gaps}`` is a sweep the config declares: its third pair (small_medium,
    whose lower rung is its weak rung) is refused up front, not after two jobs."""
    from sandbag.config import check_argv

    with pytest.raises(ConfigError, match=r"the lower rung is the weak rung \(small\)"):
        check_argv(["+experiment=gap_sweep", "scale=smoke", "organisms.imitate=lower_rung"], CONF_DIR)
    check_argv(
        ["+experiment=gap_sweep", "scale=smoke", "organisms.imitate=lower_rung", "gap=nano_medium"], CONF_DIR
    )


def test_the_report_refuses_to_pool_points_of_other_sweeps_as_seeds(finished, capsys):
    """A smoke run, another judge's run or a second run of a (pair, seed) under the same folder
    (``python -m sandbag.report outputs/``) would read as variation between seeds."""
    _fake_point(finished, "tiny", "medium", 0, gap=0.6, train={"steps": 40})
    assert report.main([str(finished)]) == 2
    err = capsys.readouterr().err
    assert "are not one sweep" in err and "differ in train;" in err
    assert not (finished / "report.md").exists()
    (finished / "tiny_medium_0_train" / "results.json").unlink()
    _fake_point(finished / "again", "tiny", "medium", 0, gap=0.6)
    assert report.main([str(finished)]) == 2
    assert "tiny/medium seed 0 ran twice" in capsys.readouterr().err
    assert not (finished / "report.md").exists()


def test_a_gap_point_builds_its_ladder_and_judge_once_and_counts_each_stage_s_time_once(monkeypatch):
    """The three stages share one ``Setting``: built once, its metrics and build time (ladder,
    judges) counted once, each stage's own time added to it."""
    from sandbag.pipelines import bakeoff, elicitation, gap_point, organisms, setting

    built = []

    class Shared:
        metrics = {"weak/acc": 0.3, "time/ladder_s": 10.0, "time/judges_s": 2.0}

    def build(cfg, task, zoo):
        built.append(cfg)
        return Shared()

    def stage(name, seconds):
        def run(cfg, task, zoo, out_dir, setting=None):
            assert isinstance(setting, Shared)
            judged = setting.metrics["time/judges_s"] + 1.0  # a stage may time more judging
            measured = {
                "organism/emulate_weak/acc_triggered": seconds
            }  # organisms and bake-off both measure it
            return {
                **setting.metrics,
                **measured,
                "time/judges_s": judged,
                f"time/{name}_s": seconds,
                f"{name}/x": 1.0,
            }

        return run

    monkeypatch.setattr(setting, "build", build)
    for module, seconds in ((organisms, 5.0), (bakeoff, 7.0), (elicitation, 3.0)):
        monkeypatch.setattr(module, "run", stage(module.__name__.rsplit(".", 1)[-1], seconds))
    m = gap_point.run("cfg", None, None, Path("."))
    assert built == ["cfg"]
    assert m["time/ladder_s"] == 10.0 and m["time/judges_s"] == 2.0 + 3 * 1.0
    assert (m["time/organisms_s"], m["time/bakeoff_s"], m["time/elicitation_s"]) == (5.0, 7.0, 3.0)
    assert m["weak/acc"] == 0.3 and m["bakeoff/x"] == 1.0
    assert m["organism/emulate_weak/acc_triggered"] == 5.0, "the organisms stage's own measurement"


# What the end-to-end test trims (detectors, strategies and elicitation methods run in their
# own tests; the default gap list is checked by composition above): two gaps of the tests' own
# (tests/conf/gap/), where tiny is the strong rung of one job and the weak rung of the other.
# The sweep machinery is the same at any pair; the smallest rungs compile fastest.
TRIM = [
    f"hydra.searchpath=[file://{TESTS_DIR}/conf]",
    "gap=nano_tiny,tiny_small",
    "detector=[difficulty_profile,judge_statistics,noise_injection]",
    "strategy.names=[emulate_weak]",
    "elicitation=sft_weak",
    "elicitation.distinguishable=[false]",
]


@pytest.mark.slow
def test_the_smoke_gap_sweep_ends_with_a_report_over_its_gaps(tmp_path):
    sweep_dir, zoo = tmp_path / "sweep", tmp_path / "zoo"
    env = {**os.environ, "SANDBAG_ZOO": str(zoo)}
    cmd = [sys.executable, "-m", "sandbag.run", "+experiment=gap_sweep", "scale=smoke", "logger=none", *TRIM]
    proc = subprocess.run(
        [*cmd, f"hydra.sweep.dir={sweep_dir}"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(d for d in sweep_dir.iterdir() if (d / "results.json").exists())
    assert len(jobs) == 2
    rows = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert len({r["pair"] for r in rows}) == 2
    assert len(list(sweep_dir.glob("*.png"))) >= 3
    text = (sweep_dir / "report.md").read_text()
    assert "2 jobs over 2" in text and "AUROC" in text
    # Every distinct model trains once across the sweep: tiny is the strong rung of the
    # first job and the weak rung of the second, so the second loads it from the zoo.
    trained = sum(int(r["zoo_trained"]) for r in rows)
    reused = sum(int(r["zoo_reused"]) for r in rows)
    assert reused > 0
    n_entries = sum(1 for d in zoo.iterdir() if (d / "final.json").exists())
    assert trained == n_entries


def test_a_pair_whose_every_seed_is_nan_plots_as_nan_without_numpy_warnings():
    rows = [
        {"pair": "nano/medium", "gap": 0.6, "x": float("nan")},
        {"pair": "nano/medium", "gap": 0.6, "x": float("nan")},
        {"pair": "small/medium", "gap": 0.3, "x": 0.5},
        {"pair": "small/medium", "gap": 0.3, "x": float("nan")},
        {"pair": "small/medium", "gap": 0.3, "x": 0.7},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" became an error
        gap, mean, sd = sweep._by_pair(rows, "x")
    assert list(gap) == [0.3, 0.6]
    assert mean[0] == pytest.approx(0.6) and sd[0] == pytest.approx(0.1)
    assert np.isnan(mean[1]) and np.isnan(sd[1])
