"""Trained recurrent weights from ``.npz`` files as a :class:`gradflow.lstm.model.Model`: the Keras layout, or the
names of a PyTorch state dict.

Keras: ``kernel`` (D, 4H), ``recurrent_kernel`` (H, 4H), ``bias`` (4H,), gates in the order (input, forget, cell,
output): one forward LSTM layer; any other key is an error. PyTorch: the keys of an ``nn.LSTM`` or ``nn.GRU``
state dict, ``weight_ih_l0`` (gH, D), ``weight_hh_l0`` (gH, H), ``bias_ih_l0`` and ``bias_hh_l0`` (gH,), with g = 4
(LSTM) or 3 (GRU), further levels ``l1, l2 ...``, backward layers under the suffix ``_reverse``, optional key
prefixes (``lstm.weight_ih_l0``) and a ``Linear`` head (``fc.weight``, ``fc.bias``) reading the top level, read as
:func:`gradflow.data.torch_files.model_from_state_dict` reads them (``W = weight_ih.T``, ``U = weight_hh.T``; the
LSTM's ``b = bias_ih + bias_hh``); a key inside the recurrent module that it does not understand is an error.
Either layout may carry a dense output head ``head_kernel`` (F, k) and ``head_bias`` (k,) on the top level's final
state (F = H, or 2H when the top level is bidirectional). Keys of both layouts in one file, and a head given twice
(``head_kernel`` and a PyTorch ``Linear``), are errors.

What a file does not say (the activations, the head's output function) is given by the caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradflow.lstm.cell import LSTMParams
from gradflow.lstm.checks import read_npz
from gradflow.lstm.model import Bidirectional, Head, Layer, Model

KERAS_KEYS = ("kernel", "recurrent_kernel", "bias")
TORCH_KEYS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
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


def _keras_layer(arrays: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W (D, 4H), U (H, 4H), b (4H,))`` from the Keras keys."""
    if "recurrent_kernel" not in arrays or np.ndim(arrays["recurrent_kernel"]) != 2:
        raise ValueError(f"{where}: recurrent_kernel must have shape (H, 4H)"
                         + ("" if "recurrent_kernel" in arrays else f"; missing (found {sorted(arrays)})"))
    H = np.shape(arrays["recurrent_kernel"])[0]
    D = np.shape(arrays["kernel"])[0] if "kernel" in arrays and np.ndim(arrays["kernel"]) == 2 else 0
    U = checked_array(arrays, "recurrent_kernel", (H, 4 * H), where, "(H, 4H)")
    W = checked_array(arrays, "kernel", (D, 4 * H), where, "(D, 4H)")
    b = checked_array(arrays, "bias", (4 * H,), where, "(4H,)")
    if D < 1:
        raise ValueError(f"{where}: the input kernel must have at least one input feature; got {W.shape}")
    return W, U, b


def weights_layout(arrays: dict, *, where: str = "weights") -> str:
    """The layout of named weight arrays, one of :data:`LAYOUTS`; ValueError if neither layout's keys are there,
    or if both are."""
    from gradflow.data.torch_files import RNN_KEY  # torch_files builds on checked_array: imported here, not above

    keras = sorted(k for k in arrays if k in KERAS_KEYS)
    torch = sorted(k for k in arrays if RNN_KEY.fullmatch(k))
    if keras and torch:
        raise ValueError(f"{where}: both Keras keys {keras} and PyTorch keys {torch}; a weight file holds one "
                         f"layout: Keras {list(KERAS_KEYS)} or PyTorch {list(TORCH_KEYS)} (and further levels)")
    if keras:
        return "keras"
    if torch:
        return "pytorch"
    raise ValueError(f"{where}: no LSTM weights found; expected Keras keys {list(KERAS_KEYS)} or PyTorch keys "
                     f"{list(TORCH_KEYS)}; found {sorted(arrays)}")


def _keras_model(arrays: dict, where: str) -> Model:
    unknown = sorted(set(arrays) - set(KERAS_KEYS) - set(HEAD_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; understood: Keras {list(KERAS_KEYS)} with an optional "
                         f"head {list(HEAD_KEYS)} (F, k), (k,)")
    return Model((Layer(LSTMParams(*_keras_layer(arrays, where))),))


def _torch_model(arrays: dict, where: str, rnn: str | None, head: str | None, head_output: str) -> Model:
    from gradflow.data.torch_files import model_from_state_dict  # see weights_layout

    state = {key: a for key, a in arrays.items() if key not in HEAD_KEYS}
    model = model_from_state_dict(state, where=where, rnn=rnn, head=head, head_output=head_output)
    if model.head is not None and any(key in arrays for key in HEAD_KEYS):
        raise ValueError(f"{where}: two heads: {[key for key in HEAD_KEYS if key in arrays]} and a PyTorch Linear "
                         f"layer reading the top level; keep one")
    return model


def _with_activations(model: Model, activation: str, recurrent_activation: str) -> Model:
    def layer(one: Layer) -> Layer:
        return one.replace(activation=activation, recurrent_activation=recurrent_activation)

    return model.replace(layers=tuple(
        Bidirectional(layer(level.forward), layer(level.backward)) if isinstance(level, Bidirectional) else layer(level)
        for level in model.layers))


def _file_head(arrays: dict, model: Model, where: str, head_output: str) -> Head | None:
    """The head stored as ``head_kernel`` (F, k) and ``head_bias`` (k,), or None."""
    top = model.layers[-1]
    F, dims = (2 * top.hidden_size, "(2H, k)") if isinstance(top, Bidirectional) else (top.hidden_size, "(H, k)")
    if "head_kernel" not in arrays:
        if "head_bias" in arrays:
            raise ValueError(f"{where}: head_bias given without head_kernel {dims}")
        return None
    k = np.shape(arrays["head_kernel"])[-1] if np.ndim(arrays["head_kernel"]) == 2 else -1
    kernel = checked_array(arrays, "head_kernel", (F, max(k, 0)), where, dims)
    bias = checked_array(arrays, "head_bias", (k,), where, "(k,)") if "head_bias" in arrays else np.zeros(k, np.float32)
    return Head(kernel, bias, head_output)


def model_from_arrays(arrays: dict, *, where: str = "weights", activation: str = "tanh",
                      recurrent_activation: str = "sigmoid", head_output: str = "linear", rnn: str | None = None,
                      head: str | None = None) -> Model:
    """A :class:`gradflow.lstm.model.Model` from Keras- or PyTorch-named arrays (see the module docstring), validated.

    Args:
      arrays: name -> array, as in the file.
      where: what to name in errors (the file's path).
      activation, recurrent_activation: the cell and gate activations of every layer (a file does not say).
      head_output: the output function of the head, if the arrays have one (see
        :data:`gradflow.lstm.model.HEAD_OUTPUTS`).
      rnn, head: PyTorch layout only: the key prefixes of the recurrent module and of the Linear head, where the
        arrays hold several (see :func:`gradflow.data.torch_files.model_from_state_dict`).

    Returns:
      The model, float32 numpy arrays as leaves.

    Raises:
      ValueError: a missing key, a wrong shape or dtype, a non-finite value, a key that is not understood (any
        other key in the Keras layout, one inside the recurrent module in the PyTorch layout), keys of both
        layouts, or two heads; the message names the key and what is expected.
    """
    if weights_layout(arrays, where=where) == "keras":
        model = _keras_model(arrays, where)
    else:
        model = _torch_model(arrays, where, rnn, head, head_output)
    model = _with_activations(model, activation, recurrent_activation)
    file_head = _file_head(arrays, model, where, head_output)
    return model if file_head is None else model.replace(head=file_head)


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
