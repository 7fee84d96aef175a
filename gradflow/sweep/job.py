"""A sweep job, as data: everything the store and the runner need, and nothing of LSTMs or configs.

A job is a grid of variants (named numeric axes, vmapped) for every combination of shape settings
(named axes, one compile each). The store lays out one variable per output with dimensions
``(*swept shape settings, *grid axes, *the variable's own axes)``; the runner calls
``chunk_function(spec, mesh) -> (fn, args)`` once per shape combination and then
``fn(values, *args)`` on each work chunk, ``values`` holding the chunk's variants as flat (n,) arrays.
Applications build jobs (``gradflow.profiles.profile_job``, ``gradflow.collapse.job.collapse_job``);
the figures a finished store gets are chosen by its ``kind``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Callable, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Variable:
    """A stored per-variant output: the dimensions it has beyond the swept ones, its dtype, what it is and its
    units (stored as the CF attributes ``long_name`` and ``units``; ``"1"``: dimensionless)."""

    extra_dims: tuple[str, ...]
    dtype: np.dtype
    long_name: str = ""
    units: str = ""


def _unchanged(spec: int, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return outputs


@dataclasses.dataclass(frozen=True, eq=False)
class Job:
    """One sweep, described.

    Attributes:
      kind: what the job computes (``"profiles"``, ``"collapse"``); stored, and selects the figures.
      title: a human-readable name, for progress bars and the store's attributes.
      config: the resolved configuration (JSON-ready, every value explicit); its hash identifies the store.
      source: the configuration's TOML text, stored beside the results.
      dtype: ``"float32"`` or ``"float64"``: the precision the chunks are computed in.
      spec_axes: every shape setting -> its values (length 1 when not swept); one compile per combination.
      grid_axes: every swept numeric axis -> its values (the store's coordinates), in C order.
      grid_values: every setting the chunk function takes -> a flat (V,) array over the grid's variants.
      chunk_size: most variants per work chunk (and per device call): the store's chunk along the grid.
      variables: output name -> :class:`Variable`.
      extra_coords: coordinates of the variables' own axes (``lag``, ``checkpoint``, ...).
      coord_attrs: coordinate name -> its attributes (``long_name``, ``units``).
      chunk_function: ``(spec, mesh) -> (fn, args)``; ``fn(values, *args)`` returns a dict of (n, ...) arrays.
      finish: ``(spec, outputs) -> outputs`` on the host after a chunk (derived verdicts); identity by default.
    """

    kind: str
    title: str
    config: Mapping[str, Any]
    source: str
    dtype: str
    spec_axes: Mapping[str, tuple]
    grid_axes: Mapping[str, tuple]
    grid_values: Mapping[str, np.ndarray]
    chunk_size: int
    variables: Mapping[str, Variable]
    extra_coords: Mapping[str, np.ndarray]
    chunk_function: Callable[[int, Any], tuple[Callable, tuple]]
    finish: Callable[[int, dict], dict] = _unchanged
    coord_attrs: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, (int, np.integer)) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer; got {self.chunk_size!r}")
        sizes = {len(np.asarray(v)) for v in self.grid_values.values()}
        if sizes and sizes != {self.n_variants}:
            raise ValueError(f"grid_values must each hold {self.n_variants} variants (the grid's size); got sizes {sorted(sizes)}")

    @property
    def spec_dims(self) -> dict[str, tuple]:
        """The swept shape settings (more than one value): the leading dimensions of the store."""
        return {k: tuple(v) for k, v in self.spec_axes.items() if len(v) > 1}

    @property
    def n_specs(self) -> int:
        return math.prod(len(v) for v in self.spec_axes.values())

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.grid_axes.values())

    @property
    def n_variants(self) -> int:
        """Variants per shape combination."""
        return math.prod(self.grid_shape)

    def config_hash(self) -> str:
        """SHA-256 of the resolved config: equal for jobs that compute the same thing."""
        return config_hash(self.config)


def config_hash(config: Any) -> str:
    """SHA-256 of a resolved config's canonical JSON; ``config`` is the resolved dict or has ``resolved()``."""
    resolved = config.resolved() if hasattr(config, "resolved") else config
    return hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()
