"""The blue team's elicitation methods: SFT on weak demonstrations or a few gold items, RL
against the weak judge, SFT then RL, and the weak-to-strong confidence-loss baseline."""

import importlib
import pkgutil

from sandbag.elicit.base import ELICITATIONS, Setting, register_elicitation

for _module in pkgutil.iter_modules(__path__):  # every file here registers its methods: a new one is a file
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ELICITATIONS", "Setting", "register_elicitation"]
