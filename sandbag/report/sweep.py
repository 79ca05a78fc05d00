"""The gap sweep's report: one row per finished gap point, tables and plots over the gap.

``+experiment=gap_sweep`` is ``gap_point`` swept by Hydra over the ``gap`` config group and
seeds; when the sweep ends, ``GapReport`` (a Hydra callback) reads every job's ``results.json``
and writes ``report.md``, ``summary.csv`` and plots into the sweep directory.
``python -m sandbag.report DIR`` makes the same report from any directory holding finished gap
points (a Hydra sweep, or W&B agent runs under ``outputs/``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from sandbag.report.figures import figure

log = logging.getLogger(__name__)


# What may differ between the gap points of one sweep: the pair, the seed, and where and how
# each ran. Anything else (task, scale, judge, strategies, ...) makes points of other sweeps.
PER_POINT = ("seed", "weak", "strong", "lower", "zoo", "logger", "distributed", "cpu_devices", "sweep_gaps")


def load_points(root: Path) -> list[dict]:
    """Every finished gap point under ``root``: {"dir", "weak", "strong", "seed", "metrics",
    "setting"} (``setting``: its config but ``PER_POINT``)."""
    points = []
    for path in sorted(Path(root).rglob("results.json")):
        body = json.loads(path.read_text())
        config = body.get("config", {})
        if config.get("experiment") != "gap_point":
            continue
        points.append(
            {
                "dir": str(path.parent.relative_to(root)),
                "weak": config["weak"]["name"],
                "strong": config["strong"]["name"],
                "seed": int(config["seed"]),
                "metrics": body["metrics"],
                "setting": {k: v for k, v in config.items() if k not in PER_POINT},
            }
        )
    return points


def check_one_sweep(points: list[dict], root: Path) -> None:
    """Refuse to pool points of different settings, or one (pair, seed) run twice, as if they
    were the seeds of one sweep (``ValueError`` naming them)."""
    first = points[0]
    for p in points[1:]:
        differ = sorted(
            k
            for k in first["setting"].keys() | p["setting"].keys()
            if first["setting"].get(k) != p["setting"].get(k)
        )
        if differ:
            raise ValueError(
                f"the gap points under {root} are not one sweep: {first['dir']} and {p['dir']} differ in "
                f"{', '.join(differ)}; report each sweep's folder on its own"
            )
    runs: dict[tuple, str] = {}
    for p in points:
        key = (p["weak"], p["strong"], p["seed"])
        if key in runs:
            raise ValueError(
                f"{p['weak']}/{p['strong']} seed {p['seed']} ran twice under {root} ({runs[key]}, "
                f"{p['dir']}); keep one of them, or report each folder on its own"
            )
        runs[key] = p["dir"]


def _names(points: list[dict], prefix: str, suffix: str) -> list[str]:
    """The ``X`` of every metric ``prefix X suffix`` (X without further slashes)."""
    out = set()
    for p in points:
        for k in p["metrics"]:
            if k.startswith(prefix) and k.endswith(suffix):
                middle = k[len(prefix) : len(k) - len(suffix)]
                if middle and "/" not in middle:
                    out.add(middle)
    return sorted(out)


def summary_rows(points: list[dict]) -> tuple[list[str], list[dict]]:
    """One row per job: the pair, the gap, and the headline number of every stage."""
    detectors = _names(points, "detector/", "/auroc")
    methods = _names(points, "elicit/", "/recovery")
    strategies = _names(points, "organism/", "/acc_triggered")
    rows = []
    for p in sorted(points, key=lambda p: (p["metrics"].get("gap", math.nan), p["seed"])):
        m = p["metrics"]
        row = {
            "pair": f"{p['weak']}/{p['strong']}",
            "weak": p["weak"],
            "strong": p["strong"],
            "seed": p["seed"],
            "gap": m.get("gap"),
            "weak_acc": m.get("weak/acc"),
            "strong_acc": m.get("strong/acc"),
        }
        for d in detectors:
            for part in ("auroc", "auroc_lo", "auroc_hi", "tpr_at_5fpr"):
                row[f"detector/{d}/{part}"] = m.get(f"detector/{d}/{part}")
        for meth in methods:
            row[f"elicit/{meth}/recovery"] = m.get(f"elicit/{meth}/recovery")
            row[f"elicit/{meth}/recovery_std"] = m.get(f"elicit/{meth}/recovery_std")
        for meth in ("w2s_plain", "confidence_loss"):
            if f"elicit/{meth}/pgr" in m:
                row[f"elicit/{meth}/pgr"] = m[f"elicit/{meth}/pgr"]
        for s in strategies:
            perceived = m.get(f"organism/{s}/judge_acc_triggered")
            true = m.get(f"organism/{s}/acc_triggered")
            row[f"organism/{s}/acc_triggered"] = true
            row[f"organism/{s}/acc_untriggered"] = m.get(f"organism/{s}/acc_untriggered")
            row[f"deception/{s}"] = None if perceived is None or true is None else perceived - true
        for k in sorted(k for k in m if k.startswith("time/")):
            row[k] = m[k]
        row["zoo_trained"] = m.get("zoo/trained")
        row["zoo_reused"] = m.get("zoo/reused")
        row["wall_time_s"] = m.get("wall_time_s")
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return columns, rows


def _by_pair(rows: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gap, mean, std over seeds) per pair for column ``key``, sorted by gap."""
    pairs: dict[str, list[dict]] = {}
    for r in rows:
        if r.get(key) is not None and r.get("gap") is not None:
            pairs.setdefault(r["pair"], []).append(r)
    out = []
    for group in pairs.values():
        vals = np.array([r[key] for r in group], float)
        vals = vals[~np.isnan(vals)]  # a pair whose every seed is NaN is NaN, without numpy's warning
        mean, sd = (vals.mean(), vals.std()) if vals.size else (np.nan, np.nan)
        out.append((np.mean([r["gap"] for r in group]), mean, sd))
    out.sort()
    return tuple(np.array(x) for x in zip(*out)) if out else (np.array([]),) * 3


def _plot(path: Path, title: str, ylabel: str, series: dict, band=None) -> None:
    """``series``: label -> (gap, y, lo, hi); lo/hi draw a band."""
    with figure(path, (6, 4)) as (fig, ax):
        for label, (x, y, lo, hi) in series.items():
            if len(x) == 0:
                continue
            (line,) = ax.plot(x, y, "o-", label=label)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        if band is not None:
            ax.axhline(band, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("capability gap (strong acc - weak acc)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=7)


def plots(columns: list[str], rows: list[dict], out_dir: Path) -> list[Path]:
    """Detector AUROC, elicitation recovery and judge deception, each against the gap."""
    made = []
    detectors = [c.split("/")[1] for c in columns if c.startswith("detector/") and c.endswith("/auroc")]
    series = {}
    for d in detectors:
        x, y, _ = _by_pair(rows, f"detector/{d}/auroc")
        _, lo, _ = _by_pair(rows, f"detector/{d}/auroc_lo")
        _, hi, _ = _by_pair(rows, f"detector/{d}/auroc_hi")
        series[d] = (x, y, lo, hi)
    path = out_dir / "detector_auroc_vs_gap.png"
    # one seed: the interval itself; several: each bound averaged over the seeds, not an interval of the mean
    _plot(path, "Detection vs gap (band: 95% CI, bounds averaged over seeds)", "AUROC", series, band=0.5)
    made.append(path)
    for kind, ylabel, title, band in (
        ("elicit/", "recovery", "Elicitation vs gap (band: +-1 sd over seeds)", 0.0),
        ("deception/", "judge-perceived - true accuracy", "Judge deception vs gap (F10)", 0.0),
    ):
        series = {}
        for c in columns:
            if c.startswith(kind) and (kind == "deception/" or c.endswith("/recovery")):
                x, y, sd = _by_pair(rows, c)
                series[c.split("/")[1]] = (x, y, y - sd, y + sd)
        path = out_dir / ("elicitation_recovery_vs_gap.png" if kind == "elicit/" else "deception_vs_gap.png")
        _plot(path, title, ylabel, series, band=band)
        made.append(path)
    return made


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown(columns: list[str], rows: list[dict]) -> str:
    """``report.md``: per-gap tables (means over seeds) and the zoo's trained/reused counts."""
    pairs = list(dict.fromkeys(r["pair"] for r in rows))

    def table(title: str, cols: list[str], label=lambda c: c) -> list[str]:
        out = [f"## {title}", "", "| pair | gap | " + " | ".join(label(c) for c in cols) + " |"]
        out.append("|" + "---|" * (len(cols) + 2))
        for pair in pairs:
            group = [r for r in rows if r["pair"] == pair]
            cells = []
            for c in cols:
                vals = [r[c] for r in group if r.get(c) is not None]
                if not vals:
                    cells.append("")
                elif len(vals) == 1:
                    cells.append(_fmt(vals[0]))
                else:
                    cells.append(f"{_fmt(float(np.mean(vals)))} ± {_fmt(float(np.std(vals)))}")
            gap = float(np.mean([r["gap"] for r in group]))
            out.append(f"| {pair} (n={len(group)}) | {gap:.2f} | " + " | ".join(cells) + " |")
        return [*out, ""]

    lines = ["# Gap sweep", "", f"{len(rows)} jobs over {len(pairs)} (weak/strong) pairs.", ""]
    lines += table("Ladder", ["weak_acc", "strong_acc"])
    det = [c for c in columns if c.startswith("detector/") and c.endswith("/auroc")]
    lines += table("Detector AUROC (organisms vs benign controls)", det, lambda c: c.split("/")[1])
    rec = [c for c in columns if c.startswith("elicit/") and (c.endswith("/recovery") or c.endswith("/pgr"))]
    lines += table("Elicitation (recovery of the hidden gap; w2s rows: PGR)", rec, lambda c: c[7:])
    org = [c for c in columns if c.startswith("organism/") or c.startswith("deception/")]
    lines += table("Organisms and judge deception (perceived - true, triggered)", org, lambda c: c)
    trained = sum(r["zoo_trained"] or 0 for r in rows)
    reused = sum(r["zoo_reused"] or 0 for r in rows)
    wall = sum(r["wall_time_s"] or 0 for r in rows)
    stages = sorted({c for c in columns if c.startswith("time/")})
    spent = {c: sum(r.get(c) or 0 for r in rows) for c in stages}
    lines += ["## Where the time went (summed over jobs)", "", "| stage | minutes |", "|---|---|"]
    lines += [f"| {c[5:-2]} | {spent[c] / 60:.1f} |" for c in sorted(stages, key=spent.get, reverse=True)]
    lines += [""]
    lines += [
        "## Cost",
        "",
        f"Zoo: {int(trained)} models trained, {int(reused)} loads of an already-trained model "
        f"(summed over jobs). Job wall time summed: {wall / 60:.1f} min.",
        "",
        "Plots: `detector_auroc_vs_gap.png`, `elicitation_recovery_vs_gap.png`, `deception_vs_gap.png`.",
        "",
    ]
    return "\n".join(lines)


def write_report(root: str | Path) -> Path:
    """Aggregate every gap point under ``root`` into report.md, summary.csv and plots there."""
    root = Path(root)
    points = load_points(root)
    if not points:
        raise FileNotFoundError(f"no finished gap points (results.json of experiment gap_point) under {root}")
    check_one_sweep(points, root)
    columns, rows = summary_rows(points)
    with open(root / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    plots(columns, rows, root)
    path = root / "report.md"
    path.write_text(markdown(columns, rows))
    log.info("gap report: %d jobs -> %s", len(rows), path)
    return path


class GapReport(Callback):
    """Hydra callback: when a multirun ends, aggregate its jobs into the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from sandbag.parallel import primary_process

        if not primary_process():  # a multi-process run: process 0 writes the jobs' outputs
            return
        try:
            path = write_report(config.hydra.sweep.dir)
        except ValueError as e:  # a sweep directory reused by another sweep: the jobs' own results stand
            log.error("gap sweep report not written: %s", e)
            return
        print(f"gap sweep report: {path}")
