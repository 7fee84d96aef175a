"""Labelled results on disk: an xarray-readable Zarr group of named arrays, coordinates and attributes.

Arrays are laid out like an ``xarray.Dataset``: every data variable has dimensions that are a
prefix of ``dims`` (the swept settings in order) optionally followed by ``lag`` (1..T). The Zarr
group (format 2, consolidated metadata, ``_ARRAY_DIMENSIONS`` attributes) opens with
``xarray.open_zarr`` and needs nothing from gradflow to read.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.sweep.layout import STORE_NAME, OutputLayout


#: Attributes with structured values, stored as JSON text so that the Dataset stays NetCDF-compatible
#: (``ds.to_netcdf()`` refuses dicts); :func:`decode_attrs` reads them back.
JSON_ATTRS = ("config", "environment")


def encode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` with the values of :data:`JSON_ATTRS` as JSON text, everything else as it is."""
    return {k: json.dumps(v, sort_keys=True, default=_jsonable) if k in JSON_ATTRS and not isinstance(v, str) else v
            for k, v in attrs.items()}


def decode_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """``attrs`` with the JSON text of :data:`JSON_ATTRS` parsed (a store from before 0.2 held them as dicts)."""
    return {k: json.loads(v) if k in JSON_ATTRS and isinstance(v, str) else v for k, v in attrs.items()}


@dataclasses.dataclass
class Results:
    """Named arrays of a run.

    Attributes:
      dims: names of the swept dimensions, in array order (``lag`` is implicit and last).
      coords: each dimension's values, plus ``lag`` (1..T).
      data: variable name -> array of shape ``(*dim sizes)`` or ``(*dim sizes, T)``.
      attrs: JSON-ready metadata (resolved config, its hash, versions, device, precision).
      var_dims: dimension names of variables with an own axis other than ``lag`` (``exponent``); a variable
        not named here has ``dims`` and, if it has one more axis, ``lag``.
    """

    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    data: dict[str, np.ndarray]
    attrs: dict[str, Any]
    var_dims: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def dims_of(self, name: str) -> tuple[str, ...]:
        """Dimension names of variable ``name``."""
        if name in self.var_dims:
            return self.var_dims[name]
        return self.dims + (("lag",) if self.data[name].ndim == len(self.dims) + 1 else ())

    def save(self, directory: str | Path) -> Path:
        """Write ``DIR/results.zarr`` (replacing one that is there); returns its path.

        The group is written next to it under a temporary name and renamed into place when complete.
        """
        variables = {name: VariableSpec(self.dims_of(name), a.dtype, a.shape, a.shape) for name, a in self.data.items()}
        path = OutputLayout(directory).store
        tmp = create_group(path, coords=self.coords, variables=variables, attrs=self.attrs, publish=False)
        import zarr

        group = zarr.open_group(tmp, mode="r+", zarr_format=2)
        with writing_every_chunk():
            for name, array in self.data.items():
                group[name][...] = array
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "Results":
        """Read ``DIR/results.zarr`` (written by :meth:`save` or a sweep); a clear error if there is none."""
        dataset = open_results(directory)
        data = {name: var.values for name, var in dataset.data_vars.items()}
        own = {"lag", "exponent"}  # the variables' own axes; every other dimension is swept
        names = [d for d in dataset.dims if d not in own]
        first = next((v for v in dataset.data_vars.values() if not own & set(v.dims)), None)
        dims = tuple(first.dims) if first is not None else tuple(names)
        coords = {name: dataset[name].values for name in dataset.coords}
        var_dims = {name: tuple(v.dims) for name, v in dataset.data_vars.items() if set(v.dims) - {"lag"} - set(dims)}
        return cls(dims, coords, data, decode_attrs(dict(dataset.attrs)), var_dims)


@dataclasses.dataclass(frozen=True)
class VariableSpec:
    """Dimensions, dtype, shape, storage chunk shape and attributes (``long_name``, ``units``) of one variable."""

    dims: tuple[str, ...]
    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    attrs: tuple[tuple[str, str], ...] = ()


def create_group(
    path: str | Path,
    *,
    coords: dict[str, np.ndarray],
    variables: dict[str, VariableSpec],
    attrs: dict[str, Any],
    coord_attrs: dict[str, dict] | None = None,
    publish: bool = True,
) -> Path:
    """Create an empty results group: coordinates written, variables allocated (floats NaN-filled).

    It is built under a temporary name beside ``path``; with ``publish`` it is renamed to ``path``,
    atomically: if another process published first, ours is discarded and theirs kept. Returns the
    path of the group (the temporary one when not ``publish``).

    Raises:
      TypeError: if ``attrs`` holds something JSON cannot store (before anything is written).
    """
    import zarr

    attrs = json.loads(json.dumps(encode_attrs(attrs), default=_jsonable))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{owner_tag()}-{uuid.uuid4().hex}")
    group = zarr.open_group(tmp, mode="w-", zarr_format=2)
    group.attrs.update(attrs)
    with writing_every_chunk():
        write_coords(group, coords, coord_attrs)
    allocate_variables(group, variables)
    zarr.consolidate_metadata(tmp, zarr_format=2)
    if not publish:
        return tmp
    try:
        os.rename(tmp, path)
    except OSError:  # published by another process meanwhile: keep theirs
        shutil.rmtree(tmp)
        if not path.is_dir():
            raise
    return path


def consolidate(path: str | Path) -> None:
    """Rewrite the consolidated metadata of the group at ``path`` from its arrays (the ``.done`` folder of
    markers beside them is not part of the hierarchy)."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .done is not recognized")
        zarr.consolidate_metadata(path, zarr_format=2)


def owner_tag() -> str:
    """``host-pid`` of this process: names a temporary or set-aside store, so leftovers of a killed process
    can be told from those of a live one (:func:`gradflow.sweep.store.remove_leftovers`)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def write_coords(group, coords: dict[str, np.ndarray], attrs: dict[str, dict] | None = None) -> None:
    """Write each coordinate as one whole chunk, labelled with its own dimension and its ``attrs`` (long name, units)."""
    for name, values in coords.items():
        values = np.asarray(values)
        array = group.create_array(name, shape=values.shape, dtype=values.dtype, chunks=values.shape or None,
                                   fill_value=None)
        array.attrs["_ARRAY_DIMENSIONS"] = [name]
        array.attrs.update((attrs or {}).get(name, {}))
        array[...] = values


def allocate_variables(group, variables: dict[str, VariableSpec]) -> None:
    """Create each variable of ``variables`` in ``group``, empty (floats NaN-filled), with its dimensions and description."""
    for name, spec in variables.items():
        # Floats are NaN until written. Other dtypes get no fill value (xarray would mask values equal to
        # one); their chunks are always written (see writing_every_chunk).
        floating = np.issubdtype(spec.dtype, np.floating)
        array = group.create_array(name, shape=spec.shape, dtype=spec.dtype, chunks=spec.chunks,
                                   fill_value=np.nan if floating else None)
        array.attrs["_ARRAY_DIMENSIONS"] = list(spec.dims)
        array.attrs.update(dict(spec.attrs))


def writing_every_chunk():
    """Zarr writes chunks that equal the fill value too (an all-False flag, a zero coordinate): no
    reader has to guess what a missing chunk means."""
    import zarr

    return zarr.config.set({"array.write_empty_chunks": True})


def open_results(directory: str | Path):
    """``DIR/results.zarr`` as an ``xarray.Dataset`` (lazily loaded).

    Raises:
      FileNotFoundError: if ``directory`` holds no results store.
    """
    import xarray

    layout = OutputLayout(directory)
    path = layout.store
    if not layout.metadata.is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no gradflow results ({STORE_NAME})")
    return xarray.open_zarr(path, consolidated=True)


def is_numeric(values) -> bool:
    """True for coordinate values that are numbers (ordered, drawable on a numeric axis)."""
    return np.asarray(values).dtype.kind in "fiu"


def is_log_spaced(values) -> bool:
    """More than two positive numbers spanning at least a decade (drawn, and given cells, on a log scale)."""
    if not is_numeric(values) or np.size(values) <= 2:
        return False
    v = np.asarray(values, dtype=float)
    return bool(np.all(v > 0) and v.max() / v.min() >= 10)


def cell_edges(values) -> np.ndarray:
    """Edges of the cells around sorted coordinate ``values``: midpoints between neighbours (geometric midpoints
    on log-spaced values, :func:`is_log_spaced`); the outer edges lie as far outside as the nearest inner edge
    lies inside.

    Example:
      >>> cell_edges([1.0, 10.0, 100.0]).tolist()
      [0.31622776601683794, 3.1622776601683795, 31.622776601683793, 316.22776601683796]
    """
    v = np.asarray(values, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5]) if v[0] <= 0.5 else np.array([v[0] / 1.5, v[0] * 1.5])
    if is_log_spaced(v):
        mid = np.sqrt(v[1:] * v[:-1])
        return np.concatenate([[v[0] ** 2 / mid[0]], mid, [v[-1] ** 2 / mid[-1]]])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in the results' attributes")
