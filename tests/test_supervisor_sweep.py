"""The supervisor-strength axis: one organism population, elicited by each supervisor in turn
with that supervisor's own demonstrations and judge; every metric and the table and plot."""

import numpy as np
import pytest
from conftest import SMALL_RUNGS, results_of, run_cli

from sandbag.elicit.base import ELICITATIONS
from sandbag.pipelines import supervisor_sweep
from sandbag.supervision import weak_answers


@pytest.mark.parametrize(
    "overrides, bad",
    [
        (["supervisors=[nano,tiny,medium]"], "medium is the strong rung"),
        (["organisms.imitate=lower_rung"], "small is the lower rung the organisms imitate"),
    ],
    ids=["the organisms' own ceiling", "the model the red team imitates"],
)
def test_no_supervisor_is_a_red_team_model(overrides, bad):
    """A supervisor that is the strong rung would supervise with the organisms' own ceiling, and
    the lower rung under ``imitate=lower_rung`` is the model the red team imitates."""
    from sandbag.config import CONF_DIR, ConfigError, check_argv

    with pytest.raises(ConfigError, match=bad):
        check_argv(["+experiment=supervisor_sweep", *overrides], CONF_DIR)
    check_argv(["+experiment=supervisor_sweep"], CONF_DIR)


SWEEP = ["+experiment=supervisor_sweep", "scale=smoke", "logger=none", *SMALL_RUNGS, "task.slots=3"]


def test_each_supervisor_elicits_the_same_organisms_with_its_own_demonstrations(tmp_path, monkeypatch):
    """In process, with the method recording what it is given: the organisms are one population
    for every supervisor, and the demonstrations are that supervisor's own answers."""
    from hydra import compose, initialize_config_dir

    from sandbag import config
    from sandbag.run import CONF_DIR
    from sandbag.zoo import Zoo

    seen = []

    def record(s):
        seen.append((s.organisms, s.demos, s.judge))
        return s.organisms.params, {}

    monkeypatch.setitem(ELICITATIONS, "sft_weak", record)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "config",
            [
                *SWEEP,
                "supervisors=[nano,small]",
                "elicitation.methods=[sft_weak]",
                f"zoo.dir={tmp_path / 'zoo'}",
            ],
        )
    run_cfg, task = config.load(cfg)
    out = tmp_path / "out"
    out.mkdir()
    metrics = supervisor_sweep.run(run_cfg, task, Zoo(tmp_path / "zoo"), out)
    assert len(seen) == 2
    assert seen[0][0] is seen[1][0], "every supervisor elicits the same organism population"
    (_, demos_nano, judge_nano), (_, demos_small, judge_small) = seen
    np.testing.assert_array_equal(demos_nano.prompts, demos_small.prompts)
    assert judge_nano.weak.cfg.name == "nano" and judge_small.weak.cfg.name == "small"
    np.testing.assert_array_equal(demos_nano.answers, weak_answers(judge_nano.weak, demos_nano))
    np.testing.assert_array_equal(demos_small.answers, weak_answers(judge_small.weak, demos_small))
    assert metrics["supervisor/nano/params"] < metrics["supervisor/small/params"]
    for sup in ("nano", "small"):
        assert 0.0 <= metrics[f"supervisor/{sup}/acc"] <= 1.0
        # the method returned the organisms unchanged: nothing recovered
        assert metrics[f"supervisor/{sup}/sft_weak/acc_delta"] == 0.0
    table = (out / "supervisor_sweep.md").read_text()
    assert "| nano |" in table and "| small |" in table
    assert (out / "supervisor_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_the_supervisor_sweep_runs_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    # the strong rung one up (small): tiny supervises from below it, never as the organisms' ceiling
    argv = [a if a != "model@strong=tiny" else "model@strong=small" for a in SWEEP]
    proc = run_cli(
        [*argv, "supervisors=[nano,tiny]", "elicitation.methods=[sft_weak,rl_judge]"],
        run_dir,
        tmp_path / "zoo",
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = results_of(run_dir)["metrics"]
    for sup in ("nano", "tiny"):
        for m in ("sft_weak", "rl_judge"):
            for k in ("acc", "acc_delta", "recovery", "recovery_lo", "recovery_hi", "pgr", "judge_reward"):
                assert f"supervisor/{sup}/{m}/{k}" in metrics, (sup, m, k)
    assert metrics["supervisor/nano/params"] == metrics["weak/params"], "nano is the configured weak rung"
    assert metrics["weak/params"] < metrics["supervisor/tiny/params"] < metrics["strong/params"]
