"""The reproduction scripts' checks (experiments/findings.py) on hand-made metrics: each
finding says yes when the literature's direction holds, no when it does not, n/a when the
run did not measure it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
import findings  # noqa: E402

ORGANISMS = {
    "strong/acc": 0.92,
    "weak/acc": 0.30,
    "strong/judge_acc": 0.30,
    "organism/emulate_weak/acc_untriggered": 0.90,
    "organism/emulate_weak/acc_triggered": 0.31,
    "organism/emulate_weak/judge_acc_triggered": 0.40,
}
BAKEOFF = {
    "detector/gold_finetune_gap/auroc": 0.83,
    "detector/gold_finetune_gap/auroc_lo": 0.67,
    "detector/noise_injection/auroc": 0.62,
    "detector/noise_injection/auroc_lo": 0.55,
    "detector/noise_injection/auroc/emulate_weak": 0.57,
    "detector/noise_injection/auroc/random_wrong": 0.78,
    "detector/linear_probe/auroc/emulate_weak": 1.0,
    "detector/linear_probe/auroc/random_wrong": 1.0,
    "detector/linear_probe/auroc/judge_adversarial": 0.9,
    "detector/paraphrase_consistency/auroc/random_wrong": 1.0,
    "detector/paraphrase_consistency/auroc/emulate_weak": 0.44,
}
ELICIT = {
    "weak/acc": 0.30,
    "elicit/w2s_plain/pgr": -0.06,
    "elicit/confidence_loss/pgr": -0.07,
    "elicit/sft_gold_few/recovery": -0.16,
    "elicit/rl_judge/judge_reward": 0.49,
    "elicit/before/judge_acc": 0.47,
    "elicit/rl_judge/acc_training_context": 0.29,
    "elicit/rl_judge/recovery": -0.02,
    "elicit/sft_weak/acc": 0.30,
    "elicit/sft_weak/recovery": -0.01,
    "elicit/sft_then_rl/recovery": -0.01,
    "elicit/sft_then_rl_distinguishable/recovery": -0.04,
}


def verdicts(experiment, measured):
    return {(i, c[:20]): ok for i, c, _, ok in findings.evaluate(experiment, measured)}


def test_each_finding_reads_its_own_experiment():
    assert {f.id for f in findings.FINDINGS} == {f"F{i}" for i in range(1, 11)}
    assert set(verdicts("organisms", ORGANISMS).values()) == {"yes"}
    assert [ok for (i, _), ok in verdicts("detector_bakeoff", BAKEOFF).items()] == ["yes"] * 4
    # An elicitation run of REPORT.md: nothing recovered, and RL hardly moved the judge's reward.
    got = {i: ok for (i, _), ok in verdicts("elicitation", ELICIT).items()}
    assert got == {"F1": "no", "F3": "no", "F4": "no", "F5": "no", "F6": "n/a"}


def test_a_broken_direction_is_no_and_a_missing_metric_is_na():
    eroded = {**ORGANISMS, "organism/emulate_weak/acc_untriggered": 0.80}
    assert set(verdicts("organisms", eroded).values()) == {"no"}
    no_gap = {**ORGANISMS, "strong/acc": 0.31}
    assert set(verdicts("organisms", no_gap).values()) == {"n/a"}
    nan = {**BAKEOFF, "detector/noise_injection/auroc": float("nan")}
    assert verdicts("detector_bakeoff", nan)[("F7", "noise raises sandbag")] == "n/a"


def _rows(deceptions):
    return [
        {"pair": f"p{i}", "gap": str(g), "deception/emulate_weak": str(d)}
        for i, (g, d) in enumerate(deceptions)
    ]


@pytest.mark.parametrize(
    "points, expected",
    [
        ([(0.2, 0.0), (0.4, 0.05), (0.5, 0.1), (0.8, 0.3)], "yes"),  # p = 1/24: the one ordering as high
        ([(0.2, 0.0), (0.5, 0.1), (0.8, 0.3)], "no"),  # three gaps: p = 1/6 at best
        ([(0.32, -0.03), (0.34, 0.24), (0.62, 0.05), (0.66, 0.18)], "no"),  # REPORT's +0.40: not established
        ([(0.2, 0.3), (0.5, 0.1), (0.8, 0.0)], "no"),
        ([(0.2, 0.3), (0.5, 0.1)], "n/a"),
    ],
)
def test_f10_is_the_rank_correlation_of_deception_with_the_gap(points, expected):
    assert verdicts("gap_sweep", _rows(points))[("F10", "deception of the wea")] == expected


def test_a_script_tabulates_a_finished_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"metrics": ORGANISMS}))
    out = tmp_path / "table"
    cmd = [sys.executable, str(EXPERIMENTS / "repro_organisms.py"), "--from", str(run), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    table = (out / "findings.md").read_text()
    assert "| F2 |" in table and "| yes |" in table
    bad = subprocess.run([*cmd[:3], str(tmp_path / "nothing")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no finished organisms run")


def test_f5_is_the_papers_claim_sft_recovers_most_and_rl_after_it_more():
    """Ryd et al.: SFT on weak demos recovers most of the hidden gap, SFT then RL more still."""
    paper = {**ELICIT, "elicit/sft_weak/recovery": 0.85, "elicit/sft_then_rl/recovery": 0.95}
    assert verdicts("elicitation", paper)[("F5", "SFT on weak demos re")] == "yes"
    rl_lost = {**paper, "elicit/sft_then_rl/recovery": 0.80}
    assert verdicts("elicitation", rl_lost)[("F5", "SFT on weak demos re")] == "no"
    capped = {**paper, "elicit/sft_weak/recovery": 0.05}  # the old check's "SFT caps near the weak model"
    assert verdicts("elicitation", capped)[("F5", "SFT on weak demos re")] == "no"


def _verdict(experiment, measured, finding):
    return next(ok for i, _, _, ok in findings.evaluate(experiment, measured) if i == finding)


def test_f4_needs_rl_to_raise_the_judges_reward():
    """A judge fooled before RL already shows reward above accuracy: reward hacking is a rise."""
    assert _verdict("elicitation", {**ELICIT, "elicit/before/judge_acc": 0.29}, "F4") == "yes"
    assert _verdict("elicitation", ELICIT, "F4") == "no"  # 0.47 -> 0.49


def test_f1_and_f7_say_yes_only_past_their_seed_interval():
    students = {**ELICIT, "elicit/w2s_plain/pgr": 0.30, "elicit/confidence_loss/pgr": 0.40}
    assert _verdict("elicitation", {**students, "elicit/w2s_plain/pgr_lo": 0.10}, "F1") == "yes"
    assert _verdict("elicitation", {**students, "elicit/w2s_plain/pgr_lo": -0.10}, "F1") == "no"
    assert _verdict("elicitation", students, "F1") == "n/a"  # one seed: no interval
    assert _verdict("detector_bakeoff", {**BAKEOFF, "detector/noise_injection/auroc_lo": 0.45}, "F7") == "no"


def test_f6_needs_something_recovered_to_lose():
    damaged = {
        **ELICIT,
        "elicit/sft_then_rl/recovery": 0.01,
        "elicit/sft_then_rl_distinguishable/recovery": -0.25,
    }
    assert _verdict("elicitation", damaged, "F6") == "n/a"
    paper = {
        **ELICIT,
        "elicit/sft_then_rl/recovery": 0.88,
        "elicit/sft_then_rl_distinguishable/recovery": 0.36,
    }
    assert _verdict("elicitation", paper, "F6") == "yes"


def test_f8_takes_the_probes_reference_strategies_from_the_run():
    run = {
        **BAKEOFF,
        "detector/linear_probe/auroc/selective": 1.0,
        "detector/linear_probe/auroc/judge_adversarial": 0.5,
    }
    assert _verdict("detector_bakeoff", run, "F8") == "yes"  # unseen: selective 1.0, judge_adversarial 0.5
    seen = {
        **run,
        "config": {"bakeoff": {"reference_strategies": ["emulate_weak", "random_wrong", "selective"]}},
    }
    text = next(t for i, _, t, _ in findings.evaluate("detector_bakeoff", seen) if i == "F8")
    assert text.endswith("0.50 on others")


def test_f9_reads_c3s_own_adversary_where_it_was_scored():
    beaten = {**BAKEOFF, "detector/paraphrase_consistency/auroc/consistent": 0.90}
    assert _verdict("detector_bakeoff", beaten, "F9") == "no"  # emulate_weak's 0.44 would say yes
    assert (
        _verdict(
            "detector_bakeoff", {**beaten, "detector/paraphrase_consistency/auroc/consistent": 0.4}, "F9"
        )
        == "yes"
    )


@pytest.mark.parametrize(
    "points, expected",
    [
        ([(0.2, 0.0), (0.5, 0.0), (0.8, 0.0)], "n/a"),  # a judge nothing fools: no correlation
        ([(0.2, 0.1), (0.4, 0.1), (0.6, 0.05), (0.8, 0.1)], "no"),  # ties are averaged, not ranked by gap
    ],
)
def test_f10_ties_do_not_lean_towards_yes(points, expected):
    assert verdicts("gap_sweep", _rows(points))[("F10", "deception of the wea")] == expected
