"""The resumable sweep store: ``DIR/results.zarr`` filled one work chunk at a time, by any number of processes.

Layout: the swept shape settings lead (storage chunk 1 each), then the grid axes cut by
:class:`gradflow.sweep.chunks.ChunkLayout`, then a variable's own axes (``lag``, ``checkpoint``..., whole). A work chunk of one spec is exactly one
storage chunk of every variable, so it is written whole, and processes that take disjoint chunks
never touch the same stored bytes. After a chunk's data is written, an empty marker file
``results.zarr/.done/{spec}-{chunk}`` records it; a rerun skips marked chunks and recomputes the rest
(a chunk killed mid-write has no marker). The store's metadata is written once, when it is created,
and holds the resolved config and its hash: a rerun with another config is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import numpy as np

from gradflow.sweep.chunks import ChunkLayout
from gradflow.sweep.job import Job, config_hash
from gradflow.sweep.layout import OutputLayout, parse_marker
from gradflow.sweep.lease import process_alive
from gradflow.sweep.results import VariableSpec, consolidate, create_group, decode_attrs, owner_tag, writing_every_chunk


class StoreMismatchError(ValueError):
    """``DIR`` holds results of a different config (or no readable store)."""


@dataclasses.dataclass(frozen=True)
class SweepLayout:
    """Shapes, chunks and coordinates of the store of ``job``."""

    job: Job

    @property
    def spec_dims(self) -> dict[str, tuple]:
        return self.job.spec_dims

    @property
    def spec_shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.spec_dims.values())

    @property
    def n_specs(self) -> int:
        return self.job.n_specs

    @property
    def dims(self) -> dict[str, tuple]:
        """Swept shape settings, then the grid axes: the leading dimensions of every variable."""
        return {**self.spec_dims, **self.job.grid_axes}

    @functools.cached_property
    def chunks(self) -> ChunkLayout:
        return ChunkLayout(self.job.grid_shape, self.job.chunk_size)

    @property
    def n_work(self) -> int:
        """Work items: (spec, chunk) pairs."""
        return self.n_specs * self.chunks.n_chunks

    def item(self, k: int) -> tuple[int, int]:
        """Work item ``k`` as (spec index, chunk index)."""
        return divmod(k, self.chunks.n_chunks)

    def region(self, spec: int, chunk: int) -> tuple[slice, ...]:
        """Where chunk ``chunk`` of spec ``spec`` lies in every variable (without the extra axes)."""
        spec_index = np.unravel_index(spec, self.spec_shape) if self.spec_shape else ()
        return tuple(slice(int(i), int(i) + 1) for i in spec_index) + self.chunks.index(chunk)

    def variables(self) -> dict[str, VariableSpec]:
        dims = tuple(self.dims)
        shape = self.spec_shape + self.job.grid_shape
        chunks = (1,) * len(self.spec_shape) + self.chunks.chunk_shape
        extra = self.job.extra_coords
        out = {}
        for name, var in self.job.variables.items():
            sizes = tuple(len(extra[d]) for d in var.extra_dims)
            attrs = tuple((k, v) for k, v in (("long_name", var.long_name), ("units", var.units)) if v)
            out[name] = VariableSpec(dims + var.extra_dims, np.dtype(var.dtype), shape + sizes, chunks + sizes, attrs)
        return out

    def coords(self) -> dict[str, np.ndarray]:
        coords = {k: np.asarray(v) for k, v in self.dims.items()}
        coords.update({k: np.asarray(v) for k, v in self.job.extra_coords.items()})
        return coords


class SweepStore:
    """An open sweep store: which chunks are done, and writing a finished chunk."""

    def __init__(self, directory: str | Path, layout: SweepLayout, config_hash: str):
        import zarr

        self.files = OutputLayout(directory)
        self.path = self.files.store
        self.layout = layout
        self.config_hash = config_hash
        self._group = zarr.open_group(self.path, mode="r+", zarr_format=2)
        self.files.done_dir.mkdir(exist_ok=True)

    def _marker(self, spec: int, chunk: int) -> Path:
        return self.files.marker(spec, chunk)

    def is_done(self, spec: int, chunk: int) -> bool:
        return self._marker(spec, chunk).exists()

    def write_chunk(self, spec: int, chunk: int, outputs: dict[str, np.ndarray]) -> None:
        """Store one finished chunk (each output (n, ...) in C order over the chunk), then mark it done."""
        region = self.layout.region(spec, chunk)
        block = tuple(s.stop - s.start for s in region)
        with writing_every_chunk():
            self._write(region, block, outputs)
        self._marker(spec, chunk).touch()

    def _write(self, region, block, outputs: dict[str, np.ndarray]) -> None:
        for name, array in outputs.items():
            stored = self._group[name]
            values = np.asarray(array).reshape(block + array.shape[1:])
            short = [(0, 0)] * len(block) + [(0, n - m) for n, m in zip(stored.shape[len(block):], values.shape[len(block):])]
            if any(after for _, after in short):  # a shorter sequence of this spec: NaN past its end
                values = np.pad(values, short, constant_values=np.nan)
            stored[region] = values


def open_store(directory: str | Path, job: Job, *, environment: dict, overwrite: bool = False) -> SweepStore:
    """Create ``DIR/results.zarr`` for ``job``, or reopen it to resume.

    Raises:
      StoreMismatchError: if the store there was made by a different config (or is unreadable) and not
        ``overwrite``. With ``overwrite``, only a store of a different config is replaced; one of the same
        config is resumed. Several processes started with ``--overwrite`` on an old store of another
        config race to replace it: start one first, or use a fresh directory.
    """
    path = OutputLayout(directory).store
    digest = config_hash(job.config)
    remove_leftovers(directory)
    found = _stored_hash(path) if path.exists() else digest
    if found is None and read_attributes(directory).get("config_hash") == digest:  # lost consolidated metadata:
        consolidate(path)  # rebuild it from the arrays
        found = _stored_hash(path)
    if found != digest:
        if not overwrite:
            raise _mismatch(path, found, digest)
        # Only a store of another config is replaced: the same command with --overwrite resumes. It is
        # renamed aside first (atomic), so no process ever sees it half deleted.
        aside = path.with_name(f".{path.name}.old-{owner_tag()}-{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:  # another process moved it first
            pass
        else:
            shutil.rmtree(aside)
    layout = SweepLayout(job)
    if not path.exists():
        attrs = {
            "kind": job.kind,
            "title": job.title,
            "config": dict(job.config),
            "config_hash": digest,
            "config_source": job.source,
            "environment": environment,
            "matmul_precision": environment.get("matmul_precision"),
            "chunk_shape": list(layout.chunks.chunk_shape),
            "work_chunks": layout.n_work,
            "shape_combinations": layout.n_specs,
        }
        create_group(path, coords=layout.coords(), variables=layout.variables(), attrs=attrs,
                     coord_attrs={k: dict(v) for k, v in job.coord_attrs.items()})
    found = _stored_hash(path)
    if found != digest:  # replaced by a process of another config meanwhile
        raise _mismatch(path, found, digest)
    return SweepStore(directory, layout, digest)


def _mismatch(path: Path, found: str | None, digest: str) -> StoreMismatchError:
    what = (f"a sweep of a different config (hash {found[:12]}, this config {digest[:12]})" if found
            else "no readable gradflow store (no consolidated metadata)")
    return StoreMismatchError(f"{str(path)!r} holds {what}; pass --overwrite to replace it, or choose another --out")


def _stored_hash(path: Path) -> str | None:
    """The config hash of the store at ``path``; None if it has no readable consolidated metadata."""
    try:
        return stored_attrs(path.parent).get("config_hash")
    except (FileNotFoundError, ValueError):  # no metadata, or an attribute that is not JSON
        return None


#: Temporary (``tmp``) and set-aside (``old``) stores: ``.results.zarr.{tmp,old}-{host}-{pid}-{uuid}``.
LEFTOVER = re.compile(r"\.results\.zarr\.(?:tmp|old)-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{32}")
#: A leftover of another host (whose processes cannot be asked) is removed after this many seconds.
LEFTOVER_AGE_S = 24 * 3600


def remove_leftovers(directory: str | Path) -> list[Path]:
    """Remove temporary and set-aside stores beside ``DIR/results.zarr`` that no live process owns.

    Those of this host are removed when their process has ended; those of another host, or named before
    gradflow 0.2, once they are older than :data:`LEFTOVER_AGE_S`. Returns the paths removed.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    host = socket.gethostname()
    for path in directory.glob(".results.zarr.*"):
        match = LEFTOVER.fullmatch(path.name)
        if not (match or path.name.startswith((".results.zarr.tmp-", ".results.zarr.old-"))):
            continue
        if match and match["host"] == host:
            stale = not process_alive(int(match["pid"]))
        else:
            try:
                stale = time.time() - path.stat().st_mtime > LEFTOVER_AGE_S
            except FileNotFoundError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def consolidated_metadata(directory: str | Path) -> dict | None:
    """The consolidated metadata of ``DIR/results.zarr`` (its ``metadata`` mapping); None if missing or unreadable."""
    try:
        meta = json.loads(OutputLayout(directory).metadata.read_text())
    except (OSError, ValueError):
        return None
    return meta["metadata"] if isinstance(meta, dict) and isinstance(meta.get("metadata"), dict) else None


def stored_attrs(directory: str | Path) -> dict:
    """The attributes of ``DIR/results.zarr`` (read from its consolidated metadata, no xarray).

    Raises:
      FileNotFoundError: the store has no readable consolidated metadata.
    """
    meta = consolidated_metadata(directory)
    if meta is None or not isinstance(meta.get(".zattrs"), dict):
        raise FileNotFoundError(f"{str(OutputLayout(directory).store)!r} has no readable consolidated metadata")
    return decode_attrs(meta[".zattrs"])


def read_attributes(directory: str | Path) -> dict:
    """The store's attributes, from the consolidated metadata or, failing that, the group's own ``.zattrs``
    (empty if neither is readable)."""
    try:
        return stored_attrs(directory)
    except FileNotFoundError:
        pass
    try:
        return decode_attrs(json.loads((OutputLayout(directory).store / ".zattrs").read_text()))
    except (OSError, ValueError, AttributeError):
        return {}


def progress_of(directory: str | Path) -> tuple[int, int]:
    """(work chunks done, work chunks in all) of the store in ``directory``.

    Only markers that name a work item of the store count (a stray file in ``.done/`` does not).
    """
    attrs = stored_attrs(directory)
    total = int(attrs["work_chunks"])
    specs = int(attrs.get("shape_combinations", 0))
    done = OutputLayout(directory).done_dir
    count = 0
    for path in done.iterdir() if done.is_dir() else ():
        item = parse_marker(path.name)
        if item and (not specs or (item[0] < specs and item[1] < total // specs)):
            count += 1
    return count, total
