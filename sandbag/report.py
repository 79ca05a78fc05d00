"""What a person reads at the end of a run: a summary table and plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from sandbag.tasks import Task  # noqa: E402


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
            ax.plot(task.difficulties, ys, marker="o", label=f"{role} ({int(metrics[f'{role}/params']):,} params)")
    ax.set(xlabel="difficulty", ylabel="exact-match accuracy", ylim=(-0.02, 1.02), title=task.name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ladder_outputs(task: Task, metrics: dict, out_dir: Path) -> None:
    Console().print(ladder_table(task, metrics))
    plot_ladder(task, metrics, out_dir / "accuracy_by_difficulty.png")
