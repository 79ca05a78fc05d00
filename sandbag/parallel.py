"""Data parallelism for the trainer: one mesh axis, ``data``, over every device.

How it works: with more than one device, ``train`` replicates params and optimizer state
on every device (``P()``) and splits each step's batch over the ``data`` axis. The jitted
step follows the data (GSPMD): every device runs the forward and backward pass on its
slice of the batch and the gradients are summed across devices before the update, so the
result equals single-device training up to float reduction order. A batch the device count
does not divide is replicated instead (every device computes the whole batch), with a
warning. The trained params come back on the default device, uncommitted as the zoo's are
(``one_device``), and evaluation runs there. With one device there is no mesh and nothing is
moved.

On the CPU, ``cpu_devices`` (conf/scale/*.yaml) sets how many devices JAX's CPU backend has:
one per core at the cpu and gpu scales (one at smoke), so a laptop's cores train as a mesh.

Several hosts: call ``jax.distributed.initialize()`` on every host before anything else
touches JAX (``python -m sandbag.run ... distributed=true`` does it first thing). Then
``jax.devices()`` spans every host's devices and the same mesh shards across them. Every
host runs the same program and draws the same batch (samplers are deterministic in
(member, chunk)) and copies only the slices that belong to its own devices. Process 0 alone
reads and writes the zoo (sandbag/zoo.py) and the job's outputs (sandbag/run.py).
"""

from __future__ import annotations

import functools
import logging

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

log = logging.getLogger(__name__)
AXIS = "data"


def data_mesh() -> Mesh | None:
    """A one-axis mesh over every device, or None when there is one device (nothing to split)."""
    devices = jax.devices()
    return Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None


def primary_process() -> bool:
    """Process 0 of a multi-process run (``distributed=true``), or the only process: the one
    that reads and writes the zoo and the job's outputs."""
    return jax.process_index() == 0


def one_device(tree):
    """A replicated ``tree`` as plain arrays on the default device, like a model the zoo loads
    or a fresh initialisation: what the trainer returns and evaluates with. A program whose
    inputs are replicated runs whole on every device (evaluating a medium population that
    way took 2-3x as long as on one device, REPORT.md). And JAX compiles a program once for
    arguments committed to a device, as one device's copy of a replicated array is, and once
    more for uncommitted ones, so every evaluation program would compile twice wherever
    trained and loaded models meet. The copy goes through the host (this host's own copy: in
    a multi-host run a replicated array spans hosts); these models are a few megabytes."""
    return jax.device_put(jax.device_get(jax.tree.map(lambda x: x.addressable_data(0), tree)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, shape: tuple[int, ...], axis: int) -> NamedSharding:
    """``axis`` of an array of ``shape`` split over ``data``; replicated if it does not divide."""
    n = mesh.shape[AXIS]
    if shape[axis] % n:
        _warn_indivisible(shape[axis], n)
        return replicated(mesh)
    spec = [None] * len(shape)
    spec[axis] = AXIS
    return NamedSharding(mesh, PartitionSpec(*spec))


def put_batch(mesh: Mesh, x: np.ndarray, axis: int) -> jax.Array:
    """``x`` split along ``axis`` over the devices. Every host passes the same ``x`` and copies
    only its own devices' slices (``jax.device_put`` would first gather ``x`` from every host
    to check that they agree: the whole batch, on every call)."""
    return jax.make_array_from_process_local_data(batch_sharding(mesh, x.shape, axis), x, x.shape)


@functools.cache  # once per (batch, devices): the trainer asks on every chunk
def _warn_indivisible(batch: int, n_devices: int) -> None:
    log.warning("batch %d is not divisible by %d devices: replicating it instead", batch, n_devices)
