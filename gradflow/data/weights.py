"""Trained LSTM weights from ``.npz`` files: the Keras layout, or PyTorch ``nn.LSTM`` state-dict names.

Keras: ``kernel`` (D, 4H), ``recurrent_kernel`` (H, 4H), ``bias`` (4H,), gates in the order
(input, forget, cell, output). PyTorch: ``weight_ih_l0`` (4H, D), ``weight_hh_l0`` (4H, H),
``bias_ih_l0`` and ``bias_hh_l0`` (4H,), gates (input, forget, cell, output) too; gradflow uses
``W = weight_ih.T``, ``U = weight_hh.T``, ``b = bias_ih + bias_hh``. Either may carry a dense output
head ``head_kernel`` (H, k) and ``head_bias`` (k,).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from gradflow.lstm.checks import read_npz
from gradflow.lstm.cell import LSTMParams

KERAS_KEYS = ("kernel", "recurrent_kernel", "bias")
TORCH_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """An LSTM with an optional dense head (numpy, float32), and the layout it came in."""

    params: LSTMParams
    head_kernel: np.ndarray | None
    head_bias: np.ndarray | None
    layout: str

    @property
    def hidden_size(self) -> int:
        return self.params.U.shape[0]

    @property
    def input_size(self) -> int:
        return self.params.W.shape[0]


def _array(arrays: dict, key: str, shape: tuple, where: str, expected: str) -> np.ndarray:
    if key not in arrays:
        raise ValueError(f"{where}: missing key {key!r}, expected {expected}; found {sorted(arrays)}")
    a = np.asarray(arrays[key])
    if not np.issubdtype(a.dtype, np.number) or a.dtype == bool:
        raise ValueError(f"{where}: {key} must be numeric {expected}; got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{where}: {key} must have shape {expected} = {shape}; got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: {key} holds {int((~np.isfinite(a)).sum())} non-finite values")
    return a.astype(np.float32)


def _lstm_arrays(arrays: dict, where: str, *, recurrent: str, kernel: str, biases: tuple[str, ...],
                 transposed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W (D, 4H), U (H, 4H), b (4H,))`` from one layout's keys; ``transposed``: stored as (4H, .), as PyTorch
    does, and the biases (summed) come in one or more parts."""
    dims = (lambda n: f"(4H, {n})") if transposed else (lambda n: f"({n}, 4H)")
    shape = (lambda n, H: (4 * H, n)) if transposed else (lambda n, H: (n, 4 * H))
    axis = 1 if transposed else 0
    if recurrent not in arrays or np.ndim(arrays[recurrent]) != 2:
        raise ValueError(f"{where}: {recurrent} must have shape {dims('H')}"
                         + ("" if recurrent in arrays else f"; missing (found {sorted(arrays)})"))
    H = np.shape(arrays[recurrent])[axis]
    D = np.shape(arrays[kernel])[axis] if kernel in arrays and np.ndim(arrays[kernel]) == 2 else 0
    U = _array(arrays, recurrent, shape(H, H), where, dims("H"))
    W = _array(arrays, kernel, shape(D, H), where, dims("D"))
    b = sum(_array(arrays, key, (4 * H,), where, "(4H,)") for key in biases)
    return (W.T, U.T, b) if transposed else (W, U, b)


def model_from_arrays(arrays: dict, *, where: str = "weights") -> TrainedModel:
    """A :class:`TrainedModel` from Keras- or PyTorch-named arrays, validated (errors name the key and shape)."""
    if "kernel" in arrays or "recurrent_kernel" in arrays:
        layout = "keras"
        W, U, b = _lstm_arrays(arrays, where, recurrent="recurrent_kernel", kernel="kernel", biases=("bias",),
                               transposed=False)
    elif any(k in arrays for k in TORCH_KEYS):
        layout = "pytorch"
        W, U, b = _lstm_arrays(arrays, where, recurrent="weight_hh_l0", kernel="weight_ih_l0",
                               biases=("bias_ih_l0", "bias_hh_l0"), transposed=True)
    else:
        raise ValueError(f"{where}: no LSTM weights found; expected Keras keys {list(KERAS_KEYS)} or PyTorch keys "
                         f"{list(TORCH_KEYS)}; found {sorted(arrays)}")
    if W.shape[0] < 1:
        raise ValueError(f"{where}: the input kernel must have at least one input feature; got {W.shape}")
    H = U.shape[0]
    head_kernel = head_bias = None
    if "head_kernel" in arrays:
        k = np.shape(arrays["head_kernel"])[-1] if np.ndim(arrays["head_kernel"]) == 2 else -1
        head_kernel = _array(arrays, "head_kernel", (H, max(k, 0)), where, "(H, k)")
        head_bias = (_array(arrays, "head_bias", (k,), where, "(k,)") if "head_bias" in arrays
                     else np.zeros(k, np.float32))
    elif "head_bias" in arrays:
        raise ValueError(f"{where}: head_bias given without head_kernel (H, k)")
    return TrainedModel(LSTMParams(np.ascontiguousarray(W), np.ascontiguousarray(U), b), head_kernel, head_bias, layout)


def load_model(path: str | Path) -> TrainedModel:
    """Read and validate an ``.npz`` of LSTM weights (see the module docstring)."""
    path = Path(path)
    arrays = read_npz(path, what="weights")
    return model_from_arrays(arrays, where=str(path))
