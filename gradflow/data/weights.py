"""Trained LSTM weights from ``.npz`` files as a :class:`gradflow.lstm.model.Model`: the Keras layout, or PyTorch
``nn.LSTM`` state-dict names.

Keras: ``kernel`` (D, 4H), ``recurrent_kernel`` (H, 4H), ``bias`` (4H,), gates in the order
(input, forget, cell, output): one forward layer. PyTorch: ``weight_ih_l0`` (4H, D), ``weight_hh_l0`` (4H, H),
``bias_ih_l0`` and ``bias_hh_l0`` (4H,), gates (input, forget, cell, output) too; gradflow uses
``W = weight_ih.T``, ``U = weight_hh.T``, ``b = bias_ih + bias_hh``. A stacked PyTorch LSTM adds the same keys
for levels ``l1``, ``l2`` ..., and a bidirectional one the backward layer of each level under the suffix
``_reverse``; each level's ``weight_ih`` takes the width of the level below (H, or 2H below a bidirectional
level). Either layout may carry a dense output head ``head_kernel`` (F, k) and ``head_bias`` (k,) on the top
level's final state (F = H, or 2H when the top level is bidirectional). Any other key (a PyTorch head ``fc.weight``,
a level that does not follow the levels read), and keys of both layouts in one file, are errors, never ignored.

What a file does not say (the activations, the head's output function) is given by the caller.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gradflow.lstm.checks import read_npz
from gradflow.lstm.cell import LSTMParams
from gradflow.lstm.model import Bidirectional, Head, Layer, Level, Model

KERAS_KEYS = ("kernel", "recurrent_kernel", "bias")
TORCH_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
HEAD_KEYS = ("head_kernel", "head_bias")
LAYOUTS = ("keras", "pytorch")


def checked_array(arrays: dict, key: str, shape: tuple, where: str, expected: str) -> np.ndarray:
    """``arrays[key]`` as float32 after checking it is there, real, of ``shape``, finite and within float32's range;
    each ValueError names ``where``, the key and ``expected`` (the shape in words, e.g. ``"(4H, D)"``)."""
    if key not in arrays:
        raise ValueError(f"{where}: missing key {key!r}, expected {expected}; found {sorted(arrays)}")
    a = np.asarray(arrays[key])
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{where}: {key} must be real numbers {expected}; got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{where}: {key} must have shape {expected} = {shape}; got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{where}: {key} holds {int((~np.isfinite(a)).sum())} non-finite values")
    big = np.abs(a) > np.finfo(np.float32).max
    if big.any():
        raise ValueError(f"{where}: {key} holds {int(big.sum())} values beyond the float32 range (largest "
                         f"magnitude {np.abs(a).max():g}; gradflow computes in float32)")
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
    U = checked_array(arrays, recurrent, shape(H, H), where, dims("H"))
    W = checked_array(arrays, kernel, shape(D, H), where, dims("D"))
    b = sum(checked_array(arrays, key, (4 * H,), where, "(4H,)") for key in biases)
    return (W.T, U.T, b) if transposed else (W, U, b)


def _is_torch_key(key: str) -> bool:
    return re.fullmatch(r"(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l\d+(_reverse)?", key) is not None


def weights_layout(arrays: dict, *, where: str = "weights") -> str:
    """The layout of named weight arrays, one of :data:`LAYOUTS`; ValueError if neither layout's keys are there,
    or if both are."""
    keras = sorted(k for k in arrays if k in KERAS_KEYS)
    torch = sorted(k for k in arrays if _is_torch_key(k))
    if keras and torch:
        raise ValueError(f"{where}: both Keras keys {keras} and PyTorch keys {torch}; a weight file holds one "
                         f"layout: Keras {list(KERAS_KEYS)} or PyTorch {list(TORCH_KEYS)} (and further levels)")
    if keras:
        return "keras"
    if torch:
        return "pytorch"
    raise ValueError(f"{where}: no LSTM weights found; expected Keras keys {list(KERAS_KEYS)} or PyTorch keys "
                     f"{list(TORCH_KEYS)}; found {sorted(arrays)}")


def _torch_levels(arrays: dict, where: str, layer) -> list[Level]:
    """The levels ``l0, l1, ...`` of a PyTorch state dict, each a forward layer or, with ``_reverse`` keys, a pair."""
    if any(key.startswith("weight_hr_l") for key in arrays):
        raise ValueError(f"{where}: LSTM projections (weight_hr_l*, PyTorch's proj_size) are not supported")
    has = lambda suffix: any(key.endswith(suffix) for key in arrays)  # noqa: E731
    levels: list[Level] = []
    width = None
    k = 0
    while k == 0 or has(f"_l{k}") or has(f"_l{k}_reverse"):
        parts = []
        for suffix in (f"_l{k}", f"_l{k}_reverse") if has(f"_l{k}_reverse") else (f"_l{k}",):
            W, U, b = _lstm_arrays(arrays, where, recurrent=f"weight_hh{suffix}", kernel=f"weight_ih{suffix}",
                                   biases=(f"bias_ih{suffix}", f"bias_hh{suffix}"), transposed=True)
            if width is not None and W.shape[0] != width:
                raise ValueError(f"{where}: weight_ih{suffix} must have shape (4H, {width}) to take the {width} "
                                 f"features of level l{k - 1}; got {W.T.shape}")
            if parts and U.shape != parts[0].params.U.shape:
                raise ValueError(f"{where}: weight_hh{suffix} must have the shape of weight_hh_l{k}, "
                                 f"{parts[0].params.U.T.shape}; got {U.T.shape}")
            parts.append(layer(W, U, b, "backward" if suffix.endswith("_reverse") else "forward"))
        levels.append(Bidirectional(*parts) if len(parts) == 2 else parts[0])
        width = sum(part.hidden_size for part in parts)
        k += 1
    return levels


def model_from_arrays(arrays: dict, *, where: str = "weights", activation: str = "tanh",
                      recurrent_activation: str = "sigmoid", head_output: str = "linear") -> Model:
    """A :class:`gradflow.lstm.model.Model` from Keras- or PyTorch-named arrays (see the module docstring), validated.

    Args:
      arrays: name -> array, as in the file.
      where: what to name in errors (the file's path).
      activation, recurrent_activation: the cell and gate activations of every layer (a file does not say).
      head_output: the output function of the head, if the arrays have one (see
        :data:`gradflow.lstm.model.HEAD_OUTPUTS`).

    Returns:
      The model, float32 numpy arrays as leaves.

    Raises:
      ValueError: a missing key, a wrong shape or dtype, a non-finite value, a key of neither layout (a PyTorch
        head ``fc.weight`` too), or keys of both layouts; the message names the key and what is expected.
    """
    def layer(W, U, b, direction="forward"):
        params = LSTMParams(np.ascontiguousarray(W), np.ascontiguousarray(U), b)
        return Layer(params, direction=direction, activation=activation, recurrent_activation=recurrent_activation)

    if weights_layout(arrays, where=where) == "keras":
        levels = [layer(*_lstm_arrays(arrays, where, recurrent="recurrent_kernel", kernel="kernel", biases=("bias",),
                                      transposed=False))]
        read = set(KERAS_KEYS)
    else:
        levels = _torch_levels(arrays, where, layer)
        read = {f"{name}_l{k}{reverse}" for k, level in enumerate(levels) for name in TORCH_NAMES
                for reverse in (("", "_reverse") if isinstance(level, Bidirectional) else ("",))}
    unknown = sorted(set(arrays) - read - set(HEAD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; understood: Keras {list(KERAS_KEYS)}, or PyTorch "
                         f"nn.LSTM names weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> (suffix _reverse "
                         f"for a backward layer) for levels l0, l1, ... in order; either with a head {list(HEAD_KEYS)} "
                         f"(F, k), (k,). A PyTorch head (fc.weight, fc.bias) is not read: store it as "
                         f"head_kernel = fc.weight.T and head_bias = fc.bias")
    bottom = levels[0].forward if isinstance(levels[0], Bidirectional) else levels[0]
    if bottom.input_size < 1:
        raise ValueError(f"{where}: the input kernel must have at least one input feature; got {bottom.params.W.shape}")
    top = levels[-1]
    F, dims = (2 * top.hidden_size, "(2H, k)") if isinstance(top, Bidirectional) else (top.hidden_size, "(H, k)")
    head = None
    if "head_kernel" in arrays:
        k = np.shape(arrays["head_kernel"])[-1] if np.ndim(arrays["head_kernel"]) == 2 else -1
        kernel = checked_array(arrays, "head_kernel", (F, max(k, 0)), where, dims)
        bias = checked_array(arrays, "head_bias", (k,), where, "(k,)") if "head_bias" in arrays else np.zeros(k, np.float32)
        head = Head(kernel, bias, head_output)
    elif "head_bias" in arrays:
        raise ValueError(f"{where}: head_bias given without head_kernel {dims}")
    return Model(tuple(levels), head)


def load_model(path: str | Path, **settings) -> Model:
    """Read and validate an ``.npz`` of LSTM weights: :func:`model_from_arrays` of the file's arrays.

    Example:
      >>> import tempfile, numpy as np
      >>> path = tempfile.mkdtemp() + "/w.npz"
      >>> np.savez(path, kernel=np.zeros((2, 12)), recurrent_kernel=np.zeros((3, 12)), bias=np.zeros(12))
      >>> m = load_model(path, activation="relu")
      >>> m.input_size, m.hidden_size, m.head is None, m.layers[0].activation
      (2, 3, True, 'relu')
    """
    path = Path(path)
    arrays = read_npz(path, what="weights")
    return model_from_arrays(arrays, where=str(path), **settings)
