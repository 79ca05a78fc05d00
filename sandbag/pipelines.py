"""The experiments ``+experiment=NAME`` can select: each maps (cfg, task, zoo) to (metrics, artifacts)."""

from __future__ import annotations

from sandbag import ladder

EXPERIMENTS = {
    "capability_ladder": ladder.run,
}
