"""The collapse map as a sweep job: train every variant, judge collapse, store it all in ``DIR/results.zarr``.

Same store, resume, sharding and progress as the lag-profile sweep (:mod:`gradflow.sweep.runner`); one
compile per combination of shape settings (data size, sequence length, hidden size, activations,
optimiser). :func:`collapse_job` describes the sweep; ``gradflow.collapse_map`` runs it and draws the map.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from gradflow.collapse.metrics import collapse_metrics
from gradflow.config import Config, ConfigError
from gradflow.config.meanings import coordinate_attrs
from gradflow.data.tasks import Task, split
from gradflow.flow.memory import format_bytes
from gradflow.flow.saturation import GATE_NAMES
from gradflow.sweep.devices import over_devices
from gradflow.sweep.job import Job, Variable
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


#: What each variable is, and its units (``"1"``: dimensionless; empty: a flag).
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "collapsed": ("the predictions barely vary: spread ratio below the collapse threshold", ""),
    "learned": ("beats every constant predictor: loss ratio below the learning threshold", ""),
    "spread_ratio": ("standard deviation of the validation predictions over inputs / that of the targets", "1"),
    "loss_ratio": ("validation loss / loss of the best constant predictor", "1"),
    "accuracy_margin": ("validation accuracy minus the majority-class rate (NaN for regression)", "1"),
    "final_val_loss": ("validation loss after training", "nats (cross-entropy) or squared target units"),
    "final_val_accuracy": ("validation accuracy after training (NaN for regression)", "1"),
    "initial_log10_norm_at_lag": ("log10 ||dh_T/dh_(T-lag)||_F before training, at the task's signal lag", "1"),
    "initial_log10_norm": ("log10 ||dh_T/dh_(T-lag)||_F before training, on the first training sequence", "1"),
    "val_loss": ("validation loss at the checkpoint", "nats (cross-entropy) or squared target units"),
    "val_accuracy": ("validation accuracy at the checkpoint (NaN for regression)", "1"),
    "val_spread": ("standard deviation of the validation predictions over inputs at the checkpoint", "1"),
    **{f"saturation_{g}": (f"fraction of steps x units with the {g} gate saturated, on the validation inputs", "1")
       for g in GATE_NAMES},
    "update_ratio": ("mean ||update|| / ||weights|| over the steps before the checkpoint", "1"),
    "log10_grad_norm": ("log10 ||dL/dh_t|| at the checkpoint, mean over the probe sequences", "1"),
    "train_loss": ("minibatch training loss without the L2 term", "nats (cross-entropy) or squared target units"),
}

#: The variables' own axes.
AXIS_ATTRS = {
    "lag": {"long_name": "lag k: dh_T/dh_(T-k)", "units": "steps"},
    "checkpoint": {"long_name": "training steps done at the evaluation", "units": "steps"},
    "t": {"long_name": "time step t of dL/dh_t (0: the initial state)", "units": "steps"},
    "step": {"long_name": "training step", "units": "steps"},
}


def train_chunk_bytes(spec: TrainSpec, n_val: int, n: int) -> int:
    """Rough memory of training ``n`` variants at once (float32): backprop residuals of a minibatch
    through T steps (about 12 H per sequence and step), parameters with two optimiser moments, and
    the validation pass; ``n`` times that."""
    H, D, T = spec.hidden_size, spec.input_size, spec.seq_len
    params = 4 * H * (D + H + 1) + (H + 1) * spec.output_size
    per_variant = spec.batch_size * T * 12 * H + 4 * params + (n_val + spec.grad_probe) * T * 6 * H + spec.steps
    return 4 * n * per_variant


KIND = "collapse"


class CollapseSpecs:
    """The data and the training spec of every shape combination of a collapse config (C order)."""

    def __init__(self, config: Config):
        self.config = config
        self._file_task = config.make_task() if config.data.task == "npz" else None
        shape_axes = dict(config.shape_axes)
        if self._file_task is not None:
            shape_axes["n"], shape_axes["seq_len"] = (self._file_task.n,), (self._file_task.seq_len,)
        self.shape_axes = shape_axes

    def resolved(self) -> dict:
        """The config with every value explicit: a data file's sizes, the steps and the chunk size resolved."""
        out = self.config.resolved()
        if self._file_task is not None:
            out["model"]["input_size"] = self._file_task.input_size
            out["data"].update(n=[self._file_task.n], seq_len=[self._file_task.seq_len])
        out["train"].pop("epochs", None)
        out["train"]["steps"], out["train"]["checkpoints"] = self.schedule
        out["analysis"]["chunk_size"] = self.work_chunk_size()
        return out

    @functools.cached_property
    def schedule(self) -> tuple[int, int]:
        """``(steps, checkpoints)``: one for every shape combination (they fix the store's step axes)."""
        found = {self.config.train.schedule(self.task(spec)[0].n) for spec in range(self.n_specs())}
        if len(found) > 1:
            raise ConfigError(f"[train].epochs gives other (steps, checkpoints) for other [data].n: {sorted(found)}; "
                              "give [train].steps")
        return found.pop()

    def n_specs(self) -> int:
        return math.prod(len(v) for v in self.shape_axes.values())

    def _combination(self, spec: int) -> dict:
        index = np.unravel_index(spec, [len(v) for v in self.shape_axes.values()])
        return {k: v[int(i)] for (k, v), i in zip(self.shape_axes.items(), index)}

    @functools.cache
    def task(self, spec: int) -> tuple[Task, Task]:
        """The (train, validation) split of spec ``spec``'s data."""
        combo, data = self._combination(spec), self.config.data
        task = self._file_task
        if task is None:
            task = self.config.make_task(n=combo["n"], seq_len=combo["seq_len"])
        return split(task, validation=data.validation, seed=data.data_seed)

    def train_spec(self, spec: int) -> TrainSpec:
        combo, settings = self._combination(spec), self.config.train
        train, _ = self.task(spec)
        steps, checkpoints = self.schedule
        return TrainSpec.for_task(
            train, hidden_size=combo["hidden_size"], activation=combo["activation"],
            recurrent_activation=combo["recurrent_activation"], optimizer=combo["optimizer"], steps=steps,
            batch_size=settings.batch_size, checkpoints=checkpoints, grad_probe=settings.grad_probe,
        )

    def work_chunk_size(self) -> int:
        """``chunk_size``, or the most variants (up to :data:`MAX_AUTO_TRAIN_CHUNK`) whose training fits
        ``memory_budget_mb`` if ``"auto"``.

        Raises:
          ConfigError: if the chunk (explicit or of one variant) does not fit the budget, with the estimate.
        """
        analysis = self.config.analysis
        budget = analysis.memory_budget_mb * 2**20
        explicit = analysis.chunk_size != "auto"
        n = analysis.chunk_size if explicit else MAX_AUTO_TRAIN_CHUNK
        for spec in range(self.n_specs()):
            ts, n_val = self.train_spec(spec), self.task(spec)[1].n
            need = train_chunk_bytes(ts, n_val, n if explicit else 1)
            if need > budget:
                where = f"[analysis].chunk_size = {n}" if explicit else "[analysis].memory_budget_mb"
                count = f"{n} variant{'s' if n > 1 else ''}" if explicit else "one variant"
                advice = 'lower chunk_size, raise memory_budget_mb or use "auto"' if explicit else "raise it"
                raise ConfigError(f"{where}: training {count} of {ts} needs about {format_bytes(need)}, more than the "
                                  f"memory budget of {format_bytes(budget)} ([analysis].memory_budget_mb = "
                                  f"{analysis.memory_budget_mb:g}); {advice}")
            while not explicit and train_chunk_bytes(ts, n_val, n) > budget:
                n -= 1
        return n

    def extra_coords(self) -> dict[str, np.ndarray]:
        T = max(self.shape_axes["seq_len"])
        steps, C = self.schedule
        return {
            "lag": np.arange(1, T + 1, dtype=np.int32),
            "checkpoint": (np.arange(C + 1) * (steps // C)).astype(np.int32),  # training steps done
            "t": np.arange(T + 1, dtype=np.int32),  # ||dL/dh_t||, t = 0..T
            "step": np.arange(1, steps + 1, dtype=np.int32),
        }

    def chunk_function(self, spec: int, mesh):
        """The compiled training of spec ``spec`` over ``mesh``, and its (replicated) data."""
        ts = self.train_spec(spec)
        fn = over_devices(mesh, functools.partial(_train_chunk, ts), 2)
        return fn, (train_data(*self.task(spec)),)

    def finish(self, spec: int, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Verdicts and the initial lag value at the task's lag, from a chunk's training outputs."""
        train, val = self.task(spec)
        metrics = collapse_metrics(val.kind, val.y, outputs["val_loss"][:, -1], outputs["val_accuracy"][:, -1],
                                   outputs["val_spread"][:, -1], thresholds={
                                       "spread": self.config.analysis.spread_threshold,
                                       "loss": self.config.analysis.loss_threshold})
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


def collapse_job(config: Config) -> Job:
    """The collapse-map sweep of ``config`` as a :class:`gradflow.sweep.job.Job`.

    Raises:
      gradflow.config.ConfigError: if not even one variant fits the memory budget.
    """
    specs = CollapseSpecs(config)
    variables = {k: Variable(dims, np.dtype(bool) if k in ("collapsed", "learned") else np.dtype(np.float32),
                             *DESCRIPTIONS[k]) for k, dims in VARIABLES.items()}
    return Job(
        kind=KIND,
        title="gradflow collapse map",
        config=specs.resolved(),
        source=config.source,
        dtype="float32",
        spec_axes={k: tuple(v) for k, v in specs.shape_axes.items()},
        grid_axes={k: tuple(v) for k, v in config.grid.axes.items()},
        grid_values=config.variants().values(),
        chunk_size=specs.work_chunk_size(),
        variables=variables,
        extra_coords=specs.extra_coords(),
        coord_attrs={**coordinate_attrs([*specs.shape_axes, *config.grid.axes]), **AXIS_ATTRS},
        chunk_function=specs.chunk_function,
        finish=specs.finish,
    )
