"""Run configuration: a TOML file (or the embedded default) parsed, validated and resolved.

A config has four tables. Settings that fix shapes (``[model]`` sizes and activations,
``[data].seq_len``) may be a value or a list; each combination is one compile. ``[grid]`` axes are
numeric and vmapped. Every list or range becomes a named dimension of the results.

The embedded default, :data:`DEFAULT_CONFIG`, is a complete example; the README documents every key.
A range ``{start, stop, num}`` is ``numpy.linspace`` (``log = true``: ``numpy.geomspace``).
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.flow.memory import auto_chunk_size
from gradflow.flow.engine import WRT
from gradflow.lstm.init import SCHEMES
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS
from gradflow.flow.variants import GRID_DEFAULTS, Grid, ModelSpec

DEFAULT_CONFIG = """\
# gradflow's embedded default: lag profiles over forget bias x weight scale x 3 seeds, H = 32, T = 200.
[model]
input_size = 8
hidden_size = 32
activation = "tanh"
recurrent_activation = "sigmoid"

[grid]
forget_bias = {start = -3.0, stop = 3.0, num = 25}
weight_scale = {start = 0.25, stop = 4.0, num = 13, log = true}
seed = [0, 1, 2]

[data]
seq_len = 200
input_seed = 0

[analysis]
wrt = ["h", "state"]
decades = 10.0
dtype = "float32"
chunk_size = "auto"
memory_budget_mb = 1024
"""

#: Keys allowed in each table, with their defaults (None: required).
SCHEMA: dict[str, dict[str, Any]] = {
    "model": {"input_size": None, "hidden_size": None, "activation": "tanh", "recurrent_activation": "sigmoid"},
    "grid": dict(GRID_DEFAULTS),
    "data": {"seq_len": None, "input_seed": 0},
    "analysis": {"wrt": list(WRT), "decades": 10.0, "dtype": "float32", "chunk_size": "auto", "memory_budget_mb": 1024},
}

#: Settings that fix shapes or control flow: each distinct combination is one compile.
SHAPE_AXES: tuple[str, ...] = ("hidden_size", "activation", "recurrent_activation", "seq_len")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and its table."""


@dataclasses.dataclass(frozen=True)
class Config:
    """A validated, fully resolved configuration.

    Attributes:
      input_size: D.
      shape_axes: each shape-fixing setting -> tuple of values (length 1 if not swept).
      grid: the numeric :class:`Grid`.
      input_seed: seed of the probe inputs.
      wrt: which lag profiles to compute.
      decades: horizon threshold exponent k (first lag below ``10^-k``).
      dtype: ``"float32"`` or ``"float64"``.
      chunk_size: most variants per work chunk (one compiled call per device), or ``"auto"``: as
        many as fit ``memory_budget_mb`` (see :mod:`gradflow.flow.memory`).
      memory_budget_mb: device memory one chunk may use, in MiB.
      source: the TOML text it came from.
    """

    input_size: int
    shape_axes: dict[str, tuple]
    grid: Grid
    input_seed: int
    wrt: tuple[str, ...]
    decades: float
    dtype: str
    chunk_size: int | str
    memory_budget_mb: float = 1024.0
    source: str = dataclasses.field(repr=False, default="")

    def specs(self) -> list[tuple[dict[str, Any], ModelSpec]]:
        """Every combination of shape settings (C order) with its :class:`ModelSpec`."""
        out = []
        for combo in itertools.product(*self.shape_axes.values()):
            setting = dict(zip(self.shape_axes, combo))
            out.append((setting, ModelSpec(input_size=self.input_size, **setting)))
        return out

    @property
    def dims(self) -> dict[str, tuple]:
        """Named dimensions of the results (swept settings only) and their coordinate values."""
        swept = {k: v for k, v in self.shape_axes.items() if len(v) > 1}
        swept.update({k: v for k, v in self.grid.axes.items()})
        return swept

    def work_chunk_size(self) -> int:
        """Most variants per work chunk: ``chunk_size``, or what fits ``memory_budget_mb`` if ``"auto"``.

        Raises:
          ConfigError: if not even one variant of some spec fits the budget.
        """
        if self.chunk_size != "auto":
            return int(self.chunk_size)
        specs = [spec for _, spec in self.specs()]
        try:
            return auto_chunk_size(
                specs, int(self.memory_budget_mb * 2**20), n_profiles=len(self.wrt), itemsize=np.dtype(self.dtype).itemsize
            )
        except ValueError as err:
            raise ConfigError(f"[analysis].memory_budget_mb: {err}") from None

    def resolved(self) -> dict[str, Any]:
        """A plain, JSON-ready dict with every value explicit (``chunk_size`` resolved: it fixes the store layout)."""
        return {
            "model": {"input_size": self.input_size, **{k: list(v) for k, v in self.shape_axes.items() if k != "seq_len"}},
            "grid": {k: list(v) for k, v in self.grid.axes.items()},
            "data": {"seq_len": list(self.shape_axes["seq_len"]), "input_seed": self.input_seed},
            "analysis": {"wrt": list(self.wrt), "decades": self.decades, "dtype": self.dtype,
                         "chunk_size": self.work_chunk_size()},
        }


def _values(where: str, raw: Any) -> list:
    """A scalar, a list, or a ``{start, stop, num[, log]}`` range as a non-empty list."""
    if isinstance(raw, dict):
        extra = sorted(set(raw) - {"start", "stop", "num", "log"})
        missing = sorted({"start", "stop", "num"} - set(raw))
        if extra or missing:
            raise ConfigError(f"{where}: a range takes start, stop, num (and optional log); "
                              f"{'unknown ' + str(extra) if extra else 'missing ' + str(missing)}")
        num = raw["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ConfigError(f"{where}.num must be a positive integer; got {num!r}")
        start, stop = raw["start"], raw["stop"]
        for key, value in (("start", start), ("stop", stop)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where}.{key} must be a number; got {value!r}")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log must be true or false; got {log!r}")
        if log:
            if start <= 0 or stop <= 0:
                raise ConfigError(f"{where}: a log range needs start > 0 and stop > 0; got {start}, {stop}")
            return np.geomspace(start, stop, num).tolist()
        return np.linspace(start, stop, num).tolist()
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise ConfigError(f"{where} is an empty list; give at least one value")
    return values


#: Seeds are uint32: JAX wraps larger ones silently.
MAX_SEED = 2**32 - 1


def _ints(where: str, values: list, *, minimum: int = 1, maximum: int | None = None) -> tuple[int, ...]:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
            bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{where} must hold integers {bound}; got {v!r}")
    return tuple(values)


def _names(where: str, values: list, allowed) -> tuple[str, ...]:
    for v in values:
        if not isinstance(v, str) or v not in allowed:
            raise ConfigError(f"{where}: {v!r} is not one of {sorted(allowed)}")
    return tuple(values)


def read_tables(text: str, schema: dict[str, dict[str, Any]], *, source_name: str,
                required: bool = True) -> tuple[dict, dict[str, dict[str, Any]]]:
    """TOML ``text`` as ``(raw, tables)``: each table of ``schema`` with its defaults filled in.

    Raises :class:`ConfigError` on invalid TOML, unknown tables or keys (listing the allowed ones), a
    table that is not a table and, with ``required``, a missing key whose default is None.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source_name} is not valid TOML: {err}") from None
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{source_name}: unknown table(s) {unknown}; allowed tables are {list(schema)}")
    tables: dict[str, dict[str, Any]] = {}
    for table, keys in schema.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{source_name}: [{table}] must be a table")
        extra = sorted(set(given) - set(keys))
        if extra:
            raise ConfigError(f"[{table}]: unknown key(s) {extra}; allowed keys are {sorted(keys)}")
        if required:
            for key, default in keys.items():
                if default is None and key not in given:
                    raise ConfigError(f"[{table}].{key} is required")
        tables[table] = {**keys, **given}
    return raw, tables


def parse_config(text: str, *, source_name: str = "config") -> Config:
    """Parse and validate TOML text into a :class:`Config`; :class:`ConfigError` names the bad key.

    Example:
      >>> cfg = parse_config(DEFAULT_CONFIG)
      >>> cfg.grid.shape, cfg.shape_axes["hidden_size"]
      ((25, 13, 3), (32,))
    """
    raw, tables = read_tables(text, SCHEMA, source_name=source_name)

    model, data, analysis = tables["model"], tables["data"], tables["analysis"]
    input_size = model["input_size"]
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ConfigError(f"[model].input_size must be a positive integer; got {input_size!r}")
    shape_axes = {
        "hidden_size": _ints("[model].hidden_size", _values("[model].hidden_size", model["hidden_size"])),
        "activation": _names("[model].activation", _values("[model].activation", model["activation"]), ACTIVATIONS),
        "recurrent_activation": _names(
            "[model].recurrent_activation",
            _values("[model].recurrent_activation", model["recurrent_activation"]),
            RECURRENT_ACTIVATIONS,
        ),
        "seq_len": _ints("[data].seq_len", _values("[data].seq_len", data["seq_len"])),
    }
    axes = {}
    for key in SCHEMA["grid"]:
        if key in raw.get("grid", {}):
            values = _values(f"[grid].{key}", tables["grid"][key])
            if key == "scheme":
                _names("[grid].scheme", values, SCHEMES)
            elif key == "seed":
                if isinstance(tables["grid"][key], dict):  # a range of seeds: linspace gives floats
                    values = [int(v) if float(v).is_integer() else v for v in values]
                _ints("[grid].seed", values, minimum=0, maximum=MAX_SEED)
            elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
                raise ConfigError(f"[grid].{key} must hold finite numbers; got {values}")
            else:
                values = [float(v) for v in values]  # 1 and 1.0 are the same setting (and hash)
            axes[key] = values
    wrt = _names("[analysis].wrt", _values("[analysis].wrt", analysis["wrt"]), WRT)
    if len(set(wrt)) != len(wrt):
        raise ConfigError(f"[analysis].wrt repeats a value: {list(wrt)}")
    decades = analysis["decades"]
    if isinstance(decades, bool) or not isinstance(decades, (int, float)) or not decades > 0:
        raise ConfigError(f"[analysis].decades must be a positive number; got {decades!r}")
    _names("[analysis].dtype", [analysis["dtype"]], ("float32", "float64"))
    chunk_size = analysis["chunk_size"]
    if chunk_size != "auto" and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f'[analysis].chunk_size must be a positive integer or "auto"; got {chunk_size!r}')
    budget = analysis["memory_budget_mb"]
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 < budget < float("inf"):
        raise ConfigError(f"[analysis].memory_budget_mb must be a positive number of MiB; got {budget!r}")
    (input_seed,) = _ints("[data].input_seed", [data["input_seed"]], minimum=0, maximum=MAX_SEED)
    config = Config(
        input_size=input_size,
        shape_axes=shape_axes,
        grid=Grid(**axes),
        input_seed=input_seed,
        wrt=wrt,
        decades=float(decades),
        dtype=analysis["dtype"],
        chunk_size=chunk_size,
        memory_budget_mb=float(budget),
        source=text,
    )
    config.work_chunk_size()  # a budget too small for one variant is an error now, before any work
    return config


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a TOML config file; the embedded :data:`DEFAULT_CONFIG` when ``path`` is None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG, source_name="the embedded default config")
    text, path = read_config_file(path)
    return parse_config(text, source_name=str(path))


def read_config_file(path: str | Path, *, what: str = "config") -> tuple[str, Path]:
    """The text of a config file and its path; :class:`ConfigError` if there is no such file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file {str(path)!r} does not exist")
    return path.read_text(), path
