r"""The framework-free monitor: every ``every`` steps, the lag profiles of the model on a fixed probe batch.

At a recorded step the model's weights give, for each layer ``l`` and the probe batch ``x^{(1..N)}`` (float32),

.. math::

    P^{(l)}(k) = \frac{1}{N} \sum_n \log_{10} \left\| \frac{\partial h^{(l)}_T}{\partial h^{(l)}_{T-k}}
    \right\|_F (x^{(n)}), \quad k = 1..T,

(:func:`gradflow.flow.networks.model_profiles`), stored with the input sensitivity, horizon and decay rate in a
monitor store (:mod:`gradflow.monitor.store`), and a few scalars for the framework's logger, per layer label
(``"0"``, ``"1"``, ``"0_backward"``...):

- ``gradflow/horizon/<layer>``: the first lag with ``P(k) < -decades`` (:func:`gradflow.flow.engine.horizon`);
  ``inf`` when the profile stays above ``10^-decades`` over all T lags: logged as it is (CSV files and
  TensorBoard take ``inf``; a finite stand-in such as T + 1 would read as a measured horizon);
- ``gradflow/decay_rate/<layer>``: the least-squares slope of ``P`` against lag, decades per step;
- ``gradflow/log10_norm_at_lag/<layer>``: ``P(task_lag)``, when a task lag is given.

The JAX idiom is this class itself, called from the training loop::

    monitor = ProfileMonitor("runs/monitor", probe_xs, task_lag=20)
    for step in range(steps):
        model, opt_state = train_step(model, opt_state, batch)
        monitor.maybe_record(step, model)   # a gf.Model, a gf.LSTM or Flax NNX cells / nnx.RNN

The default interval, :data:`DEFAULT_EVERY` = 500 steps, keeps the overhead under 10% of training on the example
models of ``benchmarks/bench_monitor.py`` (results in ``results/bench/bench_monitor.md``): a record (profiles of a
16-sequence probe batch and one appended record, 10 to 30 ms on 2 CPU cores) costs as much as 10 to 30 jitted
training steps of a small JAX LSTM; every 100 steps would cost that model 10 to 30%.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradflow.flow.engine import WRT, decay_rate, horizon
from gradflow.flow.networks import ModelProfile, model_profiles
from gradflow.lstm.model import Model
from gradflow.monitor.store import LayerDescription, MonitorStore, Record, open_monitor_store
from gradflow.sweep.environment import describe_environment

#: Steps between two records unless told otherwise (see the module docstring and ``benchmarks/bench_monitor.py``).
DEFAULT_EVERY = 500

#: The scalar families reported at each record (one scalar per layer each).
SCALARS = ("horizon", "decay_rate", "log10_norm_at_lag")


def as_model(obj: Any) -> Model:
    """A :class:`gradflow.lstm.model.Model` from a JAX model: a ``gf.Model``, a ``gf.LSTM`` NNX module, or Flax NNX
    cells, an ``nnx.RNN`` or a list of them (through :func:`gradflow.data.flax_modules.model_from_flax`)."""
    if isinstance(obj, Model):
        return obj
    from gradflow.lstm.module import LSTM

    if isinstance(obj, LSTM):
        return obj.model
    from gradflow.data.flax_modules import model_from_flax

    return model_from_flax(obj)


def probe_array(probe_xs: Any) -> np.ndarray:
    """The probe batch as a finite float32 (N, T, D) array; (T, D) is one sequence.

    Raises:
      ValueError: if it has another rank, an empty axis, or a non-finite entry.
      TypeError: if it is not real numbers.
    """
    array = np.asarray(probe_xs)
    if array.dtype.kind not in "fiu":
        raise TypeError(f"probe_xs must hold real numbers; got dtype {array.dtype}")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"probe_xs must have shape (N, T, D) (or (T, D)) with no empty axis; got {np.shape(probe_xs)}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("probe_xs holds non-finite values (or values beyond float32's range)")
    return array


def layer_descriptions(profile: ModelProfile) -> tuple[LayerDescription, ...]:
    return tuple(LayerDescription(p.index, p.direction, p.cell, p.hidden_size) for p in profile.layers)


def scalars_of(record: Record, layers: tuple[LayerDescription, ...], task_lag: int | None) -> dict[str, float]:
    """The logged scalars of one record (see the module docstring), by name."""
    out = {}
    for family, values in (("horizon", record.horizon), ("decay_rate", record.decay_rate)):
        out.update((f"gradflow/{family}/{layer.label}", float(v)) for layer, v in zip(layers, values))
    if task_lag is not None:
        out.update((f"gradflow/log10_norm_at_lag/{layer.label}", float(p[task_lag - 1]))
                   for layer, p in zip(layers, record.log10_norm_h))
    return out


class ProfileMonitor:
    """Records lag profiles on a fixed probe batch into a monitor store; the JAX / optax / NNX idiom.

    Args:
      directory: the output directory; its ``results.zarr`` is created at the first record, or reopened and
        appended to when it holds a monitor of the same model shape, probe batch and settings.
      probe_xs: the probe batch (N, T, D), fixed for the whole run; profiles are computed in float32.
      every: record when ``step % every == 0`` (:meth:`maybe_record`).
      wrt: ``"h"`` (an LSTM's ``c`` held fixed) or ``"state"``.
      task_lag: the lag the task needs (1..T): adds ``gradflow/log10_norm_at_lag/<layer>`` to the scalars.
      decades: the horizon's threshold ``10^-decades``.
      overwrite: replace whatever store the directory holds at the first record.
      framework: recorded in the store (``"jax"``, ``"torch"``, ``"keras"``).
      every_unit: what a step counts (``"step"``, ``"batch"``, ``"epoch"``), recorded in the store.

    Raises:
      ValueError, TypeError: for a bad probe batch or setting, naming it.

    Example:
      >>> import tempfile, jax, numpy as np
      >>> from gradflow.lstm.init import init_lstm
      >>> from gradflow.lstm.model import Layer
      >>> model = Model((Layer(init_lstm(jax.random.key(0), 2, 3)),))
      >>> monitor = ProfileMonitor(tempfile.mkdtemp(), np.ones((1, 4, 2)), every=10, task_lag=4)
      >>> sorted(monitor.maybe_record(0, model)), monitor.maybe_record(5, model)
      (['gradflow/decay_rate/0', 'gradflow/horizon/0', 'gradflow/log10_norm_at_lag/0'], None)
      >>> monitor.store.steps
      (0,)
    """

    def __init__(self, directory: str | Path, probe_xs: Any, *, every: int = DEFAULT_EVERY, wrt: str = "h",
                 task_lag: int | None = None, decades: float = 10.0, overwrite: bool = False,
                 framework: str = "jax", every_unit: str = "step"):
        self.probe_xs = probe_array(probe_xs)
        T = self.probe_xs.shape[1]
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every must be a positive integer; got {every!r}")
        if wrt not in WRT:
            raise ValueError(f"wrt={wrt!r} is not known; expected one of {list(WRT)}")
        if task_lag is not None and (isinstance(task_lag, bool) or not isinstance(task_lag, (int, np.integer))
                                     or not 1 <= task_lag <= T):
            raise ValueError(f"task_lag must be an integer lag in 1..T = 1..{T} of the probe batch; got {task_lag!r}")
        if not (isinstance(decades, (int, float)) and math.isfinite(decades) and decades > 0):
            raise ValueError(f"decades must be a positive finite number; got {decades!r}")
        self.directory = Path(directory)
        self.every, self.wrt, self.decades = int(every), wrt, float(decades)
        self.task_lag = None if task_lag is None else int(task_lag)
        self.overwrite, self.framework, self.every_unit = overwrite, framework, every_unit
        self.store: MonitorStore | None = None
        self.latest: dict[str, float] = {}

    def attrs(self) -> dict[str, Any]:
        """The store's attributes (without the layer descriptions, added by the store)."""
        environment = describe_environment()
        return {
            "title": f"gradflow monitor ({self.framework})",
            "framework": self.framework,
            "probe_shape": list(self.probe_xs.shape),
            "probe_sha256": hashlib.sha256(np.ascontiguousarray(self.probe_xs).tobytes()).hexdigest(),
            "wrt": self.wrt,
            "decades": self.decades,
            "every": self.every,
            "every_unit": self.every_unit,
            "task_lag": self.task_lag,
            "gradflow_version": environment["versions"].get("gradflow"),
            "environment": environment,
        }

    def due(self, step: int) -> bool:
        """Whether ``step`` is one to record (``step % every == 0``)."""
        return int(step) % self.every == 0

    def maybe_record(self, step: int, model: Any) -> dict[str, float] | None:
        """:meth:`record` when :meth:`due`, else None (nothing computed)."""
        return self.record(step, model) if self.due(step) else None

    def record(self, step: int, model: Any) -> dict[str, float]:
        """Compute the profiles of ``model`` on the probe batch, append them at ``step`` and return the scalars.

        A step already in the store (a run resumed from an earlier checkpoint) is not recomputed: its stored
        scalars are returned.

        Args:
          step: the training step (a non-negative integer), after all recorded ones.
          model: a :class:`gradflow.lstm.model.Model` or a JAX model :func:`as_model` reads.

        Raises:
          ValueError: for a step before the last recorded one, a model whose input size is not the probe's D, or a
            store of another model, probe or setting (:class:`gradflow.sweep.store.StoreMismatchError`).
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be a non-negative integer; got {step!r}")
        step = int(step)
        if self.store is not None and step in self.store:
            self.latest = scalars_of(self.store.read(step), self.store.layers, self.task_lag)
            return self.latest
        model = as_model(model)
        if model.input_size != self.probe_xs.shape[2]:
            raise ValueError(f"the model reads {model.input_size} input features; probe_xs has D = "
                             f"{self.probe_xs.shape[2]} (shape {self.probe_xs.shape})")
        profile = model_profiles(model, self.probe_xs, wrt=self.wrt)
        layers = layer_descriptions(profile)
        if self.store is None:
            self.store = open_monitor_store(self.directory, layers, self.probe_xs.shape[1], self.attrs(),
                                            overwrite=self.overwrite)
            if step in self.store:
                return self.record(step, model)
        elif layers != self.store.layers:
            raise ValueError(f"the model's layers {[str(x) for x in layers]} are not those monitored so far "
                             f"{[str(x) for x in self.store.layers]}")
        record = self._record(step, profile)
        self.store.append(record)
        self.latest = scalars_of(record, layers, self.task_lag)
        return self.latest

    def _record(self, step: int, profile: ModelProfile) -> Record:
        profiles = np.stack([p.log10_norm_h for p in profile.layers]).astype(np.float32)
        P = jnp.asarray(profiles)
        T = profiles.shape[1]
        sensitivity = (np.full(T, np.nan, np.float32) if profile.input_sensitivity is None
                       else np.asarray(profile.input_sensitivity, np.float32))
        return Record(step, profiles, sensitivity, np.asarray(horizon(P, decades=self.decades)),
                      np.asarray(decay_rate(P)))
