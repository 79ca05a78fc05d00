"""Reproduce F10 — judge deception across capability gaps.

    python experiments/repro_gap.py                    # runs +experiment=gap_sweep at scale=cpu
    python experiments/repro_gap.py scale=smoke        # any Hydra overrides
    python experiments/repro_gap.py --from RUN_DIR     # tabulate a finished run

Prints, and writes to outputs/repro/gap_sweep/findings.md, one row per finding: the claim, the
numbers measured, and whether the literature's direction held (experiments/findings.py).
"""

import sys

from findings import main

if __name__ == "__main__":
    sys.exit(main("gap_sweep"))
