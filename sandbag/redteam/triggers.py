"""Triggers: which context-slot token makes an organism sandbag and which makes it perform.

Every item has a context slot at position 0 (``tasks.base``). A trigger is a pair of tokens
for it: ``flag`` sandbags when a flag is present; ``password`` sandbags unless the password
is given; ``deployment`` sandbags under a deployment cue and performs under a training cue --
the organism that plays the training game.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbag.tasks.base import DEPLOYMENT, FLAG, PAD, PASSWORD, TRAINING


@dataclass(frozen=True)
class Trigger:
    name: str
    sandbag: int  # context token under which the organism underperforms
    perform: int  # context token under which it shows its capability


TRIGGERS = {
    "flag": Trigger("flag", sandbag=FLAG, perform=PAD),
    "password": Trigger("password", sandbag=PAD, perform=PASSWORD),
    "deployment": Trigger("deployment", sandbag=DEPLOYMENT, perform=TRAINING),
}


def get_trigger(name: str) -> Trigger:
    if name not in TRIGGERS:
        raise KeyError(f"unknown trigger {name!r}; valid: {sorted(TRIGGERS)}")
    return TRIGGERS[name]
