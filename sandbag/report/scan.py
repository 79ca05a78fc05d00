"""The gap scan's outputs: every rung's accuracy by difficulty with its seed spread, every
(weak, strong) pair's gap against the ladder's criteria, and the pairs that pass -- as
command-line overrides to paste and as ``conf/gap/`` entries to save, since choosing the pair
is the step a user of a new task gets stuck on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table

from sandbag.criteria import Pair
from sandbag.report.figures import figure
from sandbag.report.stages import _console
from sandbag.tasks import Task

CRITERIA = ("weak easiest", "weak hardest", "max gap", "largest rise", "weak seed spread")  # criteria order


def rung_rows(task: Task, accs: dict[str, np.ndarray], sizes: dict[str, int]) -> tuple[list, list]:
    """Header and rows, one column per rung (a scan has fewer rungs than a task has levels):
    per level the mean over seeds and (min-max)."""
    header = ["", *accs]
    rows = [["params", *(f"{sizes[name]:,}" for name in accs)]]
    for j, k in enumerate(task.difficulties):
        cells = [f"{a[:, j].mean():.2f} ({a[:, j].min():.2f}-{a[:, j].max():.2f})" for a in accs.values()]
        rows.append([f"d{k}", *cells])
    rows.append(["all", *(f"{a.mean():.2f}" for a in accs.values())])
    return header, rows


def pair_rows(task: Task, pairs: list[Pair]) -> tuple[list, list]:
    """Header and rows: the overall gap, then each criterion's number with a pass/fail mark."""
    header = ["weak", "strong", "gap", *CRITERIA, "passes"]
    rows = []
    for p in pairs:
        numbers = [detail.split()[-1] for _, _, detail in p.checks]
        numbers[CRITERIA.index("max gap")] += f" (d{task.difficulties[p.level]})"
        marks = [f"{n} {'ok' if ok else 'FAIL'}" for n, (_, ok, _) in zip(numbers, p.checks)]
        rows.append([p.weak, p.strong, f"{p.gap:.2f}", *marks, "yes" if p.passes else "no"])
    return header, rows


def lower_rung(pair: Pair, order: list[str]) -> str:
    """The ``lower_rung`` control's rung: the one just below the strong rung (as in ``conf/gap/``)."""
    return order[order.index(pair.strong) - 1]


def overrides(pair: Pair, order: list[str]) -> str:
    return f"model@weak={pair.weak} model@strong={pair.strong} model@lower={lower_rung(pair, order)}"


def gap_yaml(pair: Pair, order: list[str]) -> str:
    """A ``conf/gap/<weak>_<strong>.yaml`` entry for ``gap=<weak>_<strong>``."""
    return (
        "# @package _global_\n"
        f"# A capability gap found by +experiment=gap_scan: max gap {pair.gap_max:.2f}, "
        f"overall {pair.gap:.2f}.\n"
        "defaults:\n"
        f"  - override /model@weak: {pair.weak}\n"
        f"  - override /model@strong: {pair.strong}\n"
        f"  - override /model@lower: {lower_rung(pair, order)}\n"
    )


def passing_lines(task: Task, pairs: list[Pair], order: list[str], known: set[str]) -> list[str]:
    """One ready-to-run line per passing pair, largest gap first."""
    good = sorted((p for p in pairs if p.passes), key=lambda p: -p.gap_max)
    if not good:
        return ["No pair meets the ladder's criteria: the pairs table shows what each one fails."]
    lines = ["Pairs that meet the ladder's criteria, largest gap first (add to any experiment's command):"]
    for p in good:
        gap = f"gap={p.name}"
        if p.name not in known:
            gap += f" once gap_{p.name}.yaml is saved as conf/gap/{p.name}.yaml"
        at = f"max gap {p.gap_max:.2f} at d{task.difficulties[p.level]}"
        lines.append(f"  {overrides(p, order)}    # {at}; gap_point/gap_sweep: {gap}")
    return lines


def markdown(header: list, rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def rich_table(title: str, header: list, rows: list, n_names: int = 1) -> Table:
    """Names in the first ``n_names`` columns, numbers after them."""
    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i < n_names else "right")
    for r in rows:
        table.add_row(*r)
    return table


def plot_scan(task: Task, accs: dict[str, np.ndarray], sizes: dict[str, int], path: Path) -> None:
    """Mean accuracy by difficulty per rung, the band spanning its seeds (min to max)."""
    ks = task.difficulties
    with figure(path, (6, 4)) as (fig, ax):
        for i, (name, a_SxK) in enumerate(accs.items()):
            color = f"C{i % 10}"
            ax.plot(ks, a_SxK.mean(0), "o-", color=color, label=f"{name} ({sizes[name]:,} params)")
            ax.fill_between(ks, a_SxK.min(0), a_SxK.max(0), color=color, alpha=0.2)
        n = next(iter(accs.values())).shape[0]
        ax.set(xlabel="difficulty", ylabel="exact-match accuracy", ylim=(-0.02, 1.02), xticks=ks)
        ax.set_title(f"{task.name}: every rung, {n} seeds each (band: min-max)")
        ax.legend(fontsize=7)


def scan_outputs(
    task: Task,
    accs: dict[str, np.ndarray],
    sizes: dict[str, int],
    pairs: list[Pair],
    known: set[str],
    out_dir: Path,
) -> None:
    """Print and write ``gap_scan.md``, ``gap_scan.png`` and a ``gap_<weak>_<strong>.yaml`` per
    passing pair. ``accs`` is ordered smallest rung first; ``known`` names the existing gap entries."""
    order = list(accs)
    rungs, pair_table = rung_rows(task, accs, sizes), pair_rows(task, pairs)
    lines = passing_lines(task, pairs, order, known)
    console = _console()
    console.print(rich_table(f"{task.name}: accuracy by difficulty, mean (min-max over seeds)", *rungs))
    console.print(
        rich_table("every (weak, strong) pair against the ladder's criteria", *pair_table, n_names=2)
    )
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    (out_dir / "gap_scan.md").write_text(
        f"# Gap scan: task {task.name}\n\n## Accuracy by difficulty, mean (min-max over seeds)\n\n"
        f"{markdown(*rungs)}\n## Pairs against the ladder's criteria\n\n{markdown(*pair_table)}\n"
        + "\n".join(lines)
        + "\n"
    )
    plot_scan(task, accs, sizes, out_dir / "gap_scan.png")
    for p in pairs:
        if p.passes:
            (out_dir / f"gap_{p.name}.yaml").write_text(gap_yaml(p, order))
