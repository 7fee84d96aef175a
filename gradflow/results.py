"""Labelled results of a run: named dimensions, coordinates, arrays and attributes, saved as npz + JSON.

Arrays are laid out like an ``xarray.Dataset``: every data variable has dimensions that are a
prefix of ``dims`` (the swept settings in order) optionally followed by ``lag`` (1..T).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS_FILE = "results.npz"
META_FILE = "results.json"


@dataclasses.dataclass
class Results:
    """Named arrays of a run.

    Attributes:
      dims: names of the swept dimensions, in array order (``lag`` is implicit and last).
      coords: each dimension's values, plus ``lag`` (1..T).
      data: variable name -> array of shape ``(*dim sizes)`` or ``(*dim sizes, T)``.
      attrs: JSON-ready metadata (resolved config, its hash, versions, device, precision, timings).
    """

    dims: tuple[str, ...]
    coords: dict[str, np.ndarray]
    data: dict[str, np.ndarray]
    attrs: dict[str, Any]

    def dims_of(self, name: str) -> tuple[str, ...]:
        """Dimension names of variable ``name``."""
        return self.dims + (("lag",) if self.data[name].ndim == len(self.dims) + 1 else ())

    def save(self, directory: str | Path) -> Path:
        """Write ``results.npz`` and ``results.json`` into ``directory``; returns the npz path.

        Both go to temporary files first and are renamed into place only when both are written.
        """
        directory = Path(directory)
        meta = {"dims": list(self.dims), "variables": {k: list(self.dims_of(k)) for k in self.data}, "attrs": self.attrs}
        text = json.dumps(meta, indent=2, default=_jsonable) + "\n"  # fails before anything is written
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"data/{k}": v for k, v in self.data.items()}
        arrays.update({f"coord/{k}": np.asarray(v) for k, v in self.coords.items()})
        path, meta_path = directory / ARRAYS_FILE, directory / META_FILE
        tmp, tmp_meta = path.with_suffix(".tmp.npz"), meta_path.with_suffix(".tmp.json")
        np.savez_compressed(tmp, **arrays)
        tmp_meta.write_text(text)
        tmp.replace(path)
        tmp_meta.replace(meta_path)
        return path

    @classmethod
    def load(cls, directory: str | Path) -> "Results":
        """Read what :meth:`save` wrote; a clear error if ``directory`` holds no results."""
        directory = Path(directory)
        if not (directory / ARRAYS_FILE).is_file() or not (directory / META_FILE).is_file():
            raise FileNotFoundError(f"{str(directory)!r} holds no gradflow results ({ARRAYS_FILE} and {META_FILE})")
        meta = json.loads((directory / META_FILE).read_text())
        with np.load(directory / ARRAYS_FILE) as z:
            data = {k[5:]: z[k] for k in z.files if k.startswith("data/")}
            coords = {k[6:]: z[k] for k in z.files if k.startswith("coord/")}
        return cls(tuple(meta["dims"]), coords, data, meta["attrs"])


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in results.json")
