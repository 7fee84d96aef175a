"""Work chunks tile the grid exactly once in C order."""

import math

import numpy as np
import pytest

from gradflow.sweep.chunks import ChunkLayout

SHAPES = [(), (1,), (7,), (4, 3, 2), (5, 1, 3), (2, 9), (3, 4, 5, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("max_variants", [1, 2, 5, 6, 13, 1000])
def test_chunks_tile_the_grid_once_as_contiguous_c_order_blocks(shape, max_variants):
    layout = ChunkLayout(shape, max_variants)
    owner = np.full(shape, -1)
    flat_seen = []
    for j in range(layout.n_chunks):
        index = layout.index(j)
        block = owner[index]
        assert block.size <= max_variants and block.size <= layout.variants_per_chunk
        assert (block == -1).all(), "chunks overlap"
        owner[index] = j
        lo, hi = layout.flat_range(j)
        assert hi - lo == block.size
        # the block is exactly the flat C-order range lo..hi-1
        np.testing.assert_array_equal(np.arange(math.prod(shape)).reshape(shape)[index].ravel(), np.arange(lo, hi))
        flat_seen.append((lo, hi))
        # the block starts on a stored-chunk boundary and fits in one stored chunk
        for s, c in zip(index, layout.chunk_shape):
            assert s.start % c == 0 and s.stop - s.start <= c
    assert (owner >= 0).all(), "a variant is in no chunk"
    assert [lo for lo, _ in flat_seen] == sorted(lo for lo, _ in flat_seen)
    with pytest.raises(IndexError):
        layout.index(layout.n_chunks)


def test_the_largest_blocks_that_fit_are_taken():
    assert ChunkLayout((25, 13, 3), 256).chunk_shape == (6, 13, 3)  # 234 variants
    assert ChunkLayout((25, 13, 3), 30).chunk_shape == (1, 10, 3)
    assert ChunkLayout((25, 13, 3), 2).chunk_shape == (1, 1, 2)
    assert ChunkLayout((25, 13, 3), 2).n_chunks == 25 * 13 * 2
    with pytest.raises(ValueError, match="max_variants must be >= 1"):
        ChunkLayout((3,), 0)
