"""Run a sweep job: one compile per shape combination, work chunks spread over devices and processes.

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
import os
import time
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from gradflow.sweep.devices import local_mesh
from gradflow.sweep.environment import describe_environment
from gradflow.sweep.job import Job
from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.lease import WriterLease, break_leases
from gradflow.sweep.progress import progress
from gradflow.sweep.check import check_store, repair_store
from gradflow.sweep.store import SweepLayout, open_store, progress_of

@dataclasses.dataclass(frozen=True)
class SweepReport:
    """What one call of :func:`run_job` did."""

    path: Path
    computed: int  # work chunks this process computed
    skipped: int  # work chunks of its share already done (resumed)
    done: int  # work chunks done in the store, by any process
    total: int  # work chunks in the store
    seconds: float
    variants_per_s: float
    repaired: tuple[str, ...] = ()  # what the health check at the start repaired (see gradflow.sweep.check)

    @property
    def complete(self) -> bool:
        return self.done == self.total


def pad_variants(values: dict[str, np.ndarray], lo: int, hi: int, size: int) -> dict[str, np.ndarray]:
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
    job: Job, items: list[tuple[int, int]], *, show_progress: bool = True
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Compute work items ``(spec, chunk)`` of ``job``; yields ``(spec, chunk, outputs)`` as they finish.

    ``outputs`` maps each of the job's variables to an array (n, ...) over the chunk's n variants in
    C order.
    """
    layout = SweepLayout(job)
    values = {k: np.asarray(v) for k, v in job.grid_values.items()}
    mesh = local_mesh()
    per_device = layout.chunks.variants_per_chunk
    x64 = jax.enable_x64(True) if job.dtype == "float64" else contextlib.nullcontext()
    with x64, progress(len(items), desc=job.title, enabled=show_progress) as bar:
        rate = VariantRate()
        pending, compiled = None, (None, None)
        for batch in _batches(items, mesh.size):
            spec = batch[0][0]
            if compiled[0] != spec:
                compiled = (spec, job.chunk_function(spec, mesh))
            fn, args = compiled[1]
            ranges = [layout.chunks.flat_range(chunk) for _, chunk in batch]
            padded = ranges + [ranges[-1]] * (mesh.size - len(ranges))  # idle devices repeat the last chunk
            parts = [pad_variants(values, lo, hi, per_device) for lo, hi in padded]
            stacked = {k: np.concatenate([p[k] for p in parts]) for k in values}
            rate.start()
            out = fn(stacked, *args)  # dispatched asynchronously: the previous batch is stored meanwhile
            if pending is not None:
                yield from _split(job, *pending, bar, rate)
            pending = (batch, ranges, per_device, out)
        if pending is not None:
            yield from _split(job, *pending, bar, rate)


class VariantRate:
    """Variants finished per second of wall time since the first dispatch: the rate as actually run (a
    per-batch rate with batches in flight counted each batch's wait for the others)."""

    def __init__(self):
        self.begun: float | None = None
        self.variants = 0

    def start(self) -> None:
        if self.begun is None:
            self.begun = time.perf_counter()

    def add(self, n: int) -> str:
        """Count ``n`` more finished variants; the rate, in words."""
        self.variants += n
        return f"{self.variants / max(time.perf_counter() - self.begun, 1e-9):.0f} variants/s"


def _split(job, batch, ranges, per_device, out, bar, rate: VariantRate):
    out = {k: np.asarray(v) for k, v in out.items()}
    bar.set_postfix_str(rate.add(sum(hi - lo for lo, hi in ranges)))
    for d, ((spec, chunk), (lo, hi)) in enumerate(zip(batch, ranges)):
        yield spec, chunk, job.finish(spec, {k: v[d * per_device : d * per_device + hi - lo] for k, v in out.items()})
        bar.update(1)


def run_job(
    job: Job,
    out: str | Path,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
    break_lease: bool = False,
) -> SweepReport:
    """Fill ``out/results.zarr`` with this process's share of ``job``; resumes.

    Args:
      job: what to compute (see :class:`gradflow.sweep.job.Job`).
      out: output directory.
      share: ``(i, n)``: this process takes work items ``k`` with ``k % n == i``.
      overwrite: replace a store of a different config instead of refusing it.
      show_progress: progress bar on a terminal, log lines otherwise.
      break_lease: first remove the leases of writers of other configs (their processes are gone for good).

    The process holds a writer lease on ``out`` throughout (:mod:`gradflow.sweep.lease`): processes of one
    config share the store; while one lives, a process of another config is refused, ``overwrite`` or not.
    Before any work, the store's cheap health check runs (:func:`gradflow.sweep.check.check_store`: markers,
    chunk files, coordinates, metadata) and what it finds is repaired: damaged work items are unmarked and
    recomputed with this process's share (the report's ``repaired`` says what was done).

    Raises:
      gradflow.sweep.store.StoreMismatchError: ``out`` holds a different config's sweep (and not ``overwrite``).
      gradflow.sweep.lease.StoreBusyError: a live process of another config writes ``out``.
    """
    index, count = share
    if not 0 <= index < count:
        raise ValueError(f"share must be (i, n) with 0 <= i < n; got {share}")
    if break_lease:
        break_leases(out, keep_hash=job.config_hash())
    with WriterLease(out, job.config_hash()):
        return _run(job, out, (index, count), overwrite=overwrite, show_progress=show_progress)


def _run(job: Job, out, share: tuple[int, int], *, overwrite: bool, show_progress: bool) -> SweepReport:
    """:func:`run_job` under this process's writer lease."""
    index, count = share
    store = open_store(out, job, environment=describe_environment(), overwrite=overwrite)
    health = check_store(out, job)
    repaired = tuple(repair_store(out, job, health)) if not health.ok else ()
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
    report = SweepReport(store.path, len(todo), len(mine) - len(todo), done, total, seconds,
                         n_variants / max(seconds, 1e-9), repaired)
    record = {**dataclasses.asdict(report), "path": str(report.path), "share": [index, count],
              "local_devices": jax.local_device_count(), "config_hash": store.config_hash}
    append_line(OutputLayout(out).run_log, json.dumps(record))
    return report


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to a line-oriented log; a torn last line (a killed writer) is ended first, so it
    cannot swallow this record."""
    with open(path, "a+b") as log:
        log.seek(0, os.SEEK_END)
        torn = False
        if log.tell():
            log.seek(-1, os.SEEK_END)
            torn = log.read(1) != b"\n"
        log.write((("\n" if torn else "") + line + "\n").encode())
