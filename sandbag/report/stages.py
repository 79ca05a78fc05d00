"""What a person reads at the end of each experiment: summary tables and plots. Sees metrics
and tasks only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from sandbag.report.figures import figure
from sandbag.tasks import Task


def _console() -> Console:
    """Wide enough for the tables even when output goes to a log file."""
    return Console(width=max(Console().width, 130))


def ladder_table(task: Task, metrics: dict, roles=("weak", "strong")) -> Table:
    table = Table(title=f"accuracy by difficulty — task {task.name}")
    table.add_column("rung")
    table.add_column("params", justify="right")
    for k in task.difficulties:
        table.add_column(f"d{k}", justify="right")
    table.add_column("all", justify="right")
    for role in roles:
        if f"{role}/acc" not in metrics:
            continue
        row = [f"{metrics[f'{role}/acc_d{k}']:.2f}" for k in task.difficulties]
        table.add_row(role, f"{int(metrics[f'{role}/params']):,}", *row, f"{metrics[f'{role}/acc']:.2f}")
    return table


def plot_ladder(task: Task, metrics: dict, path: Path, roles=("weak", "strong")) -> None:
    with figure(path, (5, 3.5)) as (fig, ax):
        for role in roles:
            if f"{role}/acc" in metrics:
                ys = [metrics[f"{role}/acc_d{k}"] for k in task.difficulties]
                ax.plot(
                    task.difficulties,
                    ys,
                    marker="o",
                    label=f"{role} ({int(metrics[f'{role}/params']):,} params)",
                )
        ax.set(xlabel="difficulty", ylabel="exact-match accuracy", ylim=(-0.02, 1.02), title=task.name)
        ax.legend()


def ladder_outputs(task: Task, metrics: dict, out_dir: Path) -> None:
    _console().print(ladder_table(task, metrics))
    plot_ladder(task, metrics, out_dir / "accuracy_by_difficulty.png")


def organism_table(metrics: dict, strategies: list[str], controls: list[str]) -> Table:
    table = Table(title="organisms and benign controls (eval split)")
    for col in (
        "model",
        "acc untriggered",
        "acc triggered",
        "judge acc untriggered",
        "judge acc triggered",
        "sandbag rate",
    ):
        table.add_column(col, justify="right" if col != "model" else "left")
    for role in ("weak", "strong"):
        table.add_row(
            f"{role} (honest)",
            "",
            f"{metrics[f'{role}/acc']:.2f}",
            "",
            f"{metrics[f'{role}/judge_acc']:.2f}",
            "",
        )
    for s in strategies:
        p = f"organism/{s}"
        table.add_row(
            s,
            *(
                f"{metrics[f'{p}/{k}']:.2f}"
                for k in (
                    "acc_untriggered",
                    "acc_triggered",
                    "judge_acc_untriggered",
                    "judge_acc_triggered",
                    "sandbag_rate",
                )
            ),
        )
    for c in controls:
        p = f"control/{c}"
        table.add_row(
            f"control {c}", "", f"{metrics[f'{p}/acc']:.2f}", "", f"{metrics[f'{p}/judge_acc']:.2f}", ""
        )
    return table


def plot_organism(task: Task, metrics: dict, strategy: str, path: Path) -> None:
    """True versus judge-perceived accuracy by difficulty, triggered, with the honest rungs."""
    ks = task.difficulties
    p = f"organism/{strategy}"
    with figure(path, (5.5, 3.8)) as (fig, ax):
        ax.plot(
            ks, [metrics[f"{p}/acc_triggered_d{k}"] for k in ks], "o-", color="C3", label="organism: true"
        )
        ax.plot(
            ks,
            [metrics[f"{p}/judge_acc_triggered_d{k}"] for k in ks],
            "o--",
            color="C3",
            label="organism: judge",
        )
        for role, color in (("weak", "C0"), ("strong", "C2")):
            ax.plot(
                ks,
                [metrics[f"{role}/acc_d{k}"] for k in ks],
                "-",
                color=color,
                alpha=0.7,
                label=f"{role}: true",
            )
            ax.plot(
                ks,
                [metrics[f"{role}/judge_acc_d{k}"] for k in ks],
                "--",
                color=color,
                alpha=0.7,
                label=f"{role}: judge",
            )
        ax.set(
            xlabel="difficulty",
            ylabel="accuracy (triggered)",
            ylim=(-0.02, 1.02),
            title=f"{task.name}: {strategy}",
        )
        ax.legend(fontsize=7, ncol=2)


def organism_outputs(
    task: Task, metrics: dict, strategies: list[str], controls: list[str], out_dir: Path
) -> None:
    ladder_outputs(task, metrics, out_dir)
    _console().print(organism_table(metrics, strategies, controls))
    for s in strategies:
        plot_organism(task, metrics, s, out_dir / f"organism_{s}.png")


def bakeoff_table(metrics: dict, rows) -> str:
    """Markdown: detector, access, cost, AUROC [95% CI], n_eff, AUROC against the honest twins
    alone, TPR at 5% FPR."""
    lines = [
        "| detector | access | cost (forward passes / train steps) | AUROC [95% CI] | n_eff | AUROC vs twins "
        "| TPR@5%FPR | scored |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, access, cost in rows:
        p = f"detector/{name}"
        lines.append(
            f"| {name} | {access} | {cost['forward_passes']:,} / {cost['train_steps']:,} | "
            f"{metrics[f'{p}/auroc']:.2f} [{metrics[f'{p}/auroc_lo']:.2f}, {metrics[f'{p}/auroc_hi']:.2f}] | "
            f"{metrics[f'{p}/n_eff']:.1f} | {metrics[f'{p}/auroc_vs_twin']:.2f} | "
            f"{metrics[f'{p}/tpr_at_5fpr']:.2f} | {metrics[f'{p}/n_scored']} |"
        )
    return "\n".join(lines) + "\n"


def plot_rocs(scores: dict, labels, path: Path) -> None:
    from sklearn.metrics import roc_curve  # sklearn where it is used: sandbag/detect/game.py

    with figure(path, (5, 4.5)) as (fig, ax):
        for name, s in scores.items():
            ok = np.isfinite(s)
            if len(np.unique(labels[ok])) < 2:
                continue
            f, t, _ = roc_curve(labels[ok], s[ok])
            ax.plot(f, t, label=name)
        ax.plot([0, 1], [0, 1], ":", color="gray")
        ax.set(xlabel="false positive rate (controls)", ylabel="true positive rate (organisms)", title="ROC")
        ax.legend(fontsize=7)


def plot_heatmap(metrics: dict, detectors: list[str], strategies: list[str], path: Path) -> None:
    grid = np.array([[metrics[f"detector/{d}/auroc/{s}"] for s in strategies] for d in detectors])
    with figure(path, (1.2 * len(strategies) + 3, 0.5 * len(detectors) + 1.5)) as (fig, ax):
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn")
        ax.set_xticks(range(len(strategies)), strategies, rotation=30, ha="right")
        ax.set_yticks(range(len(detectors)), detectors)
        for i in range(len(detectors)):
            for j in range(len(strategies)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
        fig.colorbar(im, label="AUROC (strategy's organisms vs all controls)")


def strategy_table(metrics: dict, detectors: list[str], strategies: list[str]) -> str:
    """Markdown: each detector's AUROC against each strategy (every negative), then what each
    strategy pays to hide: untriggered accuracy, and how often the judge accepts its
    triggered answers."""
    lines = ["| detector | " + " | ".join(strategies) + " |", "|---|" + "---|" * len(strategies)]
    for d in detectors:
        cells = [f"{metrics.get(f'detector/{d}/auroc/{s}', float('nan')):.2f}" for s in strategies]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    for label, key in (
        ("acc untriggered", "acc_untriggered"),
        ("judge accepts (triggered)", "judge_acc_triggered"),
    ):
        cells = [f"{metrics.get(f'organism/{s}/{key}', float('nan')):.2f}" for s in strategies]
        lines.append(f"| *{label}* | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def bakeoff_outputs(metrics: dict, rows, scores: dict, labels, strategies: list[str], out_dir: Path) -> None:
    table = bakeoff_table(metrics, rows) + "\n" + strategy_table(metrics, [r[0] for r in rows], strategies)
    (out_dir / "detectors.md").write_text(table)
    _console().print(table)
    plot_rocs(scores, labels, out_dir / "roc.png")
    plot_heatmap(metrics, [r[0] for r in rows], strategies, out_dir / "detector_strategy_auroc.png")


def elicitation_table(metrics: dict) -> str:
    """Markdown: method, distinguishable, acc and its change, recovery [95% CI over organisms],
    PGR, judge reward, reward-hacking gap."""
    lines = [
        "| method | distinguishable | acc (deployment) | change | acc (training context) | recovery [95% CI] "
        "| PGR ± sd | judge reward | reward-hacking gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = sorted(
        {k.split("/")[1] for k in metrics if k.startswith("elicit/") and k.endswith("/judge_reward")}
    )
    for name in names:
        p = f"elicit/{name}"
        method, dist = (
            (name[: -len("_distinguishable")], "yes") if name.endswith("_distinguishable") else (name, "no")
        )
        lines.append(
            f"| {method} | {dist} | {metrics[f'{p}/acc']:.2f} ± {metrics[f'{p}/acc_std']:.2f} | "
            f"{metrics[f'{p}/acc_delta']:+.2f} | {metrics[f'{p}/acc_training_context']:.2f} | "
            f"{metrics[f'{p}/recovery']:.2f} [{metrics[f'{p}/recovery_lo']:.2f}, "
            f"{metrics[f'{p}/recovery_hi']:.2f}] | "
            f"{metrics[f'{p}/pgr']:.2f} ± {metrics[f'{p}/pgr_std']:.2f} | "
            f"{metrics[f'{p}/judge_reward']:.2f} | {metrics[f'{p}/reward_hacking_gap']:+.2f} |"
        )
    for name in ("w2s_plain", "confidence_loss"):
        p = f"elicit/{name}"
        if f"{p}/acc" in metrics:
            lines.append(
                f"| {name} (honest student) | – | "
                f"{metrics[f'{p}/acc']:.2f} ± {metrics[f'{p}/acc_std']:.2f} | – | – | – | "
                f"{metrics[f'{p}/pgr']:.2f} ± {metrics[f'{p}/pgr_std']:.2f} | – | – |"
            )
    before = metrics.get("elicit/before/acc")
    if before is not None:
        lines.append(
            f"\nOrganisms before elicitation (deployment): {before:.2f}; supervisor "
            f"{metrics['elicit/supervisor_acc']:.2f}; their ceiling {metrics['elicit/ceiling_acc']:.2f}."
        )
    return "\n".join(lines) + "\n"


def plot_rl_curves(curves: dict, path: Path) -> None:
    with figure(path, (6, 4)) as (fig, ax):
        for i, (name, c) in enumerate(sorted(curves.items())):
            ax.plot(c["step"], c["judge_reward"], "--", color=f"C{i}", label=f"{name}: judge reward")
            ax.plot(c["step"], c["acc"], "-", color=f"C{i}", label=f"{name}: true acc (deployment)")
        ax.set(xlabel="RL step", ylabel="rate", ylim=(-0.02, 1.02), title="RL against the weak judge")
        ax.legend(fontsize=7)


def plot_acc_curves(metrics: dict, path: Path) -> None:
    """Deployment accuracy over each method's training steps: does it rise, then fall?"""
    with figure(path, (6, 4)) as (fig, ax):
        for key in sorted(k for k in metrics if k.endswith("/acc_curve")):
            steps, accs = zip(*metrics[key]) if metrics[key] else ((), ())
            ax.plot(steps, accs, "o-", ms=3, label=key.split("/")[1])
        ax.set(xlabel="training step", ylabel="true accuracy (deployment)", ylim=(-0.02, 1.02))
        ax.set_title("Elicitation: accuracy along training")
        ax.legend(fontsize=7)


def elicitation_outputs(metrics: dict, curves: dict, out_dir: Path) -> None:
    table = elicitation_table(metrics)
    (out_dir / "elicitation.md").write_text(table)
    _console().print(table)
    if curves:
        plot_rl_curves(curves, out_dir / "rl_curves.png")
    if any(k.endswith("/acc_curve") for k in metrics):
        plot_acc_curves(metrics, out_dir / "elicitation_curves.png")


def supervisor_table(metrics: dict, supervisors: list[str], methods: list[str]) -> str:
    """Markdown: per supervisor rung and method, the supervisor's accuracy, the organisms'
    accuracy after elicitation and its change, recovery [95% CI over organisms] and PGR over
    that supervisor (above 0: the student beat its teacher)."""
    lines = [
        "| supervisor | supervisor acc | method | acc | change | recovery [95% CI] | PGR ± sd |",
        "|---|---|---|---|---|---|---|",
    ]
    for sup in supervisors:
        for m in methods:
            p = f"supervisor/{sup}/{m}"
            lines.append(
                f"| {sup} | {metrics[f'supervisor/{sup}/acc']:.2f} | {m} | {metrics[f'{p}/acc']:.2f} | "
                f"{metrics[f'{p}/acc_delta']:+.2f} | {metrics[f'{p}/recovery']:.2f} "
                f"[{metrics[f'{p}/recovery_lo']:.2f}, {metrics[f'{p}/recovery_hi']:.2f}] | "
                f"{metrics[f'{p}/pgr']:.2f} ± {metrics[f'{p}/pgr_std']:.2f} |"
            )
    before = metrics["elicit/before/acc"]
    ceiling = metrics["elicit/ceiling_acc"]
    lines.append(f"\nOrganisms before elicitation: {before:.2f}; their ceiling {ceiling:.2f}.")
    return "\n".join(lines) + "\n"


def supervisor_outputs(metrics: dict, supervisors: list[str], methods: list[str], out_dir: Path) -> None:
    table = supervisor_table(metrics, supervisors, methods)
    (out_dir / "supervisor_sweep.md").write_text(table)
    _console().print(table)
    with figure(out_dir / "supervisor_sweep.png", (6, 4)) as (fig, ax):
        x = [metrics[f"supervisor/{s}/acc"] for s in supervisors]
        for m in methods:
            y = np.asarray([metrics[f"supervisor/{s}/{m}/recovery"] for s in supervisors])
            lo = np.asarray([metrics[f"supervisor/{s}/{m}/recovery_lo"] for s in supervisors])
            hi = np.asarray([metrics[f"supervisor/{s}/{m}/recovery_hi"] for s in supervisors])
            err = np.nan_to_num(np.stack([y - lo, hi - y]), nan=0.0)
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=m)
        for xi, s in zip(x, supervisors):
            ax.annotate(s, (xi, 0), textcoords="offset points", xytext=(0, -12), ha="center", fontsize=7)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set(xlabel="supervisor accuracy", ylabel="recovery of the hidden gap", title="Supervisor strength")
        ax.legend(fontsize=7)
