"""Cutting a grid of variants into work chunks.

A work chunk is a block of the grid that is contiguous in C order: one index on each leading axis,
a run of ``rows`` indices on one axis, every index on the trailing axes. The same block is the
storage chunk of every variable in the results store, so a finished chunk is written whole and two
processes never write into the same stored chunk. How many variants a chunk may hold is the job's
business (``gradflow.flow.memory`` sizes lag-profile chunks from a memory budget).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


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
