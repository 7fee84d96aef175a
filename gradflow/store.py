"""The resumable sweep store: ``DIR/results.zarr`` filled one work chunk at a time, by any number of processes.

Layout: the swept shape settings lead (storage chunk 1 each), then the grid axes cut by
:class:`gradflow.chunking.ChunkLayout`, then ``lag`` (whole). A work chunk of one spec is exactly one
storage chunk of every variable, so it is written whole, and processes that take disjoint chunks
never touch the same stored bytes. After a chunk's data is written, an empty marker file
``results.zarr/.done/{spec}-{chunk}`` records it; a rerun skips marked chunks and recomputes the rest
(a chunk killed mid-write has no marker). The store's metadata is written once, when it is created,
and holds the resolved config and its hash: a rerun with another config is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np

from gradflow.chunking import ChunkLayout
from gradflow.config import Config, ConfigError
from gradflow.results import STORE_NAME, VariableSpec, create_group
from gradflow.saturation import GATE_NAMES

DONE_DIR = ".done"


class StoreMismatchError(ConfigError):
    """``DIR`` holds results of a different config."""


def config_hash(config: Config) -> str:
    """SHA-256 of the resolved config: equal for configs that compute the same thing."""
    return hashlib.sha256(json.dumps(config.resolved(), sort_keys=True).encode()).hexdigest()


def variable_names(wrt: tuple[str, ...]) -> list[str]:
    """Every variable a sweep stores, in a fixed order."""
    names = [f"{kind}_{w}" for w in wrt for kind in ("log10_norm", "horizon", "decay_rate")]
    return names + [f"saturation_{g}" for g in GATE_NAMES] + ["nonfinite"]


@dataclasses.dataclass(frozen=True)
class SweepLayout:
    """Shapes, chunks and coordinates of the store of ``config``."""

    config: Config

    @property
    def spec_dims(self) -> dict[str, tuple]:
        return {k: v for k, v in self.config.shape_axes.items() if len(v) > 1}

    @property
    def spec_shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.spec_dims.values())

    @property
    def n_specs(self) -> int:
        return math.prod(self.spec_shape)

    @property
    def chunks(self) -> ChunkLayout:
        return ChunkLayout(self.config.grid.shape, self.config.work_chunk_size())

    @property
    def n_work(self) -> int:
        """Work items: (spec, chunk) pairs."""
        return self.n_specs * self.chunks.n_chunks

    @property
    def seq_len_max(self) -> int:
        return max(self.config.shape_axes["seq_len"])

    def item(self, k: int) -> tuple[int, int]:
        """Work item ``k`` as (spec index, chunk index)."""
        return divmod(k, self.chunks.n_chunks)

    def region(self, spec: int, chunk: int) -> tuple[slice, ...]:
        """Where chunk ``chunk`` of spec ``spec`` lies in every variable (without the lag axis)."""
        spec_index = np.unravel_index(spec, self.spec_shape) if self.spec_shape else ()
        return tuple(slice(int(i), int(i) + 1) for i in spec_index) + self.chunks.index(chunk)

    def variables(self) -> dict[str, VariableSpec]:
        dims = tuple(self.config.dims)
        shape = self.spec_shape + self.config.grid.shape
        chunks = (1,) * len(self.spec_shape) + self.chunks.chunk_shape
        dtype = np.dtype(self.config.dtype)
        out = {}
        for name in variable_names(self.config.wrt):
            if name.startswith("log10_norm"):
                out[name] = VariableSpec(dims + ("lag",), dtype, shape + (self.seq_len_max,), chunks + (self.seq_len_max,))
            else:
                out[name] = VariableSpec(dims, np.dtype(bool) if name == "nonfinite" else dtype, shape, chunks)
        return out

    def coords(self) -> dict[str, np.ndarray]:
        coords = {k: np.asarray(v) for k, v in self.config.dims.items()}
        coords["lag"] = np.arange(1, self.seq_len_max + 1, dtype=np.int32)
        return coords


class SweepStore:
    """An open sweep store: which chunks are done, and writing a finished chunk."""

    def __init__(self, directory: str | Path, layout: SweepLayout):
        import zarr

        self.path = Path(directory) / STORE_NAME
        self.layout = layout
        self._group = zarr.open_group(self.path, mode="r+", zarr_format=2)
        (self.path / DONE_DIR).mkdir(exist_ok=True)

    def _marker(self, spec: int, chunk: int) -> Path:
        return self.path / DONE_DIR / f"{spec}-{chunk}"

    def is_done(self, spec: int, chunk: int) -> bool:
        return self._marker(spec, chunk).exists()

    def n_done(self) -> int:
        return sum(1 for _ in (self.path / DONE_DIR).iterdir())

    def write_chunk(self, spec: int, chunk: int, outputs: dict[str, np.ndarray]) -> None:
        """Store one finished chunk (each output (n, ...) in C order over the chunk), then mark it done."""
        region = self.layout.region(spec, chunk)
        block = tuple(s.stop - s.start for s in region)
        for name, array in outputs.items():
            stored = self._group[name]
            values = np.asarray(array).reshape(block + array.shape[1:])
            if values.ndim > len(block) and values.shape[-1] < stored.shape[-1]:  # shorter T: NaN past it
                pad = np.full(block + (stored.shape[-1] - values.shape[-1],), np.nan, values.dtype)
                values = np.concatenate([values, pad], axis=-1)
            stored[region] = values
        self._marker(spec, chunk).touch()


def open_store(directory: str | Path, config: Config, *, environment: dict, overwrite: bool = False) -> SweepStore:
    """Create ``DIR/results.zarr`` for ``config``, or reopen it to resume.

    Raises:
      StoreMismatchError: if the store there was made by a different config and not ``overwrite``.
    """
    path = Path(directory) / STORE_NAME
    digest = config_hash(config)
    if overwrite and path.exists():
        shutil.rmtree(path)
    layout = SweepLayout(config)
    if not path.exists():
        attrs = {
            "title": "gradflow lag profiles",
            "config": config.resolved(),
            "config_hash": digest,
            "config_source": config.source,
            "environment": environment,
            "matmul_precision": environment.get("matmul_precision"),
            "chunk_shape": list(layout.chunks.chunk_shape),
            "work_chunks": layout.n_work,
        }
        create_group(path, coords=layout.coords(), variables=layout.variables(), attrs=attrs)
    stored = stored_attrs(directory)
    if stored.get("config_hash") != digest:
        raise StoreMismatchError(
            f"{str(path)!r} holds a sweep of a different config (hash {str(stored.get('config_hash'))[:12]}, "
            f"this config {digest[:12]}); pass --overwrite to replace it, or choose another --out"
        )
    return SweepStore(directory, layout)


def stored_attrs(directory: str | Path) -> dict:
    """The attributes of ``DIR/results.zarr`` (read from its consolidated metadata, no xarray)."""
    meta = json.loads((Path(directory) / STORE_NAME / ".zmetadata").read_text())
    return meta["metadata"][".zattrs"]


def progress_of(directory: str | Path) -> tuple[int, int]:
    """(work chunks done, work chunks in all) of the store in ``directory``."""
    path = Path(directory) / STORE_NAME
    done = path / DONE_DIR
    return (sum(1 for _ in done.iterdir()) if done.is_dir() else 0), int(stored_attrs(directory)["work_chunks"])
