"""Every member seed and random stream of a run, derived in one place from ``cfg.seed``.

Stages share trained models through the zoo only if they compute the same seeds: the
organisms the organisms stage trains are the bake-off's and elicitation's because all three
ask ``members("organisms", ...)`` here. Each role owns a block of member seeds, so no two
roles ever draw the same one; each random stream owns a salt, so no two streams coincide.
"""

from __future__ import annotations

import numpy as np

BLOCK = 1000  # member seeds of run seed s lie in [s * BLOCK, (s + 1) * BLOCK)
OFFSETS = {
    "ladder": 0,
    "organisms": 100,  # the scored organisms, shared by organisms, bake-off and elicitation
    "controls": 200,  # the organisms stage's benign controls
    "bakeoff_controls": 400,
    "reference_organisms": 700,  # the blue team's own, disjoint from the scored ones
    "reference_controls": 800,
}
SALTS = {
    "ladder_batches": 0x5A4D,
    "eval": 0xE7A1,
    "recognition": None,  # the run seed alone
    "alphabet": 0xA1FA,
    "demos": 0xDE40,
    "verifier_pool": 0x7E41,
    "verifier_batches": 0x7E42,
    "organism_pool": 0x0F6A,
    "organism_batches": 0x0F6B,
    "organism_check": 0x0F6C,  # held-out questions of organisms.stop_every
    "control_pool": 0xC0DE,
    "control_batches": 0xC0DF,
    "control_select": 0x5E1E,
    "bakeoff_gold": 0x601D,
    "elicit_gold": 0x601F,
    "elicit_batches": 0xE11C,
    "elicit_curve": 0xE11D,
    "rl": 0x6A90,
}


def members(role: str, seed: int, n: int) -> list[int]:
    """The seeds of ``n`` members of ``role`` in run ``seed``."""
    if OFFSETS[role] + n > _next(role):
        raise ValueError(f"{n} {role} members overflow their block of seeds")
    return [seed * BLOCK + OFFSETS[role] + i for i in range(n)]


def capacity(role: str) -> int:
    """How many members ``role`` may have: the size of its block of seeds."""
    return _next(role) - OFFSETS[role]


def _next(role: str) -> int:
    later = [o for o in OFFSETS.values() if o > OFFSETS[role]]
    return min(later, default=BLOCK)


def rng(stream: str, *keys: int) -> np.random.Generator:
    """The random stream ``stream`` keyed by ``keys`` (a seed, a member's seed, a chunk)."""
    salt = SALTS[stream]
    return np.random.default_rng([*keys] if salt is None else [*keys, salt])
