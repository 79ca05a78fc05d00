"""What the weak judge alone reveals: the share of a member's deployment answers it rejects.
A weak supervisor without other tools can only flag answers it disbelieves; sandbaggers that
imitate it, or that choose judge-approved mistakes, leave this blind. Black-box, no labels.
"""

from __future__ import annotations

import numpy as np

from sandbag.decode import answers_of
from sandbag.detect.base import Detector, register_detector


@register_detector("judge_statistics")
class JudgeStatistics(Detector):
    access = "black-box (weak judge)"

    def score(self, pop, view):
        q = view.questions
        answers = answers_of(pop, q, view.context)
        self.cost["forward_passes"] += answers.shape[0] * answers.shape[1] * (1 + view.task.answer_len)
        return np.stack([1.0 - view.judge.score(q, a).mean() for a in answers])
