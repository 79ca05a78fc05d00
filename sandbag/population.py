"""One type for every group of models the sandbox trains: a rung of the ladder, a population of
organisms, benign controls, students. Parameters are stacked over members (a leading axis), so
a population trains, evaluates and decodes in one ``vmap``ped program; a single model is a
population of one."""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import numpy as np

from sandbag.models import ModelConfig, param_count


def over_members(fn, *stacked):
    """``fn(member_i, ...)`` for every member of pytrees stacked over members, inside a jitted
    function: one member after another (``lax.map``) on the CPU, where XLA's batched matmuls are
    slower than a loop over plain ones (medium, 8 members, batches of 512: teacher-forced
    evaluation 1.4x, greedy decoding 1.5x faster; REPORT.md), vmapped on accelerators. Training stays vmapped:
    there the two are within 5%."""
    if jax.default_backend() == "cpu":
        return jax.lax.map(lambda args: fn(*args), stacked)
    return jax.vmap(fn)(*stacked)


def each_member(fn, params) -> np.ndarray:
    """``fn(params)`` -> [N, ...] for params stacked over N members. On the CPU, ``fn`` is called
    on one member at a time (a population of one) and the results are joined, so its programs
    have one shape whatever the population's size: members run one after another there anyway
    (``over_members``), and a smoke gap sweep compiled 35 greedy decoders for 4 architectures,
    one per member count and row count, 11 since. Elsewhere one call over the whole population."""
    n = jax.tree.leaves(params)[0].shape[0]
    if jax.default_backend() != "cpu" or n == 0:
        return np.asarray(fn(params))
    return np.concatenate([np.asarray(fn(member(params, i))) for i in range(n)])


def on_host(fn, *trees):
    """``fn`` leaf by leaf on host copies of ``trees`` (numpy), the result placed back on the
    default device. Slicing, stacking or joining device arrays eagerly compiles a program per
    shape (hundreds in a gap sweep); on the host it compiles none."""
    return jax.device_put(jax.tree.map(lambda *xs: fn(*map(np.asarray, xs)), *trees))


def member(params, i: int = 0):
    """Member ``i`` of stacked parameters, still stacked (a population of one)."""
    return on_host(lambda x: x[i : i + 1], params)


def concat(pops: list[Population]) -> Population:
    """The members of several populations of one architecture, in order, as one."""
    return replace(
        pops[0],
        params=on_host(lambda *xs: np.concatenate(xs), *(p.params for p in pops)),
        names=[n for p in pops for n in p.names],
        seeds=[s for p in pops for s in p.seeds],
        key="+".join(p.key for p in pops),
    )


@dataclass
class Population:
    graphdef: object
    params: object
    names: list[str]  # what each member is (a strategy, a control, a rung's role)
    seeds: list[int]
    cfg: ModelConfig | None = None  # the architecture, where a stage needs it (a rung)
    key: str = ""  # the zoo entry it came from (``entry[i,j]`` for a subset): derived artifacts name it

    @property
    def n_members(self) -> int:
        return jax.tree.leaves(self.params)[0].shape[0]

    @property
    def n_params(self) -> int:
        """Parameters of one member."""
        return param_count(self.params) // self.n_members

    def subset(self, idx) -> Population:
        idx = np.asarray(idx)
        return replace(
            self,
            params=on_host(lambda x: x[idx], self.params),
            names=[self.names[i] for i in idx],
            seeds=[self.seeds[i] for i in idx],
            key=f"{self.key}[{','.join(map(str, idx.tolist()))}]" if self.key else "",
        )

    def member(self, i: int = 0) -> Population:
        return self.subset([i])

    def with_params(self, params, names: list[str] | None = None) -> Population:
        """The same members with other weights (after fine-tuning)."""
        return replace(self, params=params, names=list(names or self.names))
