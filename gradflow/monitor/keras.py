"""The Keras idiom: a callback that records lag profiles during ``model.fit`` and puts its scalars in ``logs``.

::

    from gradflow.monitor.keras import GradflowCallback

    model.fit(x, y, epochs=20, callbacks=[
        GradflowCallback("runs/monitor", x[:16], task_lag=20),    # first: the callbacks after it see its scalars
        keras.callbacks.CSVLogger("runs/log.csv"),
        keras.callbacks.TensorBoard("runs/tb"),
    ])

Keras calls the callbacks in list order with one ``logs`` dict per epoch, so the callback must come *before*
``CSVLogger`` and ``TensorBoard`` for them to see the scalars. Every epoch's ``logs`` carry the scalars of the
latest record (the callback records at the start of training too, so the first epoch's ``logs`` already have
them: ``CSVLogger`` takes its columns from the first epoch). The model is read with
:func:`gradflow.data.keras_files.model_from_keras`. ``GradflowCallback`` subclasses ``keras.callbacks.Callback``,
so the class is made when first asked for (:func:`gradflow.data.keras_files.import_keras`: the jax backend
when the configured one is not installed); without keras, that gives an error naming ``pip install
"gradflow[keras]"``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from gradflow.monitor.core import ProfileMonitor


@functools.cache
def _callback_class() -> type:
    from gradflow.data.keras_files import import_keras

    keras = import_keras()  # a ValueError naming pip install "gradflow[keras]" without it

    class GradflowCallback(keras.callbacks.Callback):
        """Records the model's lag profiles on ``probe_x`` into a monitor store during ``fit``.

        Args:
          directory: the output directory of the monitor store (:mod:`gradflow.monitor.store`).
          probe_x: the probe batch (N, T, D), fixed for the run.
          every_epochs: record after every this many epochs (steps = epochs completed; 0 = before training).
          every_batches: record every this many training batches instead (steps = the optimizer's iterations,
            global across ``fit`` calls); with ``steps_per_execution > 1``, at the first batch on or past each
            multiple.
          task_lag, wrt, decades, overwrite: as for :class:`gradflow.monitor.core.ProfileMonitor`.
        """

        def __init__(self, directory: str | Path, probe_x: Any, *, every_epochs: int = 1,
                     every_batches: int | None = None, task_lag: int | None = None, wrt: str = "h",
                     decades: float = 10.0, overwrite: bool = False):
            super().__init__()
            unit, every = ("epoch", every_epochs) if every_batches is None else ("batch", every_batches)
            self.monitor = ProfileMonitor(directory, keras.ops.convert_to_numpy(probe_x), every=every, wrt=wrt,
                                          task_lag=task_lag, decades=decades, overwrite=overwrite,
                                          framework="keras", every_unit=unit)
            self._step = 0
            self._epoch_start = 0
            if not self.by_batch:  # Keras's own (no-op) batch hook: fit keeps dispatching batches asynchronously
                self.on_train_batch_end = keras.callbacks.Callback.on_train_batch_end.__get__(self)

        @property
        def by_batch(self) -> bool:
            return self.monitor.every_unit == "batch"

        def _record(self, step: int) -> None:
            from gradflow.data.keras_files import model_from_keras

            self.monitor.record(step, model_from_keras(self.model))

        def on_train_begin(self, logs=None):
            if self.by_batch:
                self._step = int(self.model.optimizer.iterations.value)
                if self.monitor.due(self._step):
                    self._record(self._step)

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = self._step
            if not self.by_batch and self.monitor.store is None and self.monitor.due(epoch):
                self._record(epoch)  # the profile before this fit's first epoch

        def on_train_batch_end(self, batch, logs=None):
            last, self._step = self._step, self._epoch_start + batch + 1
            if self._step // self.monitor.every != last // self.monitor.every:
                self._record(self._step)

        def on_epoch_end(self, epoch, logs=None):
            if not self.by_batch and self.monitor.due(epoch + 1):
                self._record(epoch + 1)
            if logs is not None:
                logs.update(self.monitor.latest)

    GradflowCallback.__module__ = __name__
    return GradflowCallback


def __getattr__(name: str):
    if name == "GradflowCallback":
        return _callback_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def keras_monitor(directory: str | Path, probe_x: Any, **options: Any):
    """A :class:`GradflowCallback` (``gf.keras_monitor``): the same arguments, made without naming the class, which
    exists only once keras is imported."""
    return _callback_class()(directory, probe_x, **options)
