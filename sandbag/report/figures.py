"""The one figure helper: every plot of the sandbox is drawn inside ``figure(path)``."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def figure(path: Path, figsize=(5, 3.5)):
    """Yields (fig, ax); on leaving, the figure is laid out, saved as a PNG at ``path`` and closed."""
    import matplotlib  # here, not at the top: a run that stops before its plots never pays for it

    matplotlib.use("Agg")  # files only: runs have no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    try:
        yield fig, ax
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
