"""The monitor store: ``DIR/results.zarr`` grown by one record (one training step) at a time.

An xarray-readable Zarr group (format 2, consolidated metadata, as :mod:`gradflow.sweep.results` writes them)
with attribute ``kind = "monitor"``::

    log10_norm_h       (step, layer, lag)   each layer's lag profile on the probe batch
    input_sensitivity  (step, input_lag)    end to end, log10 ||dh^top_T / dx_{T-k}||_F (NaN with a backward layer)
    horizon            (step, layer)        first lag below 10^-decades (inf: never within T)
    decay_rate         (step, layer)        least-squares slope in decades per step

    step (int64), layer (0..L-1) with layer_index, layer_direction, layer_cell, layer_hidden_size along it,
    lag (1..T), input_lag (0..T-1)

The growing arrays are uncompressed and stored in chunks of one step, so a record is new chunk files only: no
chunk already on disk is rewritten, and a process killed while appending can damage nothing recorded before.
The chunks are written first, then each array's shape and last the consolidated metadata (each file replaced
whole); readers (and a reopening writer) trust the consolidated ``step`` length, so a record cut short is simply
not there (a reopen trims it away). A record is durable against a crash of the process when :meth:`append`
returns (not against a power cut: nothing is fsynced).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gradflow.sweep.layout import OutputLayout
from gradflow.sweep.results import VariableSpec, consolidate, create_group, open_results, owner_tag, writing_every_chunk
from gradflow.sweep.store import StoreMismatchError, remove_leftovers, stored_attrs

#: The store's ``kind`` attribute.
KIND = "monitor"

#: Attributes that must match for a reopened store to be resumed (else :class:`StoreMismatchError`).
IDENTITY = ("framework", "probe_shape", "probe_sha256", "wrt", "decades", "every", "every_unit", "task_lag", "layers")

LAYER_COORDS = ("layer_index", "layer_direction", "layer_cell", "layer_hidden_size")

_VARIABLE_ATTRS = {
    "log10_norm_h": ("lag profile of each layer on the probe batch, log10 ||dh_T/dh_{T-k}||_F (mean over probes)",
                     "log10"),
    "input_sensitivity": ("end-to-end input sensitivity, log10 ||dh^top_T/dx_{T-k}||_F (mean over probes)", "log10"),
    "horizon": ("first lag at which the layer's profile falls below 10^-decades (inf: never within T)", "steps"),
    "decay_rate": ("least-squares slope of the layer's profile against lag", "decades per step"),
}
_COORD_ATTRS = {
    "step": {"long_name": "training step (or epoch) at which the profile was recorded", "units": "1"},
    "layer": {"long_name": "layer, bottom first, forward before backward", "units": "1"},
    "lag": {"long_name": "lag k = T - t", "units": "steps"},
    "input_lag": {"long_name": "input lag k (x_{T-k})", "units": "steps"},
    "layer_index": {"long_name": "level of the stack (both directions share it), bottom = 0", "units": "1"},
    "layer_direction": {"long_name": "direction the layer reads the sequence in"},
    "layer_cell": {"long_name": "cell family"},
    "layer_hidden_size": {"long_name": "hidden size H of the layer (per direction)", "units": "1"},
}


class LayerDescription(NamedTuple):
    """What identifies one monitored layer: its level, direction, cell family and hidden size."""

    index: int
    direction: str
    cell: str
    hidden_size: int

    @property
    def label(self) -> str:
        """The layer's name in logged scalars: ``"0"``, or ``"0_backward"`` for a backward layer."""
        return str(self.index) if self.direction == "forward" else f"{self.index}_{self.direction}"

    def __str__(self) -> str:
        return f"{self.index} {self.direction} {self.cell} H={self.hidden_size}"


class Record(NamedTuple):
    """One stored record: the arrays of one step."""

    step: int
    log10_norm_h: np.ndarray  # (L, T)
    input_sensitivity: np.ndarray  # (T,)
    horizon: np.ndarray  # (L,)
    decay_rate: np.ndarray  # (L,)


#: The arrays that grow along ``step``, in the order a record writes them (the coordinate last).
APPENDED = ("log10_norm_h", "input_sensitivity", "horizon", "decay_rate", "step")


def _replace_json(path: Path, value: dict) -> None:
    """Write ``path`` whole: a temporary file beside it, renamed over it (readers see the old or the new file)."""
    tmp = path.with_name(f"{path.name}.tmp-{owner_tag()}")
    tmp.write_text(json.dumps(value, indent=4, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def _variables(n_layers: int, seq_len: int) -> dict[str, VariableSpec]:
    shapes = {"log10_norm_h": ("step", "layer", "lag"), "input_sensitivity": ("step", "input_lag"),
              "horizon": ("step", "layer"), "decay_rate": ("step", "layer")}
    sizes = {"step": 0, "layer": n_layers, "lag": seq_len, "input_lag": seq_len}
    specs = {}
    for name, dims in shapes.items():
        shape = tuple(sizes[d] for d in dims)
        long_name, units = _VARIABLE_ATTRS[name]
        attrs = [("long_name", long_name), ("units", units)]
        if "layer" in dims:
            attrs.append(("coordinates", " ".join(LAYER_COORDS)))
        specs[name] = VariableSpec(dims, np.dtype(np.float32), shape, (1,) + shape[1:], tuple(attrs))
    return specs


class MonitorStore:
    """An open monitor store: append records, read them back.

    Use :func:`open_monitor_store` to create or reopen one. Its arrays are uncompressed, so a record is appended
    with plain file writes (the chunk bytes, then each array's ``.zarray`` and the consolidated metadata, each
    replaced whole): about a millisecond, where zarr's own resize-write-consolidate takes 15 to 30.
    """

    def __init__(self, directory: str | Path, layers: tuple[LayerDescription, ...], seq_len: int):
        self.directory = Path(directory)
        self.path = OutputLayout(directory).store
        self.layers = layers
        self.seq_len = seq_len
        self._consolidated = json.loads(OutputLayout(directory).metadata.read_text())
        self._meta = {name: json.loads((self.path / name / ".zarray").read_text()) for name in APPENDED}
        for name, meta in self._meta.items():
            if (meta.get("compressor") is not None or meta.get("filters") or meta.get("order") != "C"
                    or meta.get("dimension_separator", ".") != "."):
                raise StoreMismatchError(f"{str(self.path / name)!r} is not an uncompressed C-order array, as a "
                                         "monitor writes them; pass overwrite=True to replace the store")
        self._steps = self._trim_to_consolidated()

    def _trim_to_consolidated(self) -> list[int]:
        """The stored steps; arrays longer than the consolidated ``step`` (a record cut short) are trimmed to it."""
        n = int(self._consolidated["metadata"]["step/.zarray"]["shape"][0])
        for name, meta in self._meta.items():
            if meta["shape"][0] != n:
                meta["shape"][0] = n
                _replace_json(self.path / name / ".zarray", meta)
        if not n:
            return []
        import zarr

        return [int(s) for s in zarr.open_array(self.path / "step", mode="r", zarr_format=2)[:n]]

    @property
    def steps(self) -> tuple[int, ...]:
        """The recorded steps, in the order recorded (increasing)."""
        return tuple(self._steps)

    def __contains__(self, step: int) -> bool:
        return step in self._steps

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, record: Record) -> None:
        """Write ``record`` after the last one; on disk, consolidated, when this returns.

        The chunks of record n are new files (``name/n.0.0``); then each array's shape and the consolidated
        metadata are replaced (``os.replace``, atomic): a process killed in between leaves the previous records as
        they were, and the next open trims the arrays back to the consolidated ``step`` length.

        Raises:
          ValueError: if ``record.step`` is not after the last recorded step, or an array has the wrong shape.
        """
        if self._steps and record.step <= self._steps[-1]:
            raise ValueError(f"step {record.step} is not after the last recorded step {self._steps[-1]} of "
                             f"{str(self.path)!r}: records are appended in increasing step order")
        L, T = len(self.layers), self.seq_len
        expected = {"log10_norm_h": (L, T), "input_sensitivity": (T,), "horizon": (L,), "decay_rate": (L,)}
        for name, shape in expected.items():
            if np.shape(getattr(record, name)) != shape:
                raise ValueError(f"{name} must have shape {shape}; got {np.shape(getattr(record, name))}")
        n = len(self._steps)
        for name in APPENDED:
            meta = self._meta[name]
            chunk = ".".join([str(n)] + ["0"] * (len(meta["shape"]) - 1))
            values = np.asarray(getattr(record, name), np.dtype(meta["dtype"]))
            (self.path / name / chunk).write_bytes(np.ascontiguousarray(values).tobytes())
        for name in APPENDED:
            self._meta[name]["shape"][0] = n + 1
            _replace_json(self.path / name / ".zarray", self._meta[name])
            self._consolidated["metadata"][f"{name}/.zarray"] = self._meta[name]
        _replace_json(OutputLayout(self.directory).metadata, self._consolidated)
        self._steps.append(record.step)

    def read(self, step: int) -> Record:
        """The record stored at ``step``.

        Raises:
          KeyError: if no record was made at ``step``.
        """
        if step not in self._steps:
            raise KeyError(f"no record at step {step} in {str(self.path)!r}")
        i = self._steps.index(step)
        import zarr

        arrays = {name: np.asarray(zarr.open_array(self.path / name, mode="r", zarr_format=2)[i])
                  for name in _VARIABLE_ATTRS}
        return Record(step, **arrays)


def open_monitor_store(
    directory: str | Path,
    layers: tuple[LayerDescription, ...],
    seq_len: int,
    attrs: dict[str, Any],
    *,
    overwrite: bool = False,
) -> MonitorStore:
    """Create ``DIR/results.zarr`` for a monitor, or reopen it to append.

    Args:
      directory: the output directory.
      layers: the monitored layers, bottom first.
      seq_len: T of the probe batch.
      attrs: the store's attributes; those named in :data:`IDENTITY` must match a store being reopened.
      overwrite: replace a store that is there, whatever it holds.

    Raises:
      StoreMismatchError: if the store there is not a monitor, or a monitor of another model, probe or
        setting (naming each attribute that differs), and not ``overwrite``.
    """
    path = OutputLayout(directory).store
    remove_leftovers(directory)
    attrs = {k: v for k, v in {**attrs, "kind": KIND, "layers": [str(layer) for layer in layers]}.items()
             if v is not None}  # a None attribute would stop to_netcdf
    if path.exists() and overwrite:
        shutil.rmtree(path)
    if path.exists():
        _check_identity(path, attrs)
    else:
        _create(path, layers, seq_len, attrs)
    return MonitorStore(directory, layers, seq_len)


def _create(path: Path, layers: tuple[LayerDescription, ...], seq_len: int, attrs: dict[str, Any]) -> None:
    import zarr

    coords = {"layer": np.arange(len(layers), dtype=np.int64), "lag": np.arange(1, seq_len + 1, dtype=np.int64),
              "input_lag": np.arange(seq_len, dtype=np.int64)}
    tmp = create_group(path, coords=coords, variables={}, attrs=attrs, coord_attrs=_COORD_ATTRS, publish=False)
    group = zarr.open_group(tmp, mode="r+", zarr_format=2)
    along_layer = {
        "layer_index": np.array([layer.index for layer in layers], np.int64),
        "layer_direction": np.array([layer.direction for layer in layers]),
        "layer_cell": np.array([layer.cell for layer in layers]),
        "layer_hidden_size": np.array([layer.hidden_size for layer in layers], np.int64),
    }
    with writing_every_chunk():
        for name, values in along_layer.items():
            array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=values.shape,
                                       fill_value=None)
            array.attrs["_ARRAY_DIMENSIONS"] = ["layer"]
            array.attrs.update(_COORD_ATTRS[name])
            array[...] = values
    growing = {**_variables(len(layers), seq_len),
               "step": VariableSpec(("step",), np.dtype(np.int64), (0,), (1,), tuple(_COORD_ATTRS["step"].items()))}
    for name, spec in growing.items():  # uncompressed, one step per chunk: appended with plain file writes
        floating = np.issubdtype(spec.dtype, np.floating)
        array = group.create_array(name, shape=spec.shape, dtype=spec.dtype, chunks=spec.chunks, compressors=None,
                                   filters=None, fill_value=np.nan if floating else None, chunk_key_encoding={
                                       "name": "v2", "separator": "."})
        array.attrs["_ARRAY_DIMENSIONS"] = list(spec.dims)
        array.attrs.update(dict(spec.attrs))
    consolidate(tmp)
    try:
        tmp.rename(path)
    except OSError:  # made by another process meanwhile: check it as if it had been there
        shutil.rmtree(tmp)
        _check_identity(path, attrs)


def _check_identity(path: Path, attrs: dict[str, Any]) -> None:
    try:
        stored = stored_attrs(path.parent)
    except (FileNotFoundError, ValueError):
        raise StoreMismatchError(f"{str(path)!r} is no readable gradflow store (no consolidated metadata); pass "
                                 "overwrite=True to replace it, or choose another directory") from None
    if stored.get("kind") != KIND:
        raise StoreMismatchError(f"{str(path)!r} holds a {stored.get('kind', 'gradflow')!r} store, not a monitor; pass "
                                 "overwrite=True to replace it, or choose another directory")
    new = json.loads(json.dumps({k: attrs.get(k) for k in IDENTITY}))
    differ = [f"{k} (stored {stored.get(k)!r}, now {new[k]!r})" for k in IDENTITY if stored.get(k) != new[k]]
    if differ:
        raise StoreMismatchError(f"{str(path)!r} holds a monitor of another run: {'; '.join(differ)}; pass "
                                 "overwrite=True to replace it, or choose another directory")


def open_monitor(directory: str | Path):
    """``DIR/results.zarr`` of a monitor as an ``xarray.Dataset`` (lazily loaded).

    Raises:
      FileNotFoundError: if ``directory`` holds no gradflow store.
      ValueError: if it holds a store of another kind.
    """
    dataset = open_results(directory)
    if dataset.attrs.get("kind") != KIND:
        raise ValueError(f"{str(directory)!r} holds a {dataset.attrs.get('kind')!r} store, not a monitor")
    return dataset
