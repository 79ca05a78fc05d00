"""The experiments ``+experiment=NAME`` selects. Each maps (cfg, task, zoo, out_dir) to metrics
and writes its own tables and plots into ``out_dir``; this is where the red team's populations
are assembled and handed to the blue team."""

from __future__ import annotations

from sandbag.pipelines import bakeoff, elicitation, gap_point, gap_scan, ladder, organisms, supervisor_sweep

EXPERIMENTS = {
    "capability_ladder": ladder.experiment,
    "organisms": organisms.run,
    "detector_bakeoff": bakeoff.run,
    "elicitation": elicitation.run,
    "gap_point": gap_point.run,  # one job of the gap sweep: the three stages above for one pair
    "gap_scan": gap_scan.run,  # every rung and pair of rungs: which pairs have a capacity gap
    "supervisor_sweep": supervisor_sweep.run,  # elicitation by supervisors of increasing strength
}
