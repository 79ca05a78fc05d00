"""What a person reads: each experiment's tables and plots (``stages``), the gap sweep's report
(``sweep``, also ``python -m sandbag.report DIR``), drawn with one figure helper. A leaf: it sees
metrics and tasks, never models."""

from sandbag.report.scan import scan_outputs
from sandbag.report.stages import (
    bakeoff_outputs,
    elicitation_outputs,
    ladder_outputs,
    organism_outputs,
    supervisor_outputs,
)
from sandbag.report.sweep import GapReport, write_report

__all__ = [
    "GapReport",
    "bakeoff_outputs",
    "elicitation_outputs",
    "ladder_outputs",
    "organism_outputs",
    "scan_outputs",
    "supervisor_outputs",
    "write_report",
]
