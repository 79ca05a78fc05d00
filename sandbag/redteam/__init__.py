"""The red team: triggers, sandbagging strategies, organisms and the benign controls they hide among."""

from sandbag.redteam.adaptive import OBJECTIVES, register_objective
from sandbag.redteam.controls import CONTROLS, train_control
from sandbag.redteam.organisms import RedTeam, train_organisms
from sandbag.redteam.strategies import STRATEGIES, TWIN, Situation, register_strategy
from sandbag.redteam.triggers import TRIGGERS, Trigger, get_trigger

__all__ = [
    "CONTROLS",
    "OBJECTIVES",
    "STRATEGIES",
    "TRIGGERS",
    "TWIN",
    "RedTeam",
    "Situation",
    "Trigger",
    "get_trigger",
    "register_objective",
    "register_strategy",
    "train_control",
    "train_organisms",
]
