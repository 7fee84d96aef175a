"""Run a configuration: one compile per shape spec, work chunks spread over devices and processes.

Each process takes the work items (spec, chunk) ``k`` with ``k % n == i`` for its share ``(i, n)``
(see :mod:`gradflow.processes`) and runs them ``n_devices`` at a time: one chunk per local device,
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

from gradflow.config import Config
from gradflow.environment import describe_environment
from gradflow.progress import progress
from gradflow.results import Results
from gradflow.sharding import local_mesh, sharded_profiles
from gradflow.store import SweepLayout, config_hash, open_store, progress_of  # noqa: F401 (config_hash re-exported)
from gradflow.variants import probe_inputs

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


def compute_chunks(
    config: Config, items: list[tuple[int, int]], *, show_progress: bool = True
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Compute work items ``(spec, chunk)`` of ``config``; yields ``(spec, chunk, outputs)`` as they finish.

    ``outputs`` maps each variable of :func:`gradflow.store.variable_names` to an array (n, ...)
    over the chunk's n variants in C order.
    """
    layout = SweepLayout(config)
    specs = [spec for _, spec in config.specs()]
    values = config.grid.values()
    mesh = local_mesh()
    per_device = layout.chunks.variants_per_chunk
    x64 = jax.enable_x64(True) if config.dtype == "float64" else contextlib.nullcontext()
    with x64, progress(len(items), desc="lag profiles", enabled=show_progress) as bar:
        pending = None
        for batch in _batches(items, mesh.size):
            spec = specs[batch[0][0]]
            xs = probe_inputs(spec, seed=config.input_seed, dtype=jnp.dtype(config.dtype))
            profiles = sharded_profiles(mesh, spec, config.wrt, config.decades)
            ranges = [layout.chunks.flat_range(chunk) for _, chunk in batch]
            padded = ranges + [ranges[-1]] * (mesh.size - len(ranges))  # idle devices repeat the last chunk
            parts = [_pad(values, lo, hi, per_device) for lo, hi in padded]
            stacked = {k: np.concatenate([p[k] for p in parts]) for k in values}
            started = time.perf_counter()
            out = profiles(stacked, xs)  # dispatched asynchronously: the previous batch is stored meanwhile
            if pending is not None:
                yield from _split(*pending, bar)
            pending = (batch, ranges, per_device, out, started)
        if pending is not None:
            yield from _split(*pending, bar)


def _split(batch, ranges, per_device, out, started, bar):
    out = {k: np.asarray(v) for k, v in out.items()}
    n_variants = sum(hi - lo for lo, hi in ranges)
    bar.set_postfix_str(f"{n_variants / (time.perf_counter() - started):.0f} variants/s")
    for d, ((spec, chunk), (lo, hi)) in enumerate(zip(batch, ranges)):
        yield spec, chunk, {k: v[d * per_device : d * per_device + hi - lo] for k, v in out.items()}
        bar.update(1)


def run_sweep(
    config: Config,
    out: str | Path,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
) -> SweepReport:
    """Fill ``out/results.zarr`` with this process's share of the sweep of ``config``; resumes.

    Args:
      config: what to compute.
      out: output directory.
      share: ``(i, n)``: this process takes work items ``k`` with ``k % n == i``.
      overwrite: replace a store of a different config instead of refusing it.
      show_progress: progress bar on a terminal, log lines otherwise.

    Raises:
      gradflow.store.StoreMismatchError: ``out`` holds a different config's sweep (and not ``overwrite``).
    """
    index, count = share
    if not 0 <= index < count:
        raise ValueError(f"share must be (i, n) with 0 <= i < n; got {share}")
    store = open_store(out, config, environment=describe_environment(), overwrite=overwrite)
    layout = store.layout
    mine = [layout.item(k) for k in range(index, layout.n_work, count)]
    todo = [item for item in mine if not store.is_done(*item)]
    start = time.perf_counter()
    n_variants = 0
    for spec, chunk, outputs in compute_chunks(config, todo, show_progress=show_progress):
        store.write_chunk(spec, chunk, outputs)
        n_variants += len(outputs["nonfinite"])
    seconds = time.perf_counter() - start
    done, total = progress_of(out)
    report = SweepReport(store.path, len(todo), len(mine) - len(todo), done, total, seconds, n_variants / max(seconds, 1e-9))
    record = {**dataclasses.asdict(report), "path": str(report.path), "share": [index, count], "local_devices": jax.local_device_count(), "config_hash": config_hash(config)}
    with open(Path(out) / RUN_LOG, "a") as log:
        log.write(json.dumps(record) + "\n")
    return report


def sweep_results(config: Config, *, show_progress: bool = False) -> Results:
    """The whole sweep of ``config`` computed in this process and returned in memory (no store kept)."""
    with tempfile.TemporaryDirectory(prefix="gradflow-") as tmp:
        run_sweep(config, tmp, show_progress=show_progress)
        results = Results.load(tmp)
    return results
