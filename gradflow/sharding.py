"""Spreading chunks of variants over the local devices: the one place gradflow shards.

A 1-D mesh with a ``"variants"`` axis spans this process's devices. Each device runs
:func:`gradflow.variants.profile_variants` on its own slice of a chunk (``shard_map``): variants are
independent, so no device talks to another and the results do not depend on the device count
(to float32 rounding: the per-device batch size can change XLA's kernels, ~1e-6 decades; tested).
"""

from __future__ import annotations

import functools

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from gradflow.variants import ModelSpec, profile_variants

AXIS = "variants"


def local_mesh() -> Mesh:
    """A mesh over this process's devices with the single axis ``"variants"``."""
    return Mesh(np.array(jax.local_devices()), (AXIS,))


def chunk_for(requested: int, n_devices: int) -> int:
    """``requested`` variants rounded up to a whole number per device."""
    return -(-requested // n_devices) * n_devices


@functools.lru_cache(maxsize=None)
def sharded_profiles(mesh: Mesh, spec: ModelSpec, wrt: tuple[str, ...], decades: float):
    """``fn(values, xs)``: :func:`profile_variants` with the variants of ``values`` split over ``mesh``.

    One compiled function per (mesh, spec, wrt, decades); ``values`` (V,) each, V a multiple of the
    mesh size; ``xs`` (T, D) is replicated.
    """

    def local(values, xs):
        return profile_variants(spec, values, xs, wrt=wrt, decades=decades)

    if mesh.size == 1:
        return local
    # check_vma=False: the per-device program is the plain single-device one; nothing crosses devices.
    mapped = jax.shard_map(
        local, mesh=mesh, in_specs=(PartitionSpec(AXIS), PartitionSpec()), out_specs=PartitionSpec(AXIS), check_vma=False
    )
    return jax.jit(mapped)
