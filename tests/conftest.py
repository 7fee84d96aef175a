"""Test-wide JAX settings: float64 available for references, strict promotion, warnings as errors."""

import os
from pathlib import Path

import jax
import numpy as np
import pytest

# Compiled programs persist between runs (the suite is compile-bound on a 2-core CPU).
_cache = os.environ.get("GRADFLOW_TEST_CACHE_DIR", str(Path.home() / ".cache" / "gradflow" / "xla-tests"))
jax.config.update("jax_compilation_cache_dir", _cache)
os.environ.setdefault("GRADFLOW_CACHE_DIR", _cache)  # the CLI's own cache, when a test runs a command
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # the suite compiles many small programs
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

#: Tolerances on log10 norms (decades) per dtype: what rounding allows, tight enough to catch a bug.
LOG10_ATOL = {np.dtype("float32"): 2e-4, np.dtype("float64"): 1e-10}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def small_reference(tmp_path_factory):
    """test_store.SMALL swept in this process: the store that damaged, concurrent and repaired ones must equal."""
    from gradflow.config import parse_config
    from gradflow.profiles.job import run_sweep
    from test_store import SMALL

    out = tmp_path_factory.mktemp("reference")
    run_sweep(parse_config(SMALL), out, show_progress=False)
    return out


_CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                  "jax_default_matmul_precision")


@pytest.fixture(autouse=True)
def _keep_the_suites_compilation_cache():
    """A test that runs a command (gradflow.cli sets JAX's cache to its own, caching only compiles over 0.5 s, and
    full float32 matmuls) would leave every later test recompiling its small programs (3x slower): restore the
    suite's settings."""
    before = {name: getattr(jax.config, name) for name in _CACHE_OPTIONS}
    yield
    if any(getattr(jax.config, name) != value for name, value in before.items()):
        from jax.experimental.compilation_cache import compilation_cache

        for name, value in before.items():
            jax.config.update(name, value)
        compilation_cache.reset_cache()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's in-memory compiled programs after each test module. Every loaded CPU executable keeps memory
    mappings, and the suite compiles thousands of distinct programs: without this the process passed Linux's
    65530-mapping limit (vm.max_map_count) three quarters of the way through and XLA crashed (SIGSEGV/SIGABRT in
    serialising an executable). The persistent cache makes the next module's recompiles cheap. A module-scoped
    fixture that runs a command sets full float32 matmuls before any test's own guard records the setting: restore
    the precision here too, so that it never leaks into a later module (a store's recorded precision would)."""
    precision = jax.config.jax_default_matmul_precision
    yield
    jax.config.update("jax_default_matmul_precision", precision)
    jax.clear_caches()
