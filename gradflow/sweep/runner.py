"""Run a configuration: one compile per shape spec, work chunks spread over devices and processes.

Each process takes the work items (spec, chunk) ``k`` with ``k % n == i`` for its share ``(i, n)``
(see :mod:`gradflow.sweep.processes`) and runs them ``n_devices`` at a time: one chunk per local device,
each padded to the same number of variants (the padding repeats the chunk's last variant and is
dropped). Every device therefore runs the same program on the same batch size whatever the device
or process count, so the results do not depend on either. While a batch runs, the previous one is
written to the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.config.profiles import Config
from gradflow.sweep.environment import describe_environment
from gradflow.sweep.progress import progress
from gradflow.sweep.results import Results
from gradflow.flow.saturation import GATE_NAMES
from gradflow.sweep.devices import local_mesh, sharded_profiles
from gradflow.sweep.store import Job, SweepLayout, Variable, config_hash, open_store, progress_of  # noqa: F401
from gradflow.flow.variants import probe_inputs

RUN_LOG = "runs.jsonl"


@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What one call of :func:`run_sweep` did."""

    path: Path
    computed: int  # work chunks this process computed
    skipped: int  # work chunks of its share already done (resumed)
    done: int  # work chunks done in the store, by any process
    total: int  # work chunks in the store
    seconds: float
    variants_per_s: float

    @property
    def complete(self) -> bool:
        return self.done == self.total


def _pad(values: dict[str, np.ndarray], lo: int, hi: int, size: int) -> dict[str, np.ndarray]:
    """Variants ``lo .. hi-1`` of every array, padded to ``size`` by repeating the last one."""
    return {k: np.concatenate([v[lo:hi], np.repeat(v[hi - 1 : hi], size - (hi - lo))]) for k, v in values.items()}


def _batches(items: list[tuple[int, int]], n: int) -> Iterator[list[tuple[int, int]]]:
    """``items`` grouped by spec, ``n`` at a time (one compile per spec)."""
    by_spec: dict[int, list] = {}
    for spec, chunk in items:
        by_spec.setdefault(spec, []).append((spec, chunk))
    for group in by_spec.values():
        for start in range(0, len(group), n):
            yield group[start : start + n]


class ProfileJob:
    """The lag-profile sweep of a :class:`gradflow.config.profiles.Config`, as the store and runner see it."""

    title = "gradflow lag profiles"

    def __init__(self, config: Config):
        self.config = config
        self.source, self.dtype, self.grid = config.source, config.dtype, config.grid
        self._specs = [spec for _, spec in config.specs()]

    def resolved(self) -> dict:
        return self.config.resolved()

    def spec_dims(self) -> dict[str, tuple]:
        return {k: v for k, v in self.config.shape_axes.items() if len(v) > 1}

    def n_specs(self) -> int:
        return len(self._specs)

    def work_chunk_size(self) -> int:
        return self.config.work_chunk_size()

    def variables(self) -> dict[str, Variable]:
        dtype = np.dtype(self.dtype)
        out = {}
        for w in self.config.wrt:
            out[f"log10_norm_{w}"] = Variable(("lag",), dtype)
            out[f"horizon_{w}"] = Variable((), dtype)
            out[f"decay_rate_{w}"] = Variable((), dtype)
        out.update({f"saturation_{g}": Variable((), dtype) for g in GATE_NAMES})
        out["nonfinite"] = Variable((), np.dtype(bool))
        return out

    def extra_coords(self) -> dict[str, np.ndarray]:
        return {"lag": np.arange(1, max(self.config.shape_axes["seq_len"]) + 1, dtype=np.int32)}

    def chunk_function(self, spec: int, mesh):
        model = self._specs[spec]
        xs = probe_inputs(model, seed=self.config.input_seed, dtype=jnp.dtype(self.dtype))
        return sharded_profiles(mesh, model, self.config.wrt, self.config.decades), (xs,)

    def finish(self, spec: int, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return outputs


def as_job(config_or_job) -> Job:
    """A :class:`gradflow.config.profiles.Config` as its :class:`ProfileJob`; a job as it is."""
    return ProfileJob(config_or_job) if isinstance(config_or_job, Config) else config_or_job


def compute_chunks(
    job, items: list[tuple[int, int]], *, show_progress: bool = True
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Compute work items ``(spec, chunk)`` of ``job``; yields ``(spec, chunk, outputs)`` as they finish.

    ``outputs`` maps each of the job's variables to an array (n, ...) over the chunk's n variants in
    C order.
    """
    job = as_job(job)
    layout = SweepLayout(job)
    values = job.grid.values()
    mesh = local_mesh()
    per_device = layout.chunks.variants_per_chunk
    x64 = jax.enable_x64(True) if job.dtype == "float64" else contextlib.nullcontext()
    with x64, progress(len(items), desc=job.title, enabled=show_progress) as bar:
        pending, compiled = None, (None, None)
        for batch in _batches(items, mesh.size):
            spec = batch[0][0]
            if compiled[0] != spec:
                compiled = (spec, job.chunk_function(spec, mesh))
            fn, args = compiled[1]
            ranges = [layout.chunks.flat_range(chunk) for _, chunk in batch]
            padded = ranges + [ranges[-1]] * (mesh.size - len(ranges))  # idle devices repeat the last chunk
            parts = [_pad(values, lo, hi, per_device) for lo, hi in padded]
            stacked = {k: np.concatenate([p[k] for p in parts]) for k in values}
            started = time.perf_counter()
            out = fn(stacked, *args)  # dispatched asynchronously: the previous batch is stored meanwhile
            if pending is not None:
                yield from _split(job, *pending, bar)
            pending = (batch, ranges, per_device, out, started)
        if pending is not None:
            yield from _split(job, *pending, bar)


def _split(job, batch, ranges, per_device, out, started, bar):
    out = {k: np.asarray(v) for k, v in out.items()}
    n_variants = sum(hi - lo for lo, hi in ranges)
    bar.set_postfix_str(f"{n_variants / (time.perf_counter() - started):.0f} variants/s")
    for d, ((spec, chunk), (lo, hi)) in enumerate(zip(batch, ranges)):
        yield spec, chunk, job.finish(spec, {k: v[d * per_device : d * per_device + hi - lo] for k, v in out.items()})
        bar.update(1)


def run_sweep(
    config: Config | Job,
    out: str | Path,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
) -> SweepReport:
    """Fill ``out/results.zarr`` with this process's share of the sweep of ``config``; resumes.

    Args:
      config: what to compute: a lag-profile :class:`gradflow.config.profiles.Config`, or any :class:`gradflow.sweep.store.Job`.
      out: output directory.
      share: ``(i, n)``: this process takes work items ``k`` with ``k % n == i``.
      overwrite: replace a store of a different config instead of refusing it.
      show_progress: progress bar on a terminal, log lines otherwise.

    Raises:
      gradflow.sweep.store.StoreMismatchError: ``out`` holds a different config's sweep (and not ``overwrite``).
    """
    index, count = share
    if not 0 <= index < count:
        raise ValueError(f"share must be (i, n) with 0 <= i < n; got {share}")
    job = as_job(config)
    store = open_store(out, job, environment=describe_environment(), overwrite=overwrite)
    layout = store.layout
    mine = [layout.item(k) for k in range(index, layout.n_work, count)]
    todo = [item for item in mine if not store.is_done(*item)]
    start = time.perf_counter()
    n_variants = 0
    for spec, chunk, outputs in compute_chunks(job, todo, show_progress=show_progress):
        store.write_chunk(spec, chunk, outputs)
        n_variants += len(next(iter(outputs.values())))
    seconds = time.perf_counter() - start
    done, total = progress_of(out)
    report = SweepReport(store.path, len(todo), len(mine) - len(todo), done, total, seconds, n_variants / max(seconds, 1e-9))
    record = {**dataclasses.asdict(report), "path": str(report.path), "share": [index, count], "local_devices": jax.local_device_count(), "config_hash": store.config_hash}
    with open(Path(out) / RUN_LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    return report


def sweep_results(config: Config | Job, *, show_progress: bool = False) -> Results:
    """The whole sweep of ``config`` computed in this process and returned in memory (no store kept)."""
    with tempfile.TemporaryDirectory(prefix="gradflow-") as tmp:
        run_sweep(config, tmp, show_progress=show_progress)
        results = Results.load(tmp)
    return results
