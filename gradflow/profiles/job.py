"""The lag-profile sweep of a config, as a :class:`gradflow.sweep.job.Job`, and the functions that run it.

Every combination of shape settings (hidden size, activations, sequence length) is one compile of
:func:`gradflow.flow.variants.profile_variants`; the grid's numeric settings are vmapped. Each device
runs its slice of a work chunk (``shard_map`` over the local mesh); variants are independent, so no
device talks to another and the results do not depend on the device count.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from gradflow.config import Config
from gradflow.config.meanings import coordinate_attrs
from gradflow.flow.methods import LYAPUNOV_WINDOWS
from gradflow.flow.saturation import GATE_NAMES
from gradflow.flow.variants import ModelSpec, probe_inputs, profile_variants
from gradflow.sweep.devices import over_devices
from gradflow.sweep.job import Job, Variable
from gradflow.sweep.results import Results
from gradflow.sweep.runner import SweepReport, run_job

KIND = "profiles"


@functools.lru_cache(maxsize=None)
def sharded_profiles(mesh: Mesh, spec: ModelSpec, wrt: tuple[str, ...], decades: float, method: str = "exact",
                     probes: int = 16, lyapunov: int = 0):
    """``fn(values, xs)``: :func:`profile_variants` with the variants of ``values`` split over ``mesh``.

    One compiled function per (mesh, spec, and the analysis settings); ``values`` (V,) each, V a multiple
    of the mesh size; ``xs`` (T, D) is replicated.
    """

    def local(values, xs):
        return profile_variants(spec, values, xs, wrt=wrt, decades=decades, method=method, probes=probes,
                                lyapunov=lyapunov)

    return over_devices(mesh, local, 2)


#: What each method's profile is, for the stored variables' descriptions.
_NORM_WORDS = {"exact": "the Frobenius norm", "spectral": "the spectral norm (largest singular value)",
               "probes": "the Frobenius norm, estimated from {probes} random probes,"}


def profile_job(config: Config) -> Job:
    """The sweep of ``config``: lag profiles (by its method, with standard errors for probes), horizons, decay
    rates, gate saturation, a nonfinite flag and, if asked, Lyapunov exponents with standard errors.

    Raises:
      gradflow.config.ConfigError: if not even one variant fits the memory budget.
    """
    specs = [spec for _, spec in config.specs()]
    analysis = config.analysis
    dtype = np.dtype(analysis.dtype)
    norm = _NORM_WORDS[analysis.method].format(probes=analysis.probes)
    variables = {}
    for w in analysis.wrt:
        of = "h_T wrt h_(T-lag), c held fixed" if w == "h" else "s_T wrt s_(T-lag), s = (h, c)"
        variables[f"log10_norm_{w}"] = Variable(("lag",), dtype, f"log10 of {norm} of the Jacobian of {of}", "1")
        if analysis.method == "probes":
            variables[f"stderr_log10_norm_{w}"] = Variable(
                ("lag",), dtype, f"standard error of log10_norm_{w} (delta method over the {analysis.probes} probes)",
                "decades")
        variables[f"horizon_{w}"] = Variable((), dtype, f"first lag at which log10_norm_{w} falls below "
                                             f"-{analysis.decades:g} (inf: never within T; NaN: non-finite)", "steps")
        variables[f"decay_rate_{w}"] = Variable((), dtype, f"least-squares slope of log10_norm_{w} against lag "
                                                "(negative: vanishing)", "decades per step")
    variables.update({f"saturation_{g}": Variable((), dtype, f"fraction of steps x units with the {g} gate saturated, "
                                                  "on the probe inputs", "1") for g in GATE_NAMES})
    variables["nonfinite"] = Variable((), np.dtype(bool), "a lag profile of this variant holds NaN or +inf")
    extra_coords = {"lag": np.arange(1, max(config.shape_axes["seq_len"]) + 1, dtype=np.int32)}
    coord_attrs = {"lag": {"long_name": "lag k: the Jacobian of the last state wrt the state k steps earlier",
                           "units": "steps"}}
    if analysis.lyapunov:
        variables["lyapunov"] = Variable(("exponent",), dtype, "Lyapunov exponents of the state (h, c) on the probe "
                                         "inputs, in QR order: descending once aligned (QR re-orthonormalisation)", "nats per step")
        variables["stderr_lyapunov"] = Variable(("exponent",), dtype, "standard error of lyapunov (batch means over "
                                                f"{LYAPUNOV_WINDOWS} windows after a transient)", "nats per step")
        extra_coords["exponent"] = np.arange(1, analysis.lyapunov + 1, dtype=np.int32)
        coord_attrs["exponent"] = {"long_name": "index i of the i-th largest Lyapunov exponent", "units": "1"}

    def chunk_function(spec: int, mesh):
        model = specs[spec]
        xs = probe_inputs(model, seed=config.data.input_seed, dtype=jnp.dtype(analysis.dtype))
        return sharded_profiles(mesh, model, analysis.wrt, analysis.decades, analysis.method, analysis.probes,
                                analysis.lyapunov), (xs,)

    return Job(
        kind=KIND,
        title="gradflow lag profiles",
        config=config.resolved(),
        source=config.source,
        dtype=analysis.dtype,
        spec_axes={k: tuple(v) for k, v in config.shape_axes.items()},
        grid_axes={k: tuple(v) for k, v in config.grid.axes.items()},
        grid_values=config.variants().values(),
        chunk_size=config.work_chunk_size(),
        variables=variables,
        extra_coords=extra_coords,
        chunk_function=chunk_function,
        coord_attrs={**coordinate_attrs([*config.shape_axes, *config.grid.axes]), **coord_attrs},
    )


def as_job(config_or_job: Config | Job) -> Job:
    """A lag-profile config as its :func:`profile_job`; a :class:`Job` (of any kind) as it is."""
    return config_or_job if isinstance(config_or_job, Job) else profile_job(config_or_job)


def run_sweep(
    config: Config | Job,
    out: str | Path,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
    break_lease: bool = False,
) -> SweepReport:
    """Fill ``out/results.zarr`` with this process's share of the sweep of ``config``; resumes.

    Args:
      config: a lag-profile :class:`gradflow.config.Config`, or any :class:`gradflow.sweep.job.Job`.
      out: output directory.
      share: ``(i, n)``: this process takes work items ``k`` with ``k % n == i``.
      overwrite: replace a store of a different config instead of refusing it.
      show_progress: progress bar on a terminal, log lines otherwise.
      break_lease: first remove the leases of writers of other configs (see :func:`gradflow.sweep.runner.run_job`).

    Raises:
      gradflow.sweep.store.StoreMismatchError: ``out`` holds a different config's sweep (and not ``overwrite``).
    """
    return run_job(as_job(config), out, share=share, overwrite=overwrite, show_progress=show_progress,
                   break_lease=break_lease)


def sweep_results(config: Config | Job, *, show_progress: bool = False) -> Results:
    """The whole sweep of ``config`` computed in this process and returned in memory (no store kept)."""
    with tempfile.TemporaryDirectory(prefix="gradflow-") as tmp:
        run_job(as_job(config), tmp, show_progress=show_progress)
        return Results.load(tmp)
