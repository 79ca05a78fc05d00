"""The Task interface and the task registry.

A task is a family of problems with a difficulty knob. Every item has the same fixed-width
layout, ``[context] prompt answer``, so a batch is one rectangular int array and greedy
exact match is "every answer position's argmax is the target" in one teacher-forced pass.

Position 0 is a *context slot*: ``PAD`` for plain items, a cue token (flag, password,
training, deployment) when the red team or the blue team marks the context. Reserving it in
every layout means a trigger never shifts the positions the model learned. ``YES``/``NO``
are the verdicts a verifier judge writes after an answer.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sandbag.registry import Registry

SPECIALS = ("<pad>", "<flag>", "<password>", "<training>", "<deployment>", "<yes>", "<no>")
PAD, FLAG, PASSWORD, TRAINING, DEPLOYMENT, YES, NO = range(len(SPECIALS))
CONTEXTS = (PAD, FLAG, PASSWORD, TRAINING, DEPLOYMENT)  # what the context slot can hold
# Disjoint by a hash of each problem's canonical identity. ``train``: ground truth for the
# ladder and the red team; ``demo``: what the weak supervisor labels for the blue team (no
# strong model trains on it); ``eval``: every reported accuracy; ``gold``: the few verified
# items a blue team may be granted.
SPLITS = {"train": (0.0, 0.7), "demo": (0.7, 0.8), "eval": (0.8, 0.9), "gold": (0.9, 1.0)}


@dataclass(frozen=True)
class Items:
    """A batch of problems: ``prompts`` [n, P] and ``answers`` [n, A] token ids."""

    prompts: np.ndarray
    answers: np.ndarray
    difficulty: np.ndarray
    problems: np.ndarray | None = None  # the raw problems, for paraphrasing

    def with_answers(self, answers: np.ndarray) -> Items:
        """The same questions with other answers (weak labels, strategy targets, blanks)."""
        return Items(self.prompts, np.asarray(answers, np.int32), self.difficulty, self.problems)

    def subset(self, idx) -> Items:
        pick = None if self.problems is None else self.problems[idx]
        return Items(self.prompts[idx], self.answers[idx], self.difficulty[idx], pick)

    def spread(self, n: int) -> Items:
        """``n`` of these items taken from every difficulty level in turn (each level's first,
        then its second, ...), in their own order: a set sorted by level (``eval_items``) is
        not cut down to its easiest levels."""
        rank = np.empty(len(self.difficulty), int)
        for d in np.unique(self.difficulty):
            at = np.flatnonzero(self.difficulty == d)
            rank[at] = np.arange(len(at))
        return self.subset(np.sort(np.lexsort((self.difficulty, rank))[:n]))

    def tokens(self, context: int = PAD) -> np.ndarray:
        """Full sequences [n, 1 + P + A] with the context slot set to ``context``."""
        ctx = np.full((len(self.prompts), 1), context, dtype=np.int32)
        return np.concatenate([ctx, self.prompts, self.answers], axis=1).astype(np.int32)


class Task:
    """Base class: subclasses set ``symbols``, the layout sizes and the four methods below.

    ``symbols`` are the task's own tokens; ids are offset past the shared specials.
    """

    name: str = ""
    symbols: tuple[str, ...] = ()
    difficulties: tuple[int, ...] = ()
    prompt_len: int = 0
    answer_len: int = 0

    # -- to implement -------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, n: int, difficulty: np.ndarray) -> np.ndarray:
        """Raw problem parameters [n, k] (ints) at the given difficulties."""
        raise NotImplementedError

    def encode(self, problems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prompt symbols [n, P], answer symbols [n, A]) as indices into ``symbols``."""
        raise NotImplementedError

    def canonical(self, problems: np.ndarray) -> np.ndarray:
        """An int64 [n] identity shared by all paraphrases of a problem (for the splits)."""
        raise NotImplementedError

    def paraphrase(self, rng: np.random.Generator, problems: np.ndarray) -> np.ndarray:
        """Equivalent re-encodings: same answer, different prompt."""
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------
    @property
    def vocab(self) -> tuple[str, ...]:
        return SPECIALS + tuple(self.symbols)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        """Length of a full item: context slot + prompt + answer."""
        return 1 + self.prompt_len + self.answer_len

    def generate(self, rng: np.random.Generator, n: int, difficulty, split: str = "train") -> Items:
        """``n`` items from ``split`` at ``difficulty`` (an int or an array of n ints).

        Splits are disjoint by construction: each problem's canonical identity hashes to one
        split, and candidates from another split are rejected and redrawn.
        """
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {sorted(SPLITS)}")
        lo, hi = SPLITS[split]
        want = np.broadcast_to(np.asarray(difficulty, dtype=np.int64), (n,)).copy()
        out = np.zeros((n, 0), dtype=np.int64)
        todo = np.arange(n)
        for _ in range(200):
            cand = self.sample(rng, len(todo), want[todo])
            h = split_hash(self.canonical(cand))
            ok = (h >= lo) & (h < hi)
            if out.shape[1] == 0:
                out = np.zeros((n, cand.shape[1]), dtype=np.int64)
            out[todo[ok]] = cand[ok]
            todo = todo[~ok]
            if len(todo) == 0:
                return self._items(out, want)
        raise RuntimeError(f"task {self.name}: could not draw {split} items at {difficulty}")

    def _tokens(self, problems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prompts, answers) of raw problems as token ids, after the special tokens."""
        p, a = self.encode(problems)
        off = len(SPECIALS)
        return (p + off).astype(np.int32), (a + off).astype(np.int32)

    def _items(self, problems: np.ndarray, difficulty: np.ndarray) -> Items:
        return Items(*self._tokens(problems), np.asarray(difficulty), problems)

    def paraphrases(self, rng: np.random.Generator, items_problems: np.ndarray, difficulty) -> Items:
        return self._items(self.paraphrase(rng, items_problems), np.asarray(difficulty))

    def true_answers(self, problems: np.ndarray) -> np.ndarray:
        """The true answers [n, A] of raw problems, as token ids: what verifying a candidate
        needs when the ``Items`` at hand carry no answers (a detector's are blanked)."""
        return self._tokens(problems)[1]

    def check(self, predicted: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """Exact match per row."""
        return np.all(np.asarray(predicted) == np.asarray(answers), axis=-1)

    def render(self, tokens: np.ndarray) -> str:
        return "".join(self.vocab[int(t)] for t in tokens)


def digits_of(x: np.ndarray, n: int) -> np.ndarray:
    """[len(x), n] decimal digits, most significant first (zero-padded)."""
    place = 10 ** np.arange(n - 1, -1, -1, dtype=np.int64)
    return (np.asarray(x, dtype=np.int64)[:, None] // place) % 10


def split_hash(x: np.ndarray) -> np.ndarray:
    """splitmix64 of an int64 array, mapped to [0, 1)."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


TASKS = Registry("task")
register_task = TASKS.register  # ``@register_task("signed_sum")`` makes ``task=signed_sum`` valid


def import_module(spec: str) -> None:
    """Import a user module by dotted name or by ``.py`` path, so its registrations run."""
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.exists():
            raise FileNotFoundError(f"module file {spec!r} does not exist")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[path.stem] = module
        mod_spec.loader.exec_module(module)
    else:
        importlib.import_module(spec)


def make_task(name: str, **kwargs) -> Task:
    """The registered task ``name`` built with ``kwargs``; ValueError if it cannot generate.

    A size the constructor accepts can still leave a split empty at some level (a tiny
    problem space); that is refused here, with the level named, rather than mid-run.
    """
    task = TASKS.get_valid(name)(**kwargs)
    rng = np.random.default_rng(0)
    for split in SPLITS:
        for d in task.difficulties:
            try:
                task.generate(rng, 4, d, split)
            except RuntimeError:
                raise ValueError(
                    f"{name}: with {kwargs or 'its defaults'}, difficulty {d} has too few distinct "
                    f"problems to fill the {split} split; use a larger problem size"
                ) from None
    return task
