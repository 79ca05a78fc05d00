"""Reproduce F3 (as detection), F7, F8, F9 — the detector bake-off.

    python experiments/repro_detection.py                    # runs +experiment=detector_bakeoff at scale=cpu
    python experiments/repro_detection.py scale=smoke        # any Hydra overrides
    python experiments/repro_detection.py --from RUN_DIR     # tabulate a finished run

Prints, and writes to outputs/repro/detector_bakeoff/findings.md, one row per finding: the claim, the
numbers measured, and whether the literature's direction held (experiments/findings.py).
"""

import sys

from findings import main

if __name__ == "__main__":
    sys.exit(main("detector_bakeoff"))
