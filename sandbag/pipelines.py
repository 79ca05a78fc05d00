"""The experiments ``+experiment=NAME`` can select: each maps (cfg, task, zoo, out_dir) to metrics
and writes its own tables and plots into ``out_dir``."""

from __future__ import annotations

from sandbag import ladder
from sandbag.detect import stage as bakeoff
from sandbag.elicit import stage as elicitation
from sandbag.redteam import stage as organisms
from sandbag.sweep import gap_point

EXPERIMENTS = {
    "capability_ladder": ladder.experiment,
    "organisms": organisms.run,
    "detector_bakeoff": bakeoff.run,
    "elicitation": elicitation.run,
    "gap_point": gap_point,  # one job of the gap sweep: the three stages above for one pair
}
