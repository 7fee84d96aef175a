"""The store's health, and repair of exactly what is damaged.

A store is healthy when its consolidated metadata is readable and belongs to the job, every variable and
coordinate the job defines is there with the job's shape, chunks and dtype, the coordinates hold the
job's values, every file in ``.done/`` names a work item of the job, and every chunk of every marked work
item is on disk (and, with ``decode``, decodes). :func:`check_store` finds the problems; the cheap part
(no decoding: a few stat calls per chunk) runs at the start of every resume and in ``gradflow info``.
:func:`repair_store` fixes them: it rewrites coordinates and metadata, reallocates lost variables, removes
unknown markers and unmarks the damaged work items, so that the next run recomputes exactly those.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from gradflow.sweep.job import Job
from gradflow.sweep.layout import OutputLayout, parse_marker
from gradflow.sweep.results import allocate_variables, consolidate, write_coords
from gradflow.sweep.store import SweepLayout, consolidated_metadata, read_attributes

@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    Attributes:
      kind: ``metadata``, ``variable``, ``coordinate``, ``marker`` or ``chunk``.
      where: the file or array concerned, relative to the store.
      detail: what is wrong, in words.
      items: the work items ``(spec, chunk)`` whose results it damages (to be recomputed).
    """

    kind: str
    where: str
    detail: str
    items: tuple[tuple[int, int], ...] = ()

    def __str__(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclasses.dataclass(frozen=True)
class Health:
    """What :func:`check_store` found."""

    problems: tuple[Problem, ...]
    marked: int  # work items marked done (valid markers)
    total: int  # work items of the job
    decoded: bool  # chunks were decoded, not only found

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged(self) -> set[tuple[int, int]]:
        """Work items marked done whose results are damaged."""
        return {item for p in self.problems for item in p.items}

    def summary(self) -> str:
        depth = "present and decode" if self.decoded else "present"
        if self.ok:
            return f"healthy: metadata, coordinates and markers consistent; the chunks of {self.marked} done work items {depth}"
        lines = [f"{len(self.problems)} problem(s); {len(self.damaged)} work item(s) marked done are damaged:"]
        lines += [f"  - {p}" for p in self.problems[:20]]
        if len(self.problems) > 20:
            lines.append(f"  ... and {len(self.problems) - 20} more")
        return "\n".join(lines)


def chunk_key(region: tuple[slice, ...], chunks: tuple[int, ...], extra_dims: int) -> str:
    """The Zarr (format 2, ``.`` separator) key of the chunk of a variable that holds ``region``."""
    index = [s.start // c for s, c in zip(region, chunks)] + [0] * extra_dims
    return ".".join(str(i) for i in index) or "0"


def _array_meta(files: OutputLayout, name: str) -> dict | None:
    try:
        return json.loads((files.store / name / ".zarray").read_text())
    except (OSError, ValueError):
        return None


def check_store(directory: str | Path, job: Job, *, decode: bool = False) -> Health:
    """The problems of the store in ``directory`` as a store of ``job`` (see the module docstring).

    Args:
      directory: the output directory (``DIR``, holding ``results.zarr``).
      job: the job the store belongs to.
      decode: also read every marked chunk (finds corrupted files; costs a full read of the store).
    """
    files, layout = OutputLayout(directory), SweepLayout(job)
    problems: list[Problem] = []
    meta = consolidated_metadata(directory)
    if meta is None:
        problems.append(Problem("metadata", ".zmetadata", "missing or unreadable consolidated metadata"))
    elif meta.get(".zattrs", {}).get("config_hash") != job.config_hash():
        problems.append(Problem("metadata", ".zmetadata", "the stored config hash is not this job's"))
    variables = layout.variables()
    bad_variables = set()
    for name, spec in variables.items():
        stored = _array_meta(files, name)
        if stored is None:
            problems.append(Problem("variable", name, "missing (no .zarray)"))
            bad_variables.add(name)
        elif (tuple(stored["shape"]), tuple(stored["chunks"]), np.dtype(stored["dtype"])) != (spec.shape, spec.chunks, spec.dtype):
            problems.append(Problem("variable", name, f"shape, chunks or dtype differ from the job's ({spec.shape}, {spec.chunks}, {spec.dtype})"))
            bad_variables.add(name)
    for name, values in layout.coords().items():
        problems += _check_coordinate(files, name, np.asarray(values))
    marked, strays = _markers(files, layout)
    problems += [Problem("marker", f".done/{name}", "not a work item of this job") for name in strays]
    if bad_variables:  # every marked item lost its results in these variables
        problems = [dataclasses.replace(p, items=tuple(sorted(marked))) if p.kind == "variable" else p for p in problems]
    problems += _check_chunks(files, layout, variables, marked, skip=bad_variables, decode=decode)
    return Health(tuple(problems), len(marked), layout.n_work, decode)


def _check_coordinate(files: OutputLayout, name: str, want: np.ndarray) -> list[Problem]:
    stored = _array_meta(files, name)
    if stored is None:
        return [Problem("coordinate", name, "missing (no .zarray)")]
    if not (files.store / name / "0").is_file():  # a coordinate is one whole chunk (write_coords)
        return [Problem("coordinate", name, "its chunk is missing (it would read as the fill value)")]
    import zarr

    try:
        got = np.asarray(zarr.open_array(files.store / name, mode="r", zarr_format=2)[...])
    except Exception as err:  # a corrupted chunk: any codec error  # noqa: BLE001
        return [Problem("coordinate", name, f"does not decode ({type(err).__name__}: {err})")]
    if got.shape != want.shape or not np.array_equal(got, want):
        return [Problem("coordinate", name, "holds other values than the job's")]
    return []


def _markers(files: OutputLayout, layout: SweepLayout) -> tuple[set[tuple[int, int]], list[str]]:
    """Valid done markers as work items, and the names of files in ``.done/`` that are none."""
    marked, strays = set(), []
    if not files.done_dir.is_dir():
        return marked, strays
    n_chunks = layout.chunks.n_chunks
    for path in sorted(files.done_dir.iterdir()):
        item = parse_marker(path.name)
        if item and path.is_file() and item[0] < layout.n_specs and item[1] < n_chunks:
            marked.add(item)
        else:
            strays.append(path.name)
    return marked, strays


def _check_chunks(files, layout: SweepLayout, variables, marked, *, skip, decode) -> list[Problem]:
    problems = []
    arrays = {}
    if decode:
        import zarr

        arrays = {name: zarr.open_array(files.store / name, mode="r", zarr_format=2) for name in variables if name not in skip}
    lead = len(layout.spec_shape) + len(layout.job.grid_shape)
    for item in sorted(marked):
        region = layout.region(*item)
        for name, spec in variables.items():
            if name in skip:
                continue
            key = chunk_key(region, spec.chunks[:lead], len(spec.shape) - lead)
            if not (files.store / name / key).is_file():
                problems.append(Problem("chunk", f"{name}/{key}", "missing (it would read as NaN)", (item,)))
            elif decode:
                try:
                    arrays[name][region]
                except Exception as err:  # a corrupted chunk: any codec error  # noqa: BLE001
                    problems.append(Problem("chunk", f"{name}/{key}", f"does not decode ({type(err).__name__})", (item,)))
    return problems


def repair_store(directory: str | Path, job: Job, health: Health) -> list[str]:
    """Fix what ``health`` found; returns what was done, in words.

    Coordinates and lost variables are rewritten from the job, unknown markers removed, the consolidated
    metadata rewritten, and every damaged work item unmarked (its chunk files removed), so the next run of
    the job recomputes exactly those items.

    Raises:
      ValueError: the store's own attributes are lost or belong to another config (only ``--overwrite``
        can help there).
    """
    import zarr

    files, layout = OutputLayout(directory), SweepLayout(job)
    attrs = read_attributes(directory)  # the consolidated metadata may be what is damaged
    if attrs.get("config_hash") != job.config_hash():
        raise ValueError(f"{str(files.store)!r} has lost its attributes or belongs to another config: it cannot be "
                         "repaired; rerun with --overwrite to start it again")
    done: list[str] = []
    group = zarr.open_group(files.store, mode="r+", zarr_format=2)
    variables, coords = layout.variables(), layout.coords()
    for p in health.problems:
        if p.kind == "variable":
            shutil.rmtree(files.store / p.where, ignore_errors=True)
            allocate_variables(group, {p.where: variables[p.where]})
            done.append(f"reallocated variable {p.where}")
        elif p.kind == "coordinate":
            shutil.rmtree(files.store / p.where, ignore_errors=True)
            write_coords(group, {p.where: coords[p.where]}, {k: dict(v) for k, v in job.coord_attrs.items()})
            done.append(f"rewrote coordinate {p.where}")
        elif p.kind == "marker":
            (files.store / p.where).unlink(missing_ok=True)
            done.append(f"removed unknown marker {p.where}")
        elif p.kind == "chunk":
            (files.store / p.where).unlink(missing_ok=True)
    for spec, chunk in sorted(health.damaged):
        files.marker(spec, chunk).unlink(missing_ok=True)
    if health.damaged:
        done.append(f"unmarked {len(health.damaged)} damaged work item(s): the next run recomputes them")
    if any(p.kind in ("metadata", "variable", "coordinate") for p in health.problems):
        consolidate(files.store)
        done.append("rewrote the consolidated metadata")
    return done
