"""Test-wide JAX settings: float64 available for references, strict promotion, warnings as errors."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

#: Tolerances on log10 norms (decades) per dtype: what rounding allows, tight enough to catch a bug.
LOG10_ATOL = {np.dtype("float32"): 2e-4, np.dtype("float64"): 1e-10}


@pytest.fixture
def rng():
    return np.random.default_rng(0)
