"""The collapse map as a sweep: train every variant, judge collapse, store it all in ``DIR/results.zarr``.

Same store, resume, sharding and progress as the lag-profile sweep (:mod:`gradflow.sweep.runner`); one
compile per combination of shape settings (data size, sequence length, hidden size, activations,
optimiser).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
from pathlib import Path

import numpy as np

from gradflow.collapse.metrics import collapse_metrics
from gradflow.collapse.config import CollapseConfig
from gradflow.config.profiles import ConfigError
from gradflow.sweep.results import Results
from gradflow.flow.saturation import GATE_NAMES
from gradflow.sweep.devices import over_devices
from gradflow.sweep.store import Variable
from gradflow.data.tasks import Task, adding_task, load_task, recall_task, seed_task, split
from gradflow.training.train import TrainSpec, settings_arrays, train_data, train_variants

#: Largest chunk ``chunk_size = "auto"`` picks for training.
MAX_AUTO_TRAIN_CHUNK = 64

#: What a collapse sweep stores per variant, and the axes each variable has beyond the swept ones.
VARIABLES = {
    "collapsed": (), "learned": (), "spread_ratio": (), "loss_ratio": (), "accuracy_margin": (),
    "final_val_loss": (), "final_val_accuracy": (), "initial_log10_norm_at_lag": (),
    "initial_log10_norm": ("lag",), "val_loss": ("checkpoint",), "val_accuracy": ("checkpoint",),
    "val_spread": ("checkpoint",), **{f"saturation_{g}": ("checkpoint",) for g in GATE_NAMES},
    "update_ratio": ("checkpoint",), "log10_grad_norm": ("checkpoint", "t"), "train_loss": ("step",),
}


def train_chunk_bytes(spec: TrainSpec, n_val: int, n: int) -> int:
    """Rough memory of training ``n`` variants at once (float32): backprop residuals of a minibatch
    through T steps (about 12 H per sequence and step), parameters with two optimiser moments, and
    the validation pass; ``n`` times that."""
    H, D, T = spec.hidden_size, spec.input_size, spec.seq_len
    params = 4 * H * (D + H + 1) + (H + 1) * spec.output_size
    per_variant = spec.batch_size * T * 12 * H + 4 * params + (n_val + spec.grad_probe) * T * 6 * H + spec.steps
    return 4 * n * per_variant


class CollapseJob:
    """A :class:`gradflow.collapse.config.CollapseConfig` as the store and runner see it."""

    title = "gradflow collapse map"
    dtype = "float32"

    def __init__(self, config: CollapseConfig):
        self.config = config
        self.source, self.grid = config.source, config.grid
        self._file_task = load_task(config.task["path"]) if config.task["name"] == "npz" else None
        shape_axes = dict(config.shape_axes)
        if self._file_task is not None:
            shape_axes["n"], shape_axes["seq_len"] = (self._file_task.n,), (self._file_task.seq_len,)
        self.shape_axes = shape_axes

    # -- what the store needs ------------------------------------------------------------------
    def resolved(self) -> dict:
        out = self.config.resolved()
        out["shape"] = {k: list(v) for k, v in self.shape_axes.items()}
        out["analysis"]["chunk_size"] = self.work_chunk_size()
        return out

    def spec_dims(self) -> dict[str, tuple]:
        return {k: v for k, v in self.shape_axes.items() if len(v) > 1}

    def n_specs(self) -> int:
        return math.prod(len(v) for v in self.shape_axes.values())

    def _combination(self, spec: int) -> dict:
        index = np.unravel_index(spec, [len(v) for v in self.shape_axes.values()])
        return {k: v[int(i)] for (k, v), i in zip(self.shape_axes.items(), index)}

    @functools.lru_cache(maxsize=None)
    def task(self, spec: int) -> tuple[Task, Task]:
        """The (train, validation) split of spec ``spec``'s data."""
        combo, t = self._combination(spec), self.config.task
        if self._file_task is not None:
            task = self._file_task
        elif t["name"] == "seed":
            task = seed_task(combo["n"], seq_len=combo["seq_len"], features=t["features"], seed=t["data_seed"])
        elif t["name"] == "recall":
            task = recall_task(combo["n"], seq_len=combo["seq_len"], features=t["features"], noise=t["noise"],
                               seed=t["data_seed"])
        else:
            task = adding_task(combo["n"], seq_len=combo["seq_len"], seed=t["data_seed"])
        return split(task, validation=t["validation"], seed=t["data_seed"])

    def train_spec(self, spec: int) -> TrainSpec:
        combo = self._combination(spec)
        train, _ = self.task(spec)
        return TrainSpec.for_task(
            train, hidden_size=combo["hidden_size"], activation=combo["activation"],
            recurrent_activation=combo["recurrent_activation"], optimizer=combo["optimizer"], **self.config.train,
        )

    def work_chunk_size(self) -> int:
        if self.config.chunk_size != "auto":
            return int(self.config.chunk_size)
        budget = self.config.memory_budget_mb * 2**20
        n = MAX_AUTO_TRAIN_CHUNK
        for spec in range(self.n_specs()):
            ts, n_val = self.train_spec(spec), self.task(spec)[1].n
            if train_chunk_bytes(ts, n_val, 1) > budget:
                raise ConfigError(f"[analysis].memory_budget_mb: training one variant of {ts} needs about "
                                  f"{train_chunk_bytes(ts, n_val, 1) / 2**20:.0f} MiB, more than the budget")
            while train_chunk_bytes(ts, n_val, n) > budget:
                n -= 1
        return n

    def variables(self) -> dict[str, Variable]:
        return {k: Variable(dims, np.dtype(bool) if k in ("collapsed", "learned") else np.dtype(np.float32))
                for k, dims in VARIABLES.items()}

    def extra_coords(self) -> dict[str, np.ndarray]:
        T = max(self.shape_axes["seq_len"])
        steps, C = self.config.train["steps"], self.config.train["checkpoints"]
        return {
            "lag": np.arange(1, T + 1, dtype=np.int32),
            "checkpoint": (np.arange(C + 1) * (steps // C)).astype(np.int32),  # training steps done
            "t": np.arange(T + 1, dtype=np.int32),  # ||dL/dh_t||, t = 0..T
            "step": np.arange(1, steps + 1, dtype=np.int32),
        }

    def chunk_function(self, spec: int, mesh):
        ts = self.train_spec(spec)
        fn = over_devices(mesh, functools.partial(_train_chunk, ts), 2)
        return fn, (train_data(*self.task(spec)),)

    def finish(self, spec: int, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        train, val = self.task(spec)
        metrics = collapse_metrics(val.kind, val.y, outputs["val_loss"][:, -1], outputs["val_accuracy"][:, -1],
                                   outputs["val_spread"][:, -1], thresholds=self.config.thresholds)
        n = len(outputs["val_loss"])
        lag = train.lag
        at_lag = outputs["initial_log10_norm"][:, lag - 1] if lag else np.full(n, np.nan, np.float32)
        ratio = np.concatenate([np.full((n, 1), np.nan, np.float32), outputs["update_ratio"]], axis=1)
        out = {k: v for k, v in outputs.items() if k in VARIABLES}
        out.update(
            collapsed=metrics["collapsed"], learned=metrics["learned"],
            spread_ratio=metrics["spread_ratio"].astype(np.float32), loss_ratio=metrics["loss_ratio"].astype(np.float32),
            accuracy_margin=metrics["accuracy_margin"].astype(np.float32),
            final_val_loss=outputs["val_loss"][:, -1], final_val_accuracy=outputs["val_accuracy"][:, -1],
            initial_log10_norm_at_lag=at_lag.astype(np.float32), update_ratio=ratio,
        )
        return out


def _train_chunk(spec: TrainSpec, values, data):
    out = train_variants(spec, settings_arrays(values), data)
    del out["final_val_predictions"], out["final_model"]
    return out


@dataclasses.dataclass
class CollapseMap:
    """A finished collapse map: the stored results, the onset table and the files written."""

    results: Results
    table: dict
    directory: Path | None
    files: list[Path]


def collapse_map(
    config: CollapseConfig | str | Path | None = None,
    out: str | Path | None = None,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    show_progress: bool = True,
) -> CollapseMap | None:
    """Train every variant of a collapse config and map where output collapse begins.

    Args:
      config: a :class:`CollapseConfig`, a path to a TOML file, or None for the embedded example.
      out: directory of the resumable store and figures; None computes in memory (no files kept).
      share, overwrite, show_progress: as in :func:`gradflow.sweep.runner.run_sweep`.

    Returns:
      The map, or None if this process's share is done but others' are not.

    Example (a small grid; see ``scripts/collapse_map.py`` for the full one)::

        import gradflow as gf
        cmap = gf.collapse_map("configs/collapse_recall.toml", "runs/collapse")
        cmap.table["onsets"]["forget_bias"]["onset"]        # where collapse begins, per sequence length
        cmap.results.data["collapsed"].mean()               # fraction of variants that collapsed
    """
    from gradflow.collapse.config import load_collapse_config
    from gradflow.collapse.table import collapse_table
    from gradflow.plot.collapse import plot_collapse_all
    from gradflow.sweep.runner import run_sweep

    if not isinstance(config, CollapseConfig):
        config = load_collapse_config(config)
    job = CollapseJob(config)
    if out is None:
        with tempfile.TemporaryDirectory(prefix="gradflow-collapse-") as tmp:
            run_sweep(job, tmp, show_progress=show_progress)
            results = Results.load(tmp)
        return CollapseMap(results, collapse_table(results), None, [])
    report = run_sweep(job, out, share=share, overwrite=overwrite, show_progress=show_progress)
    if not report.complete:
        return None
    results = Results.load(out)
    files = plot_collapse_all(results, Path(out) / "figures")
    return CollapseMap(results, collapse_table(results), Path(out), files)
