r"""Cutting a grid of variants into work chunks, and sizing them from a memory budget.

A work chunk is a block of the grid that is contiguous in C order: one index on each leading axis,
a run of ``rows`` indices on one axis, every index on the trailing axes. The same block is the
storage chunk of every variable in the results store, so a finished chunk is written whole and two
processes never write into the same stored chunk.

Memory of one compiled call on ``n`` variants (itemsize ``b``; H hidden, D inputs, T steps,
W = number of profiles), estimated by :func:`chunk_bytes`:

.. math::

    b\,\big[\, n\,(P + W (T + 2) + 8 + 4 T H) + \min(n, B)\,(20\,T H + 32 H^2 + T H^2) \big] + 16\,\mathrm{KiB},
    \qquad P = 4H (D + H + 1),

parameters ``P``, outputs and one (T, 4H) gate trajectory for every variant of the chunk, plus the
working set of one vmapped block of ``B = VARIANT_BLOCK`` variants: forward states (T, 2H), Jacobian
coefficients (T, 6H), pre-activations, gates and their derivatives (T, 12H), the accumulator and
pullback matrices (XLA may build part of the per-step (2H, H) matrices ahead of the loop: T H^2).
The constants are fitted to XLA's own buffer plan on CPU, which the estimate bounds from above
within a factor of 1.2 to 4 over H = 2..256, T = 5..2000 (``tests/test_chunking.py``;
``benchmarks/bench_sweep.py`` reports both).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gradflow.flow.engine import VARIANT_BLOCK
from gradflow.flow.variants import ModelSpec

#: Buffers of a compiled call that do not grow with its size (constants, loop bookkeeping).
FIXED_BYTES = 16 * 2**10

#: Largest chunk that ``chunk_size = "auto"`` picks: chunks are also the unit of progress and resume.
MAX_AUTO_CHUNK = 256


def chunk_bytes(spec: ModelSpec, n: int, *, n_profiles: int, itemsize: int = 4) -> int:
    """Estimated peak bytes of one compiled call on ``n`` variants of ``spec`` (formula above)."""
    H, D, T = spec.hidden_size, spec.input_size, spec.seq_len
    per_variant = 4 * H * (D + H + 1) + n_profiles * (T + 2) + 8 + 4 * T * H
    working = 20 * T * H + 32 * H * H + T * H * H
    return itemsize * (n * per_variant + min(n, VARIANT_BLOCK) * working) + FIXED_BYTES


def auto_chunk_size(specs: list[ModelSpec], budget_bytes: int, *, n_profiles: int, itemsize: int = 4) -> int:
    """The largest ``n <= MAX_AUTO_CHUNK`` whose :func:`chunk_bytes` fits ``budget_bytes`` for every spec.

    Raises:
      ValueError: if not even one variant of some spec fits, naming the spec and the bytes it needs.
    """
    n = MAX_AUTO_CHUNK
    for spec in specs:
        need = chunk_bytes(spec, 1, n_profiles=n_profiles, itemsize=itemsize)
        if need > budget_bytes:
            raise ValueError(
                f"one variant of {spec} needs about {need / 2**20:.1f} MiB, more than the memory budget of "
                f"{budget_bytes / 2**20:.1f} MiB; raise [analysis].memory_budget_mb or shorten seq_len"
            )
        while chunk_bytes(spec, n, n_profiles=n_profiles, itemsize=itemsize) > budget_bytes:
            n -= 1
    return n


@dataclasses.dataclass(frozen=True)
class ChunkLayout:
    """The work chunks of a grid of shape ``shape``, each at most ``max_variants`` variants.

    Example:
      >>> layout = ChunkLayout((4, 3, 2), max_variants=13)   # 2 rows of 3 x 2 per chunk
      >>> layout.chunk_shape, layout.n_chunks, layout.flat_range(1)
      ((2, 3, 2), 2, (12, 24))
    """

    shape: tuple[int, ...]
    max_variants: int

    def __post_init__(self):
        if self.max_variants < 1:
            raise ValueError(f"max_variants must be >= 1; got {self.max_variants}")

    @property
    def _split(self) -> tuple[int, int]:
        """(axis cut into runs, rows per run); axis -1 means the grid has no axes."""
        for axis in range(len(self.shape)):
            trailing = math.prod(self.shape[axis + 1 :])
            if trailing <= self.max_variants:
                return axis, min(self.shape[axis], self.max_variants // trailing)
        return -1, 1

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        """Shape of a (full) chunk: the storage chunk of every per-variant variable."""
        axis, rows = self._split
        if axis < 0:
            return ()
        return (1,) * axis + (rows,) + self.shape[axis + 1 :]

    @property
    def variants_per_chunk(self) -> int:
        return math.prod(self.chunk_shape)

    @property
    def n_chunks(self) -> int:
        axis, rows = self._split
        if axis < 0:
            return 1
        return math.prod(self.shape[:axis]) * -(-self.shape[axis] // rows)

    def flat_range(self, j: int) -> tuple[int, int]:
        """``(lo, hi)``: chunk ``j`` holds the C-order flat variants ``lo .. hi-1``."""
        index = self.index(j)
        lo = int(np.ravel_multi_index([s.start for s in index], self.shape)) if self.shape else 0
        return lo, lo + math.prod(s.stop - s.start for s in index)

    def index(self, j: int) -> tuple[slice, ...]:
        """Chunk ``j`` as one slice per grid axis."""
        if not 0 <= j < self.n_chunks:
            raise IndexError(f"chunk {j} out of range [0, {self.n_chunks})")
        axis, rows = self._split
        if axis < 0:
            return ()
        per_outer = -(-self.shape[axis] // rows)
        outer, block = divmod(j, per_outer)
        leading = np.unravel_index(outer, self.shape[:axis]) if axis else ()
        start = block * rows
        return (
            tuple(slice(int(i), int(i) + 1) for i in leading)
            + (slice(start, min(start + rows, self.shape[axis])),)
            + tuple(slice(0, n) for n in self.shape[axis + 1 :])
        )
