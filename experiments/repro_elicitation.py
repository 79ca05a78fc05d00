"""Reproduce F1, F3, F4, F5, F6 — elicitation and weak-to-strong training.

    python experiments/repro_elicitation.py                    # runs +experiment=elicitation at scale=cpu
    python experiments/repro_elicitation.py scale=smoke        # any Hydra overrides
    python experiments/repro_elicitation.py --from RUN_DIR     # tabulate a finished run

Prints, and writes to outputs/repro/elicitation/findings.md, one row per finding: the claim, the
numbers measured, and whether the literature's direction held (experiments/findings.py).
"""

import sys

from findings import main

if __name__ == "__main__":
    sys.exit(main("elicitation"))
