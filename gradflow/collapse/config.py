"""Collapse-map configuration: a TOML file naming the task, the model, the training and the grid.

Tables: ``[task]`` (which data), ``[model]``, ``[train]``, ``[grid]`` (vmapped per-variant settings:
initialisation and training hyperparameters) and ``[analysis]``. Settings that fix shapes or control
flow may be lists, each combination one compile: ``task.n``, ``task.seq_len``, ``model.hidden_size``,
``model.activation``, ``model.recurrent_activation``, ``train.optimizer``. Every list or range becomes
a named dimension of the results. The embedded example is :data:`DEFAULT_COLLAPSE_CONFIG`.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np

from gradflow.collapse.metrics import THRESHOLDS
from gradflow.config.profiles import MAX_SEED, ConfigError, _ints, _names, _values, read_config_file, read_tables
from gradflow.lstm.init import SCHEMES
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS
from gradflow.training.train import OPTIMIZERS, TRAIN_DEFAULTS, TrainGrid

TASK_NAMES = ("seed", "recall", "adding", "npz")

DEFAULT_COLLAPSE_CONFIG = """\
# The recall task: does an LSTM learn to carry the first input's sign to the end, by forget bias and length?
[task]
name = "recall"
n = 512
seq_len = [5, 20, 80]
validation = 0.25

[model]
hidden_size = 16

[train]
optimizer = "adam"
steps = 300
batch_size = 32
checkpoints = 3

[grid]
forget_bias = {start = -3.0, stop = 3.0, num = 7}
learning_rate = 0.01
seed = [0, 1]

[analysis]
map = ["forget_bias", "seq_len"]
"""

SCHEMA: dict[str, dict[str, Any]] = {
    "task": {"name": None, "n": 512, "seq_len": 20, "features": None, "noise": 1.0, "path": None,
             "validation": 0.2, "data_seed": 0},
    "model": {"hidden_size": 32, "activation": "tanh", "recurrent_activation": "sigmoid"},
    "train": {"optimizer": "adam", "steps": 400, "batch_size": 32, "checkpoints": 4, "grad_probe": 4},
    "grid": dict(TRAIN_DEFAULTS),
    "analysis": {"spread_threshold": THRESHOLDS["spread"], "loss_threshold": THRESHOLDS["loss"],
                 "map": [], "chunk_size": "auto", "memory_budget_mb": 2048},
}

#: Shape settings: each distinct combination is one compile.
SHAPE_AXES = ("n", "seq_len", "hidden_size", "activation", "recurrent_activation", "optimizer")


@dataclasses.dataclass(frozen=True)
class CollapseConfig:
    """A validated collapse-map configuration (see the module docstring)."""

    task: dict[str, Any]
    shape_axes: dict[str, tuple]
    train: dict[str, int]
    grid: TrainGrid
    thresholds: dict[str, float]
    map_axes: tuple[str, ...]
    chunk_size: int | str
    memory_budget_mb: float
    source: str = dataclasses.field(repr=False, default="")

    def combinations(self) -> list[dict[str, Any]]:
        """Every combination of shape settings, in C order."""
        return [dict(zip(self.shape_axes, combo)) for combo in itertools.product(*self.shape_axes.values())]

    def resolved(self) -> dict[str, Any]:
        return {
            "task": dict(self.task),
            "shape": {k: list(v) for k, v in self.shape_axes.items()},
            "train": dict(self.train),
            "grid": {k: list(v) for k, v in self.grid.axes.items()},
            "analysis": {"thresholds": dict(self.thresholds), "map": list(self.map_axes), "chunk_size": self.chunk_size,
                         "memory_budget_mb": self.memory_budget_mb},
        }


def _number(where: str, value: Any, *, positive: bool = False, fraction: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"{where} must be a finite number; got {value!r}")
    if positive and not value > 0:
        raise ConfigError(f"{where} must be positive; got {value!r}")
    if fraction and not 0 < value < 1:
        raise ConfigError(f"{where} must be a fraction in (0, 1); got {value!r}")
    return float(value)


def parse_collapse_config(text: str, *, source_name: str = "config", base_dir: Path | None = None) -> CollapseConfig:
    """Parse and validate TOML text; :class:`gradflow.config.profiles.ConfigError` names the bad key.

    Example:
      >>> cfg = parse_collapse_config(DEFAULT_COLLAPSE_CONFIG)
      >>> cfg.shape_axes["seq_len"], cfg.grid.shape
      ((5, 20, 80), (7, 2, 1))
    """
    raw, t = read_tables(text, SCHEMA, source_name=source_name, required=False)
    task = t["task"]
    if task["name"] is None:
        raise ConfigError(f"[task].name is required: one of {list(TASK_NAMES)}")
    _names("[task].name", [task["name"]], TASK_NAMES)
    name = task["name"]
    resolved_task: dict[str, Any] = {"name": name}
    if name == "npz":
        if not isinstance(task["path"], str):
            raise ConfigError("[task].path must name the .npz file (X (N, T, D), y (N,) or (N, k)) for name = \"npz\"")
        path = Path(task["path"])
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"[task].path: data file {str(path)!r} does not exist")
        for key in ("n", "seq_len", "features"):
            if key in raw.get("task", {}):
                raise ConfigError(f"[task].{key} is set by the data file for name = \"npz\"; remove it")
        resolved_task["path"] = str(path)
        n_values, t_values = (0,), (0,)  # filled from the file by the job
    else:
        if task["path"] is not None:
            raise ConfigError(f"[task].path is only for name = \"npz\"; got name = {name!r}")
        n_values = _ints("[task].n", _values("[task].n", task["n"]), minimum=2)
        t_values = _ints("[task].seq_len", _values("[task].seq_len", task["seq_len"]),
                         minimum=2 if name == "adding" else 1)
        default_features = {"seed": 10, "recall": 1, "adding": 2}[name]
        features = default_features if task["features"] is None else task["features"]
        (features,) = _ints("[task].features", [features])
        if name == "adding" and features != 2:
            raise ConfigError(f"[task].features is 2 for the adding problem (values and markers); got {features}")
        resolved_task.update(features=features, noise=_number("[task].noise", task["noise"], positive=True))
    resolved_task["validation"] = _number("[task].validation", task["validation"], fraction=True)
    (resolved_task["data_seed"],) = _ints("[task].data_seed", [task["data_seed"]], minimum=0, maximum=MAX_SEED)

    model, train = t["model"], t["train"]
    shape_axes = {
        "n": tuple(n_values),
        "seq_len": tuple(t_values),
        "hidden_size": _ints("[model].hidden_size", _values("[model].hidden_size", model["hidden_size"])),
        "activation": _names("[model].activation", _values("[model].activation", model["activation"]), ACTIVATIONS),
        "recurrent_activation": _names("[model].recurrent_activation",
                                       _values("[model].recurrent_activation", model["recurrent_activation"]),
                                       RECURRENT_ACTIVATIONS),
        "optimizer": _names("[train].optimizer", _values("[train].optimizer", train["optimizer"]), OPTIMIZERS),
    }
    settings = {}
    for key in ("steps", "batch_size", "checkpoints", "grad_probe"):
        (settings[key],) = _ints(f"[train].{key}", [train[key]])
    if settings["steps"] % settings["checkpoints"]:
        raise ConfigError(f"[train].steps ({settings['steps']}) must be a multiple of [train].checkpoints "
                          f"({settings['checkpoints']})")

    axes = {}
    for key in SCHEMA["grid"]:
        if key not in raw.get("grid", {}):
            continue
        values = _values(f"[grid].{key}", t["grid"][key])
        if key == "scheme":
            _names("[grid].scheme", values, SCHEMES)
        elif key == "seed":
            if isinstance(t["grid"][key], dict):
                values = [int(v) if float(v).is_integer() else v for v in values]
            _ints("[grid].seed", values, minimum=0, maximum=MAX_SEED)
        else:
            values = [_number(f"[grid].{key}", v) for v in values]
            if key in ("learning_rate",) and min(values) <= 0:
                raise ConfigError(f"[grid].learning_rate must be positive; got {values}")
            if key in ("weight_decay", "l2", "clip_norm") and min(values) < 0:
                raise ConfigError(f"[grid].{key} must be >= 0 (clip_norm 0: no clipping); got {values}")
        axes[key] = values

    analysis = t["analysis"]
    thresholds = {"spread": _number("[analysis].spread_threshold", analysis["spread_threshold"], positive=True),
                  "loss": _number("[analysis].loss_threshold", analysis["loss_threshold"], positive=True)}
    dims = [k for k, v in shape_axes.items() if len(v) > 1] + list(axes)
    map_axes = tuple(_values("[analysis].map", analysis["map"])) if analysis["map"] else tuple(
        k for k in dims if k != "seed")[:2]
    for axis in map_axes:
        if axis not in dims:
            raise ConfigError(f"[analysis].map: {axis!r} is not a swept setting; swept: {dims}")
    chunk_size = analysis["chunk_size"]
    if chunk_size != "auto" and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f'[analysis].chunk_size must be a positive integer or "auto"; got {chunk_size!r}')
    budget = _number("[analysis].memory_budget_mb", analysis["memory_budget_mb"], positive=True)
    return CollapseConfig(resolved_task, shape_axes, settings, TrainGrid(**axes), thresholds, map_axes, chunk_size,
                          budget, source=text)


def load_collapse_config(path: str | Path | None = None) -> CollapseConfig:
    """Read and validate a collapse config file; the embedded :data:`DEFAULT_COLLAPSE_CONFIG` when None."""
    if path is None:
        return parse_collapse_config(DEFAULT_COLLAPSE_CONFIG, source_name="the embedded collapse config")
    text, path = read_config_file(path)
    return parse_collapse_config(text, source_name=str(path), base_dir=path.parent)
