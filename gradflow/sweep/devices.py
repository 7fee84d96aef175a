"""Spreading chunks of variants over the local devices: the one place gradflow shards.

A 1-D mesh with a ``"variants"`` axis spans this process's devices. Each device runs a job's chunk
function on its own slice of a chunk (``shard_map``): variants are independent, so no device talks to
another and the results do not depend on the device count (:mod:`gradflow.sweep.runner` gives every
device the same batch size, so the compiled per-device program is the same whatever the device count;
tested bit for bit).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec


AXIS = "variants"


def local_mesh() -> Mesh:
    """A mesh over this process's devices with the single axis ``"variants"``."""
    return Mesh(np.array(jax.local_devices()), (AXIS,))


def over_devices(mesh: Mesh, fn, n_args: int):
    """``jit(fn)`` with the leading (variants) axis of ``fn``'s first argument split over ``mesh``.

    The other ``n_args - 1`` arguments are replicated; every output has the variants axis first.
    """
    if mesh.size == 1:
        return jax.jit(fn)
    in_specs = (PartitionSpec(AXIS),) + (PartitionSpec(),) * (n_args - 1)
    # check_vma=False: the per-device program is the plain single-device one; nothing crosses devices.
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(AXIS), check_vma=False))
