"""The memory estimate of a lag-profile chunk bounds XLA's own buffer plan; the auto chunk size fits the budget."""

import jax.numpy as jnp
import numpy as np
import pytest

from gradflow.flow.engine import VARIANT_BLOCK
from gradflow.flow.memory import MAX_AUTO_CHUNK, auto_chunk_size, check_chunk_size, chunk_bytes, format_bytes
from gradflow.flow.variants import Grid, ModelSpec, probe_inputs, profile_variants


@pytest.mark.parametrize(("H", "T", "n"), [(2, 5, 3), (8, 50, 16), (16, 100, 130), (128, 10, 4)])
@pytest.mark.slow
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


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (16 * 2**10 + 512, "16.5 KiB"), (2**20, "1.0 MiB"),
    (int(1.5 * 2**30), "1.5 GiB"), (160 * 2**30, "160.0 GiB"), (2**40, "1.0 TiB"), (3 * 2**50, "3072.0 TiB"),
])
def test_sizes_are_written_in_adaptive_binary_units(n, text):
    assert format_bytes(n) == text


def test_a_budget_too_small_names_readable_sizes_and_an_explicit_chunk_is_checked():
    spec = ModelSpec(input_size=8, hidden_size=32, seq_len=200)
    with pytest.raises(ValueError, match=r"needs about 1\.5 MiB, more than the memory budget of 1000 B"):
        auto_chunk_size([spec], 1000, n_profiles=2)
    budget = chunk_bytes(spec, 10, n_profiles=2)
    check_chunk_size([spec], 10, budget, n_profiles=2)
    with pytest.raises(ValueError, match=r"^a chunk of 11 variants of ModelSpec\(.*\) needs about [0-9.]+ MiB, more than "
                                         r"the memory budget of [0-9.]+ MiB$"):
        check_chunk_size([spec], 11, budget, n_profiles=2)
