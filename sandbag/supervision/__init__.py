"""The weak supervisor: demonstrations and judges built from a weak rung of the ladder."""

from sandbag.supervision.judges import (
    JUDGES,
    Judge,
    make_judge,
    perceived_accuracy,
    recognition,
    register_judge,
)
from sandbag.supervision.weak import demonstrations, weak_answers

__all__ = [
    "JUDGES",
    "Judge",
    "demonstrations",
    "make_judge",
    "perceived_accuracy",
    "recognition",
    "register_judge",
    "weak_answers",
]
