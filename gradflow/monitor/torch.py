"""The PyTorch idiom: a helper called from the user's own training loop, logging to a ``SummaryWriter`` if given.

::

    monitor = TorchMonitor("runs/monitor", probe_x, writer=SummaryWriter("runs/tb"), task_lag=20)
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(net(x), y); optimizer.zero_grad(); loss.backward(); optimizer.step()
        monitor.step(net, step)          # records every ``every`` steps, otherwise does nothing

The module is read with :func:`gradflow.data.torch_files.model_from_torch_module` (an ``nn.LSTM`` / ``nn.GRU``
inside it, optionally named with ``rnn=`` and ``head=``); torch is imported only when a record is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gradflow.monitor.core import DEFAULT_EVERY, ProfileMonitor


def _numpy(x: Any) -> np.ndarray:
    """A torch tensor (any device, with or without grad) or an array-like as a numpy array."""
    detach = getattr(x, "detach", None)
    return np.asarray(detach().cpu().numpy()) if callable(detach) else np.asarray(x)


class TorchMonitor:
    """Lag profiles of a PyTorch recurrent network on a fixed probe batch, every ``every`` steps of the user's loop.

    Args:
      directory: the output directory of the monitor store (:mod:`gradflow.monitor.store`).
      probe_x: the probe batch, a tensor or array: (N, T, D) with ``batch_first`` (as the model reads it), else
        (T, N, D).
      every: record at steps with ``step % every == 0``.
      writer: anything with ``add_scalar(tag, value, global_step)`` (a ``torch.utils.tensorboard.SummaryWriter``):
        the scalars of each record are written to it.
      rnn, head: names of the recurrent submodule and the head in the module, when they cannot be told apart.
      head_output: the head's output function (``"linear"``, ``"sigmoid"``, ``"softmax"``): unused by the profiles.
      batch_first: the layout of ``probe_x``.
      wrt, task_lag, decades, overwrite: as for :class:`gradflow.monitor.core.ProfileMonitor`.
    """

    def __init__(self, directory: str | Path, probe_x: Any, *, every: int = DEFAULT_EVERY, writer: Any = None,
                 rnn: str | None = None, head: str | None = None, head_output: str = "linear",
                 batch_first: bool = True, wrt: str = "h", task_lag: int | None = None, decades: float = 10.0,
                 overwrite: bool = False):
        if writer is not None and not callable(getattr(writer, "add_scalar", None)):
            raise TypeError(f"writer must have an add_scalar(tag, value, step) method; got {type(writer).__name__}")
        probe = _numpy(probe_x)
        if not batch_first:
            if probe.ndim != 3:
                raise ValueError(f"probe_x must have shape (T, N, D) with batch_first=False; got {probe.shape}")
            probe = probe.transpose(1, 0, 2)
        self.monitor = ProfileMonitor(directory, probe, every=every, wrt=wrt, task_lag=task_lag, decades=decades,
                                      overwrite=overwrite, framework="torch", every_unit="step")
        self.writer, self.rnn, self.head, self.head_output = writer, rnn, head, head_output

    def step(self, module: Any, step: int) -> dict[str, float] | None:
        """Record ``module``'s profiles at ``step`` if due (returns the scalars, also written to the writer), else
        return None without reading the module."""
        if not self.monitor.due(step):
            return None
        from gradflow.data.torch_files import model_from_torch_module

        model = model_from_torch_module(module, rnn=self.rnn, head=self.head, head_output=self.head_output)
        scalars = self.monitor.record(step, model)
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, int(step))
        return scalars

    @property
    def store(self):
        """The monitor store (None before the first record)."""
        return self.monitor.store
