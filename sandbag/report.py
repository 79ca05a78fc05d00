"""What a person reads at the end of a run: a summary table and plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbag.tasks import Task  # noqa: E402


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
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for role in roles:
        if f"{role}/acc" in metrics:
            ys = [metrics[f"{role}/acc_d{k}"] for k in task.difficulties]
            ax.plot(
                task.difficulties, ys, marker="o", label=f"{role} ({int(metrics[f'{role}/params']):,} params)"
            )
    ax.set(xlabel="difficulty", ylabel="exact-match accuracy", ylim=(-0.02, 1.02), title=task.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(ks, [metrics[f"{p}/acc_triggered_d{k}"] for k in ks], "o-", color="C3", label="organism: true")
    ax.plot(
        ks, [metrics[f"{p}/judge_acc_triggered_d{k}"] for k in ks], "o--", color="C3", label="organism: judge"
    )
    for role, color in (("weak", "C0"), ("strong", "C2")):
        ax.plot(
            ks, [metrics[f"{role}/acc_d{k}"] for k in ks], "-", color=color, alpha=0.7, label=f"{role}: true"
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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def organism_outputs(
    task: Task, metrics: dict, strategies: list[str], controls: list[str], out_dir: Path
) -> None:
    ladder_outputs(task, metrics, out_dir)
    _console().print(organism_table(metrics, strategies, controls))
    for s in strategies:
        plot_organism(task, metrics, s, out_dir / f"organism_{s}.png")
