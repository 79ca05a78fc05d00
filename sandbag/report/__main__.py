"""``python -m sandbag.report DIR``: re-make the gap-sweep report (report.md, summary.csv, plots)
from the finished gap points under DIR."""

from __future__ import annotations

import sys
from pathlib import Path

from sandbag.report.sweep import write_report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        usage = "usage: python -m sandbag.report DIR  (a finished gap sweep, or any folder of gap points)"
        print(usage, file=sys.stderr)
        return 2
    if not Path(args[0]).is_dir():
        print(f"error: {args[0]!r} is not a directory", file=sys.stderr)
        return 2
    try:
        path = write_report(args[0])
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
