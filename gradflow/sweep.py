"""Run a configuration: loop over shape specs (one compile each), vmap over chunks of variants.

Each chunk is padded to ``chunk_size`` variants (rounded up to a multiple of the local device
count; the padding repeats the last variant and is dropped) so every chunk reuses one compiled
function, and is split over the local devices by :mod:`gradflow.sharding`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.config import Config
from gradflow.environment import describe_environment
from gradflow.progress import progress
from gradflow.results import Results
from gradflow.sharding import chunk_for, local_mesh, sharded_profiles
from gradflow.variants import probe_inputs


def config_hash(config: Config) -> str:
    """SHA-256 of the resolved config: equal for configs that compute the same thing."""
    return hashlib.sha256(json.dumps(config.resolved(), sort_keys=True).encode()).hexdigest()


def _pad(values: dict[str, np.ndarray], start: int, size: int) -> dict[str, np.ndarray]:
    """Variants ``start .. start+size`` of every array, padded by repeating the last one."""
    out = {}
    for name, column in values.items():
        part = column[start : start + size]
        out[name] = np.concatenate([part, np.repeat(part[-1:], size - len(part))])
    return out


def run_sweep(config: Config, *, show_progress: bool = True) -> Results:
    """Compute lag profiles, horizons and decay rates for every variant of ``config``.

    Returns:
      :class:`gradflow.results.Results` with dims ``config.dims`` (swept shape settings, then the
      grid axes) and, for each ``w`` in ``config.wrt``: ``log10_norm_{w}`` (..., lag) with NaN past a
      variant's own T, ``horizon_{w}`` and ``decay_rate_{w}``.
    """
    specs = config.specs()
    values = config.grid.values()
    V = config.grid.size
    mesh = local_mesh()
    chunk = chunk_for(min(config.chunk_size, V), mesh.size)
    n_chunks = -(-V // chunk)
    T_max = max(config.shape_axes["seq_len"])
    names = [f"{kind}_{w}" for w in config.wrt for kind in ("log10_norm", "horizon", "decay_rate")]
    flat = {
        n: np.full((len(specs), V) + ((T_max,) if n.startswith("log10") else ()), np.nan, np.dtype(config.dtype))
        for n in names
    }
    x64 = jax.enable_x64(True) if config.dtype == "float64" else contextlib.nullcontext()
    timings = {"compile_and_first_chunk_s": [], "total_s": 0.0}
    start_all = time.perf_counter()
    with x64, progress(len(specs) * n_chunks, desc="lag profiles", enabled=show_progress) as bar:
        dtype = jnp.dtype(config.dtype)
        for i, (_, spec) in enumerate(specs):
            xs = probe_inputs(spec, seed=config.input_seed, dtype=dtype)
            profiles = sharded_profiles(mesh, spec, config.wrt, config.decades)
            for c in range(n_chunks):
                t0 = time.perf_counter()
                lo, n = c * chunk, min(chunk, V - c * chunk)
                out = profiles(_pad(values, lo, chunk), xs)
                for name in names:
                    a = np.asarray(out[name])[:n]
                    if a.ndim == 2:  # (n, T): this spec's T may be shorter than T_max
                        flat[name][i, lo : lo + n, : a.shape[1]] = a
                    else:
                        flat[name][i, lo : lo + n] = a
                if c == 0:
                    timings["compile_and_first_chunk_s"].append(time.perf_counter() - t0)
                bar.set_postfix_str(f"{n / (time.perf_counter() - t0):.0f} variants/s")
                bar.update(1)
    timings["total_s"] = time.perf_counter() - start_all

    swept_shape = [len(v) for v in config.shape_axes.values() if len(v) > 1]
    grid_shape = list(config.grid.shape)
    data = {n: a.reshape(swept_shape + grid_shape + list(a.shape[2:])) for n, a in flat.items()}
    coords = {k: np.asarray(v) for k, v in config.dims.items()}
    coords["lag"] = np.arange(1, T_max + 1)
    attrs = {
        "config": config.resolved(),
        "config_hash": config_hash(config),
        "config_source": config.source,
        "environment": describe_environment(),
        "timings": timings,
        "n_variants": V * len(specs),
        "chunk_size": chunk,
        "local_devices": mesh.size,
    }
    return Results(tuple(config.dims), coords, data, attrs)
