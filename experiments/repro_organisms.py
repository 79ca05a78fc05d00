"""Reproduce F2 — sandbagging organisms fool the weak judge.

    python experiments/repro_organisms.py                    # runs +experiment=organisms at scale=cpu
    python experiments/repro_organisms.py scale=smoke        # any Hydra overrides
    python experiments/repro_organisms.py --from RUN_DIR     # tabulate a finished run

Prints, and writes to outputs/repro/organisms/findings.md, one row per finding: the claim, the
numbers measured, and whether the literature's direction held (experiments/findings.py).
"""

import sys

from findings import main

if __name__ == "__main__":
    sys.exit(main("organisms"))
