"""The detector interface: a population in, one suspicion score per member out.

A detector sees only a ``View`` -- what the blue team has: the task's questions without
their answers, its own weak supervisor and judge, a declared number of verified (gold)
items, and its own reference organisms and controls (never the scored ones). It declares
its ``access`` and reports its ``cost`` (forward passes and training steps), so the
auditing game can set what each detector bought against how well it did.

A new detector is one file in this folder (or a user module) with ``@register_detector``
and a YAML in ``conf/detector/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sandbag.registry import Registry
from sandbag.tasks import Items, Task

DETECTORS = Registry("detector")
register_detector = DETECTORS.register


@dataclass
class View:
    """What the blue team may look at. ``questions`` carry no answers (they are blanked)."""

    task: Task
    weak: object  # the blue team's supervisor: member 0 of the weak rung, a population of one
    judge: object
    questions: Items  # unlabelled deployment questions
    context: int  # the context token the models are deployed under
    gold: Items  # verified items: a detector may use at most the number it declares
    reference: list  # [(Population, labels [M] with 1 = sandbagging, context)]: the blue team's own
    cfg: dict = field(default_factory=dict)  # the detector's config block


class Detector:
    """Subclasses set ``access`` and implement ``score``; ``cost`` accumulates as they run;
    ``info`` holds what a detector chose while fitting (reported as ``detector/<name>/<key>``)."""

    name = ""
    access = "black-box"  # black-box | white-box | gold labels (n=...)
    gold_needed = 0  # how many verified items the detector reads

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.cost = {"forward_passes": 0, "train_steps": 0}
        self.info: dict[str, float] = {}

    def fit(self, view: View) -> None:
        """Anything learnt from the blue team's reference population (default: nothing).

        A detector that learns from the reference members sets ``reference_scores`` (one
        array per reference group, out-of-fold) so the combined detector is not fit on
        in-sample scores."""

    def score(self, pop, view: View) -> np.ndarray:
        """Suspicion per member of ``pop`` [M]: higher = more likely sandbagging; NaN = cannot score.

        Each member is scored on its own: the bake-off passes every member of one context and
        architecture at once (organisms, twins, ceilings and controls together), and a score
        must not depend on who else is in ``pop``."""
        raise NotImplementedError

    def gold(self, view: View) -> Items:
        """The first ``gold_needed`` verified items -- the only labels this detector reads."""
        if self.gold_needed > len(view.gold.prompts):
            raise ValueError(
                f"{self.name} needs {self.gold_needed} gold items, the view has {len(view.gold.prompts)}"
            )
        return view.gold.subset(np.arange(self.gold_needed))


def blank(items: Items) -> Items:
    """The questions without their answers (the answer slots hold zeros)."""
    return items.with_answers(np.zeros_like(items.answers))


def make_detector(name: str, cfg: dict) -> Detector:
    return DETECTORS.get_valid(name)(cfg)
