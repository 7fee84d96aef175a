"""Work chunks tile the grid exactly once in C order; the memory estimate bounds XLA's plan."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from gradflow.sweep.chunks import MAX_AUTO_CHUNK, ChunkLayout, auto_chunk_size, chunk_bytes
from gradflow.flow.engine import VARIANT_BLOCK
from gradflow.flow.variants import Grid, ModelSpec, probe_inputs, profile_variants

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


@pytest.mark.parametrize(("H", "T", "n"), [(2, 5, 3), (8, 50, 16), (16, 100, 130), (128, 10, 4)])
def test_the_memory_estimate_bounds_xla_plan_without_being_loose(H, T, n):
    spec = ModelSpec(input_size=4, hidden_size=H, seq_len=T)
    values = Grid(forget_bias=np.linspace(-2, 2, n)).values()
    xs = probe_inputs(spec, dtype=jnp.float32)
    stats = profile_variants.lower(spec, values, xs, wrt=("h", "state"), decades=10.0).compile().memory_analysis()
    plan = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    estimate = chunk_bytes(spec, n, n_profiles=2)
    assert plan <= estimate <= 3 * plan, (plan, estimate)


def test_auto_chunk_size_is_capped_and_shrinks_with_the_budget():
    spec = ModelSpec(input_size=8, hidden_size=32, seq_len=200)
    assert auto_chunk_size([spec], 2**30, n_profiles=2) == MAX_AUTO_CHUNK
    small = auto_chunk_size([spec], chunk_bytes(spec, 10, n_profiles=2), n_profiles=2)
    assert small == 10
    longer = ModelSpec(input_size=8, hidden_size=32, seq_len=2000)
    assert auto_chunk_size([spec, longer], 30 * 2**20, n_profiles=2) < auto_chunk_size([spec], 30 * 2**20, n_profiles=2)
    with pytest.raises(ValueError, match="one variant of .* needs about"):
        auto_chunk_size([longer], 1000, n_profiles=2)
    assert VARIANT_BLOCK == 64  # the estimate's block size is the engine's
