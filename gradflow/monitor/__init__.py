"""Monitors during training: lag profiles on a fixed probe batch every N steps, from Keras, PyTorch and JAX loops.

May import :mod:`gradflow.lstm`, :mod:`gradflow.flow`, :mod:`gradflow.data` and :mod:`gradflow.sweep`; the
frameworks (keras, torch) only inside the functions that need them.

- :mod:`gradflow.monitor.core`: :class:`ProfileMonitor` (framework-free; the JAX / optax / NNX idiom:
  ``monitor.maybe_record(step, model)`` in the loop) and the logged scalars;
- :mod:`gradflow.monitor.store`: the monitor store ``DIR/results.zarr`` (step x layer x lag), appended one
  record at a time;
- :mod:`gradflow.monitor.keras`: ``GradflowCallback``, a Keras callback adding the scalars to ``logs``;
- :mod:`gradflow.monitor.torch`: :class:`TorchMonitor`, called from a PyTorch loop, writing to a ``SummaryWriter``.
"""
