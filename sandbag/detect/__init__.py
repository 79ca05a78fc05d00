"""The blue team's detectors, one file each, and the auditing game that scores them."""

from sandbag.detect import (  # noqa: F401  (registers the built-in detectors)
    combined,
    difficulty_profile,
    gold_finetune_gap,
    judge_statistics,
    linear_probe,
    noise_injection,
    paraphrase_consistency,
)
from sandbag.detect.base import DETECTORS, Detector, View, blank, make_detector, register_detector

__all__ = ["DETECTORS", "Detector", "View", "blank", "make_detector", "register_detector"]
