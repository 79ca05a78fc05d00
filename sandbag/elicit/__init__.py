"""The blue team's elicitation methods: SFT on weak demonstrations or a few gold items, RL
against the weak judge, SFT then RL, and the weak-to-strong confidence-loss baseline."""

from sandbag.elicit import rl, sft, w2s  # noqa: F401  (registers the built-in methods)
from sandbag.elicit.base import ELICITATIONS, Setting, register_elicitation

__all__ = ["ELICITATIONS", "Setting", "register_elicitation"]
