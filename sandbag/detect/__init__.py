"""The blue team's detectors, one file each, and the auditing game that scores them."""

import importlib
import pkgutil

from sandbag.detect.base import DETECTORS, Detector, View, blank, make_detector, register_detector

for _module in pkgutil.iter_modules(__path__):  # every file here registers its detector: a new one is a file
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["DETECTORS", "Detector", "View", "blank", "make_detector", "register_detector"]
