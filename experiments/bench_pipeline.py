"""Where one gap point's time goes: the wall time of every stage (``time/<stage>_s`` in
results.json), its share of the run, and the speedup against a baseline run.

    python experiments/bench_pipeline.py                          # +experiment=gap_point, empty zoo
    python experiments/bench_pipeline.py scale=smoke gap=nano_small
    python experiments/bench_pipeline.py --baseline-with organisms.steps=3200 controls.steps=2000
    python experiments/bench_pipeline.py --from RUN_DIR [--baseline RUN_DIR]

Positional arguments are Hydra overrides of the measured run. ``--baseline-with`` runs the same
gap point a second time with these overrides on top (the previous settings), ``--baseline``
reads a finished run instead. Every run starts from an empty zoo of its own, so the times
include training everything. Prints a table; ``--out FILE`` also writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_gap_point(overrides: list[str], work: Path, name: str) -> Path:
    """One ``+experiment=gap_point`` run from an empty zoo; its run directory."""
    run_dir, zoo = work / name, work / f"{name}_zoo"
    cmd = [sys.executable, "-m", "sandbag.run", "+experiment=gap_point", "logger=none"]
    cmd += [f"zoo.dir={zoo}", f"hydra.run.dir={run_dir}", *overrides]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        sys.exit(f"error: the run failed (exit {proc.returncode}): {' '.join(cmd)}")
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    return run_dir


def stage_times(run_dir: Path) -> dict[str, float]:
    """``{stage: seconds}`` from a run's results.json, and ``total`` (its wall time)."""
    metrics = json.loads((Path(run_dir) / "results.json").read_text())["metrics"]
    out = {k[len("time/") : -len("_s")]: float(v) for k, v in metrics.items() if k.startswith("time/")}
    out["total"] = float(metrics.get("wall_time_s", sum(out.values())))
    return out


def table(now: dict[str, float], before: dict[str, float] | None = None) -> str:
    """Markdown: stage, seconds, share of the total, and against the baseline."""
    head = "| stage | s | share |" + (" baseline s | speedup |" if before else "")
    lines = [head, "|---|---|---|" + ("---|---|" if before else "")]
    stages = sorted((k for k in now if k != "total"), key=lambda k: -now[k]) + ["total"]
    for k in stages:
        row = f"| {k} | {now[k]:.1f} | {now[k] / now['total']:.0%} |"
        if before:
            b = before.get(k)
            row += f" {b:.1f} | {b / now[k]:.2f}x |" if b is not None and now[k] > 0 else " – | – |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the measured run")
    parser.add_argument("--from", dest="from_dir", type=Path, help="read a finished run instead of running")
    parser.add_argument("--baseline", type=Path, help="a finished baseline run")
    parser.add_argument(
        "--baseline-with", nargs="+", default=None, help="run the baseline with these overrides"
    )
    parser.add_argument("--out", type=Path, help="also write the times as JSON")
    args = parser.parse_args()
    for d in filter(None, (args.from_dir, args.baseline)):
        if not (d / "results.json").is_file():
            print(
                f"error: {d}: no results.json there (a finished run's directory is needed)", file=sys.stderr
            )
            return 2
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    now = stage_times(args.from_dir or run_gap_point(args.overrides, work, "measured"))
    before = None
    if args.baseline:
        before = stage_times(args.baseline)
    elif args.baseline_with:
        before = stage_times(run_gap_point([*args.overrides, *args.baseline_with], work, "baseline"))
    print(table(now, before))
    if args.out:
        args.out.write_text(json.dumps({"measured": now, "baseline": before}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
