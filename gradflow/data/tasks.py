"""Sequence tasks to train on: the seed setting, a recall task, the adding problem, user data from ``.npz``.

Every task is a :class:`Task`: inputs ``X`` (N, T, D) float32, targets ``y`` (N,) or (N, k), a kind
that fixes the head and the loss (``binary``: sigmoid + cross-entropy; ``multiclass``: softmax +
cross-entropy on one-hot rows; ``regression``: linear + squared error) and ``lag``, the number of steps
between the input that carries the signal and the last step (None if no input does), at which the
initial lag profile is read to see whether gradient flow predicts the outcome.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from gradflow.lstm.checks import read_npz

KINDS = ("binary", "multiclass", "regression")
#: The head's output function for each task kind (see :data:`gradflow.lstm.model.HEAD_OUTPUTS`): the one place
#: a kind decides the head, and with it the loss (:func:`gradflow.lstm.model.head_loss`).
HEAD_FOR_KIND: dict[str, str] = {"binary": "sigmoid", "multiclass": "softmax", "regression": "linear"}


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A supervised sequence task.

    Attributes:
      name: what it is, for labels and reports.
      X: inputs (N, T, D), float32.
      y: targets, (N,) for ``binary`` (0/1) and single-output ``regression``, (N, k) for ``multiclass``
        (one-hot rows) and multi-output ``regression``; float32.
      kind: one of :data:`KINDS`.
      lag: steps from the signal-carrying input to the last step, or None.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    kind: str
    lag: int | None = None

    @property
    def n(self) -> int:
        return self.X.shape[0]

    @property
    def seq_len(self) -> int:
        return self.X.shape[1]

    @property
    def input_size(self) -> int:
        return self.X.shape[2]

    @property
    def output_size(self) -> int:
        return 1 if self.y.ndim == 1 else self.y.shape[1]


def seed_task(n: int, *, seq_len: int = 20, features: int = 10, seed: int = 0) -> Task:
    """The setting behind "my LSTM outputs the same value": features uniform in [0, 1), random binary labels.

    The labels are independent of the inputs, so the best a model can do on held-out data is the
    majority rate; a model that fits the training set memorises it.
    """
    _check_sizes(n=n, seq_len=seq_len, features=features)
    rng = np.random.default_rng(seed)
    X = rng.random((n, seq_len, features), dtype=np.float32)
    y = rng.integers(0, 2, n).astype(np.float32)
    return Task(f"seed (N={n}, T={seq_len}, D={features})", X, y, "binary", lag=None)


def recall_task(n: int, *, seq_len: int, features: int = 1, noise: float = 1.0, seed: int = 0) -> Task:
    """Recall the sign of the first input after ``seq_len - 1`` steps of noise.

    ``X[:, 0, 0] = 2 y - 1`` (y in {0, 1}); every other entry is Gaussian noise of standard deviation
    ``noise``. Only gradients that survive ``seq_len - 1`` steps can learn it: ``lag = seq_len - 1``.
    """
    _check_sizes(n=n, seq_len=seq_len, features=features)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(np.float32)
    X = (noise * rng.standard_normal((n, seq_len, features))).astype(np.float32)
    X[:, 0, 0] = 2.0 * y - 1.0
    return Task(f"recall (N={n}, T={seq_len})", X, y, "binary", lag=seq_len - 1)


def adding_task(n: int, *, seq_len: int, seed: int = 0) -> Task:
    """The adding problem (Hochreiter & Schmidhuber 1997; in the form of Le et al. 2015).

    Two input channels: values uniform in [0, 1) and a marker that is 1 at two steps, one in each half
    of the sequence; the target is the sum of the two marked values (a constant predictor scores an
    MSE of 1/6). The first marker lies at least ``seq_len // 2`` steps before the end: ``lag``.
    """
    _check_sizes(n=n, seq_len=seq_len)
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2 for the adding problem; got {seq_len}")
    rng = np.random.default_rng(seed)
    values = rng.random((n, seq_len), dtype=np.float32)
    half = seq_len // 2
    first, second = rng.integers(0, half, n), rng.integers(half, seq_len, n)
    markers = np.zeros((n, seq_len), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    y = (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)
    return Task(f"adding (N={n}, T={seq_len})", np.stack([values, markers], -1), y, "regression", lag=seq_len - half)


def load_task(path: str | Path, *, name: str | None = None, lag: int | None = None) -> Task:
    """User data: an ``.npz`` with ``X`` (N, T, D) and ``y`` (N,) or (N, k), validated.

    The kind is inferred: ``y`` of 0s and 1s with shape (N,) is ``binary``; one-hot rows (N, k) are
    ``multiclass``; anything else is ``regression``. ``y`` of shape (N, 1) is read as (N,): the kind, and
    every verdict on the task, do not depend on that trailing axis.

    Raises:
      FileNotFoundError: no such file. ValueError: a missing key, a wrong shape or dtype, a non-finite
        value, or a different N in ``X`` and ``y``; the message names the key and what was expected.
    """
    path = Path(path)
    arrays = read_npz(path, what="data")
    return task_from_arrays(arrays, name=name or path.stem, lag=lag, where=str(path))


def _real_array(arrays: dict, key: str, expected: str, where: str) -> np.ndarray:
    """``arrays[key]`` after checking that it is there and holds finite real numbers within float32's range."""
    if key not in arrays:
        raise ValueError(f"{where}: missing key {key!r}; expected {expected}; found {sorted(arrays)}")
    a = np.asarray(arrays[key])
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{where}: {key} must be real numbers {expected.split(' ', 1)[1]}; got dtype {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{where}: {key} holds {int(bad.sum())} non-finite values (first at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])})")
    big = np.abs(a) > np.finfo(np.float32).max
    if big.any():
        raise ValueError(f"{where}: {key} holds {int(big.sum())} values beyond the float32 range (largest "
                         f"magnitude {np.abs(a).max():g}; gradflow computes in float32)")
    return a


def inputs_from_arrays(arrays: dict, *, where: str = "data") -> np.ndarray:
    """The input sequences ``X`` (N, T, D) of ``arrays`` as float32, validated as in :func:`load_task` (a ``y``, if
    there, is not read)."""
    X = _real_array(arrays, "X", "X (N, T, D)", where)
    if X.ndim != 3 or min(X.shape) < 1:
        raise ValueError(f"{where}: X must have shape (N, T, D) with N, T, D >= 1; got shape {X.shape}")
    return X.astype(np.float32)


def load_inputs(path: str | Path) -> np.ndarray:
    """Input sequences from an ``.npz`` with ``X`` (N, T, D) (``y`` is not needed), validated: float32 (N, T, D)."""
    return inputs_from_arrays(read_npz(path, what="data"), where=str(path))


def task_from_arrays(arrays: dict, *, name: str, lag: int | None = None, where: str = "data") -> Task:
    """A :class:`Task` from ``{"X": ..., "y": ...}``, validated as in :func:`load_task`.

    ``X`` and ``y`` must hold real numbers (integer or floating dtypes: no complex, bool, object or string
    arrays) that fit float32. ``y`` of shape (N, 1) is squeezed to (N,), so labels of 0s and 1s are
    ``binary`` in either shape.
    """
    for key in ("X", "y"):
        if key not in arrays:
            raise ValueError(f"{where}: missing key {key!r}; expected X (N, T, D) and y (N,) or (N, k); "
                             f"found {sorted(arrays)}")
    X = inputs_from_arrays(arrays, where=where)
    y = _real_array(arrays, "y", "y (N,) or (N, k)", where)
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0] or (y.ndim == 2 and y.shape[1] < 1):
        raise ValueError(f"{where}: y must have shape ({X.shape[0]},) or ({X.shape[0]}, k) to match X {X.shape}; "
                         f"got shape {y.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1 and np.isin(y, (0, 1)).all():
        kind = "binary"
    elif y.ndim == 2 and y.shape[1] > 1 and np.isin(y, (0, 1)).all() and (y.sum(1) == 1).all():
        kind = "multiclass"
    else:
        kind = "regression"
    return Task(name, X.astype(np.float32), y.astype(np.float32), kind, lag=lag)


def split(task: Task, *, validation: float = 0.2, seed: int = 0) -> tuple[Task, Task]:
    """A random train/validation split (at least one sequence in each)."""
    if not 0 < validation < 1:
        raise ValueError(f"validation must be a fraction in (0, 1); got {validation}")
    if task.n < 2:
        raise ValueError(f"a split needs at least 2 sequences; the task has {task.n}")
    order = np.random.default_rng(seed).permutation(task.n)
    n_val = min(task.n - 1, max(1, round(validation * task.n)))
    parts = []
    for idx, label in ((order[n_val:], "train"), (order[:n_val], "validation")):
        parts.append(dataclasses.replace(task, name=f"{task.name} [{label}]", X=task.X[idx], y=task.y[idx]))
    return parts[0], parts[1]


def _check_sizes(**sizes: int) -> None:
    for key, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{key} must be a positive integer; got {value!r}")
