r"""Keras 3 models as a :class:`gradflow.lstm.model.Model`: a live ``keras.Model`` or a ``.keras`` file.

What is read: a linear chain (``Sequential``, or functional with one input, one output and each layer feeding the
next) of ``LSTM`` and ``GRU`` layers, ``Bidirectional`` wrappers of them (``merge_mode="concat"``), ``Dropout`` and
``InputLayer`` (the identity at inference) and an optional final ``Dense`` head (``sigmoid``, ``softmax`` or
``linear``). Any other layer is refused by name, never skipped.

Each recurrent layer keeps its ``activation`` and ``recurrent_activation`` (names in
:data:`gradflow.lstm.cell.ACTIVATIONS` and :data:`gradflow.lstm.cell.RECURRENT_ACTIVATIONS`). Weights:

- ``LSTM``: ``W = kernel`` (D, 4H), ``U = recurrent_kernel`` (H, 4H), ``b = bias`` (4H,), gates (i, f, c, o) as
  Keras stores them; ``use_bias=False`` gives ``b = 0``. ``unit_forget_bias`` only initialises the forget block
  of the bias to 1: a saved bias already holds it (and whatever training made of it).
- ``GRU``: Keras orders its blocks (z, r, h), gradflow (r, z, n): columns are reordered. ``reset_after=True``
  (Keras's default) is ``cell="gru"``, its ``bias`` (2, 3H) split into the input bias ``b`` (row 0) and the
  recurrent bias ``β`` (row 1); ``reset_after=False`` is ``cell="gru_reset_before"``, ``bias`` (3H,) and ``β = 0``.

Directions: a Keras layer's output sequence is in the order it read its input, so a ``go_backwards=True`` layer
hands the layer above a time-reversed sequence. gradflow indexes every level by the input's time, so each layer's
direction is the order it reads the *original* time axis in:

.. math::

    \mathrm{reversed}_l = \mathrm{reversed}_{l-1} \oplus \mathtt{go\_backwards}_l, \qquad
    \mathrm{direction}_l = \text{backward if } \mathrm{reversed}_l \text{ else forward}

(``reversed_0`` false). :func:`gradflow.lstm.model.hidden_states` is in time order: a Keras output sequence with
``reversed_L`` true is its reverse. A head reads the top layer's final state (``return_sequences=False``), the state
after the whole sequence in its reading order, as :func:`gradflow.lstm.model.final_state` does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np

from gradflow.data.weights import checked_array
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS, LSTMParams
from gradflow.lstm.gru import GRUParams
from gradflow.lstm.model import HEAD_OUTPUTS, Bidirectional, Head, Layer, Model

#: What installs Keras for gradflow.
KERAS_EXTRA = 'pip install "gradflow[keras]"'
#: The package each Keras backend needs (a backend not listed needs the package of its own name).
BACKEND_PACKAGES: dict[str, str] = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
                                    "openvino": "openvino"}
#: The backend used when the configured one is not installed: gradflow's own dependency.
FALLBACK_BACKEND = "jax"
#: Keras layers that are the identity at inference and are skipped.
IGNORED_LAYERS: tuple[str, ...] = ("InputLayer", "Dropout")
#: The Keras layer classes read (``keras.layers.<name>`` exactly: a subclass may compute something else).
READ_LAYERS: tuple[str, ...] = (*IGNORED_LAYERS, "LSTM", "GRU", "Bidirectional", "Dense")
SUPPORTED = ("LSTM and GRU layers, Bidirectional(LSTM or GRU, merge_mode='concat'), Dropout, InputLayer and a final "
             "Dense head (activation sigmoid, softmax or linear)")


def configured_keras_backend() -> str:
    """The backend Keras will choose when imported, decided as ``keras/src/backend/config.py`` does: a non-empty
    ``KERAS_BACKEND``, else ``"backend"`` in ``keras.json`` (in ``$KERAS_HOME``, else ``~/.keras``, or
    ``/tmp/.keras`` when the home directory is not writable), else ``"tensorflow"``."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    if "KERAS_HOME" in os.environ:
        keras_dir = os.environ["KERAS_HOME"]
    else:
        home = os.path.expanduser("~")
        keras_dir = os.path.join(home if os.access(home, os.W_OK) else "/tmp", ".keras")
    try:
        with open(os.path.expanduser(os.path.join(keras_dir, "keras.json"))) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return "tensorflow"
    backend = config.get("backend", "tensorflow") if isinstance(config, dict) else "tensorflow"
    return backend if isinstance(backend, str) else "tensorflow"


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def import_keras():
    """The ``keras`` module, imported with a backend that runs here.

    If keras is imported already, it is used as it is. Otherwise, when the package of the configured backend
    (:func:`configured_keras_backend`; many machines name ``tensorflow`` without having it) is not installed,
    ``os.environ["KERAS_BACKEND"]`` is set to ``"jax"`` (gradflow's own dependency) before the import, silently
    and for the rest of the process.

    Raises:
      ValueError: keras is not installed (the message names ``pip install "gradflow[keras]"``), or the backend
        it was configured with fails to import.
    """
    if sys.modules.get("keras") is None:
        backend = configured_keras_backend()
        if not _importable(BACKEND_PACKAGES.get(backend, backend)):
            os.environ["KERAS_BACKEND"] = FALLBACK_BACKEND
    try:
        import keras
    except ModuleNotFoundError as error:
        if error.name == "keras":
            raise ValueError(f"reading Keras models needs Keras 3: {KERAS_EXTRA}") from error
        raise ValueError(f"keras failed to import with backend {configured_keras_backend()!r}: {error}; set "
                         f"KERAS_BACKEND=jax") from error
    return keras


@contextlib.contextmanager
def keras_numerics():
    """NumPy's promotion rules for JAX inside the block: Keras (JAX backend) relies on them, while a program may
    have made JAX strict (``jax_numpy_dtype_promotion="strict"``, ``jax_numpy_rank_promotion="raise"``)."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _kind(layer) -> str | None:
    """The name of ``layer``'s class if it is one of :data:`READ_LAYERS` exactly, else None."""
    import keras

    name = type(layer).__name__
    return name if name in READ_LAYERS and getattr(keras.layers, name, None) is type(layer) else None


def _describe(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _refuse(where: str, layer, problem: str) -> ValueError:
    return ValueError(f"{where}: {_describe(layer)} {problem}; gradflow reads {SUPPORTED}")


def _tensor_sources(node) -> list[str]:
    """The names of the layers whose outputs a serialised call (a functional config's inbound node) reads."""
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            return [node["config"]["keras_history"][0]]
        return [name for value in node.values() for name in _tensor_sources(value)]
    if isinstance(node, (list, tuple)):
        return [name for value in node for name in _tensor_sources(value)]
    return []


def _linear_chain(model, where: str) -> list:
    """The model's layers but its ``InputLayer``, checked to form one chain from its one input to its one output:
    in a functional model each layer is called once, on the output of the layer before it (its config says)."""
    if not model.built:
        raise ValueError(f"{where}: the model is not built; give it a keras.Input or call it on data first")
    inputs, outputs = model.inputs, model.outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"{where}: gradflow reads models with one input and one output; got {len(inputs)} inputs "
                         f"and {len(outputs)} outputs")
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    for layer in layers:
        if _kind(layer) is None:
            raise _refuse(where, layer, "is not supported")
    config = model.get_config()
    if "input_layers" not in config:  # Sequential: a chain by construction
        return layers
    # A functional config lists every operation (slicing and arithmetic on tensors too), each with its calls.
    serialised = [c for c in config["layers"] if c["class_name"] != "InputLayer"]
    for c in serialised:
        if c["class_name"] not in READ_LAYERS:
            raise ValueError(f"{where}: layer {c['name']!r} ({c['class_name']}) is not supported; gradflow reads "
                             f"{SUPPORTED}")
    previous = [c["name"] for c in config["layers"] if c["class_name"] == "InputLayer"]
    for c in serialised:
        nodes, layer = c.get("inbound_nodes", []), model.get_layer(c["name"])
        if len(nodes) != 1:
            raise _refuse(where, layer, f"is called {len(nodes)} times; gradflow reads a chain of layers each "
                                        f"called once")
        if _tensor_sources(nodes[0]) != previous:
            raise _refuse(where, layer, f"reads {_tensor_sources(nodes[0])}, not only the output of the layer "
                                        f"before it ({previous}): gradflow reads a linear chain of layers")
        previous = [c["name"]]
    return [model.get_layer(c["name"]) for c in serialised]


def _named_weights(layer) -> dict[str, np.ndarray]:
    """The layer's weights by name (``kernel``, ``recurrent_kernel``, ``bias``) as numpy arrays."""
    return {weight.name: np.asarray(weight.value) for weight in layer.weights}


def _activations(layer, where: str) -> dict[str, str]:
    config = layer.get_config()
    activation, recurrent = config.get("activation") or "linear", config.get("recurrent_activation")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise _refuse(where, layer, f"has activation {activation!r}; gradflow's cell activations are "
                                    f"{sorted(ACTIVATIONS)}")
    if not isinstance(recurrent, str) or recurrent not in RECURRENT_ACTIVATIONS:
        raise _refuse(where, layer, f"has recurrent_activation {recurrent!r}; gradflow's gate activations are "
                                    f"{sorted(RECURRENT_ACTIVATIONS)}")
    return {"activation": activation, "recurrent_activation": recurrent}


def _gru_blocks(a: np.ndarray) -> np.ndarray:
    """Keras's GRU blocks (z, r, h) along the last axis reordered to gradflow's (r, z, n)."""
    z, r, n = np.split(a, 3, axis=-1)
    return np.ascontiguousarray(np.concatenate([r, z, n], axis=-1))


def _recurrent_layer(layer, width: int, direction: str, where: str) -> Layer:
    """One Keras ``LSTM`` or ``GRU`` as a gradflow layer reading ``width`` features in ``direction``."""
    config = layer.get_config()
    for option in ("stateful", "return_state"):
        if config.get(option):
            raise _refuse(where, layer, f"has {option}=True, which gradflow does not read")
    H = int(config["units"])
    arrays, at = _named_weights(layer), f"{where}: {_describe(layer)}"
    kind = _kind(layer)
    blocks = 4 if kind == "LSTM" else 3
    W = checked_array(arrays, "kernel", (width, blocks * H), at, f"(D, {blocks}H) with D = {width} features")
    U = checked_array(arrays, "recurrent_kernel", (H, blocks * H), at, f"(H, {blocks}H)")
    settings = {"direction": direction, **_activations(layer, where)}
    if kind == "LSTM":
        b = checked_array(arrays, "bias", (4 * H,), at, "(4H,)") if config["use_bias"] else np.zeros(4 * H, np.float32)
        return Layer(LSTMParams(W, U, b), cell="lstm", **settings)
    zeros = np.zeros(3 * H, np.float32)
    if config["reset_after"]:
        bias = checked_array(arrays, "bias", (2, 3 * H), at, "(2, 3H)") if config["use_bias"] else np.stack([zeros] * 2)
        b, b_recurrent, cell = bias[0], bias[1], "gru"
    else:
        b = checked_array(arrays, "bias", (3 * H,), at, "(3H,)") if config["use_bias"] else zeros
        b_recurrent, cell = zeros, "gru_reset_before"
    params = GRUParams(_gru_blocks(W), _gru_blocks(U), _gru_blocks(b), _gru_blocks(b_recurrent))
    return Layer(params, cell=cell, **settings)


def _bidirectional(layer, width: int, reversed_input: bool, where: str) -> Bidirectional:
    """A Keras ``Bidirectional`` (concat) as a gradflow pair: Keras flips its backward output to time order."""
    if layer.merge_mode != "concat":
        raise _refuse(where, layer, f"has merge_mode={layer.merge_mode!r}; gradflow reads merge_mode='concat' only "
                                    f"(the two directions' states side by side)")
    if reversed_input:
        raise _refuse(where, layer, "reads the time-reversed sequence of a go_backwards layer below it: its "
                                    "backward half would come first, which a gradflow Bidirectional cannot hold")
    forward, backward = layer.forward_layer, layer.backward_layer
    for part in (forward, backward):
        if _kind(part) not in ("LSTM", "GRU"):
            raise _refuse(where, part, f"(in {_describe(layer)}) is not supported")
    if forward.go_backwards or not backward.go_backwards:
        raise _refuse(where, layer, "must wrap a forward layer (go_backwards=False) and a backward one "
                                    "(go_backwards=True)")
    if forward.units != backward.units:
        raise _refuse(where, layer, f"has directions of {forward.units} and {backward.units} units; gradflow's "
                                    f"pairs have one hidden size")
    return Bidirectional(_recurrent_layer(forward, width, "forward", where),
                         _recurrent_layer(backward, width, "backward", where))


def _head(layer, width: int, where: str) -> Head:
    config = layer.get_config()
    output = config.get("activation") or "linear"
    if not isinstance(output, str) or output not in HEAD_OUTPUTS:
        raise _refuse(where, layer, f"has activation {output!r}; a head's output is one of {list(HEAD_OUTPUTS)}")
    k, arrays, at = int(config["units"]), _named_weights(layer), f"{where}: {_describe(layer)}"
    kernel = checked_array(arrays, "kernel", (width, k), at, f"(F, k) with F = {width}, the top level's width")
    bias = checked_array(arrays, "bias", (k,), at, "(k,)") if config["use_bias"] else np.zeros(k, np.float32)
    return Head(kernel, bias, output)


def model_from_keras(model, *, where: str = "Keras model") -> Model:
    """The :class:`gradflow.lstm.model.Model` of a live Keras 3 model (see the module docstring), validated.

    Args:
      model: a built ``keras.Model`` (``Sequential`` or functional), a linear chain of supported layers.
      where: what to name in errors (a file's path).

    Returns:
      The model, float32 numpy arrays as leaves; the head's output function is the ``Dense`` layer's activation.

    Raises:
      TypeError: ``model`` is not a ``keras.Model``.
      ValueError: an unsupported layer or option (the message names the layer's name and class and what is read),
        a model that is not a linear chain, a ``Dense`` head over a whole sequence (the head reads the final
        state: ``return_sequences=False`` on the top recurrent layer), or weights of a wrong shape or with
        non-finite values (named by layer and key).
    """
    keras = import_keras()
    if not isinstance(model, keras.Model):
        raise TypeError(f"{where}: expected a keras.Model; got {type(model).__name__}")
    layers = _linear_chain(model, where)
    width = model.inputs[0].shape[-1]
    if width is None:
        raise ValueError(f"{where}: the input's feature axis has no size; give keras.Input(shape=(None, D))")
    levels, head, sequence_layer, reversed_input = [], None, None, False
    for layer in layers:
        kind = _kind(layer)
        if kind in IGNORED_LAYERS:
            continue
        if head is not None:
            raise _refuse(where, layer, "follows the Dense head, which must be the last layer")
        if kind in ("LSTM", "GRU", "Bidirectional"):
            if sequence_layer is not None and not sequence_layer.return_sequences:
                raise _refuse(where, sequence_layer, "has return_sequences=False but a recurrent layer above it "
                                                     "reads its sequence")
            if kind == "Bidirectional":
                level = _bidirectional(layer, width, reversed_input, where)
            else:
                reversed_input = reversed_input != bool(layer.go_backwards)
                level = _recurrent_layer(layer, width, "backward" if reversed_input else "forward", where)
            levels.append(level)
            width, sequence_layer = 2 * level.hidden_size if kind == "Bidirectional" else level.hidden_size, layer
        else:  # Dense
            if sequence_layer is None:
                raise _refuse(where, layer, "comes before any recurrent layer; Dense is read only as the final head")
            if sequence_layer.return_sequences:
                raise _refuse(where, sequence_layer, "has return_sequences=True under the Dense head; the head reads "
                                                     "the final state: give the top recurrent layer "
                                                     "return_sequences=False")
            head = _head(layer, width, where)
    if not levels:
        raise ValueError(f"{where}: no LSTM or GRU layer found; gradflow reads {SUPPORTED}")
    return Model(tuple(levels), head)


def load_keras_model(path: str | Path) -> Model:
    """Read a Keras 3 ``.keras`` file as a :class:`gradflow.lstm.model.Model`: :func:`model_from_keras` of
    ``keras.saving.load_model(path, safe_mode=True, compile=False)``.

    Keras is imported by :func:`import_keras`: with the JAX backend when the configured one is not installed.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not a ``.keras`` zip archive (a legacy ``.h5`` model: load it in Keras and ``model.save`` it as
        ``.keras``), a file Keras cannot read (a custom layer class, an archive without ``config.json``) or refuses
        in safe mode (a ``Lambda`` layer's Python code), Keras missing (the
        message names ``pip install "gradflow[keras]"``), or what :func:`model_from_keras` refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Keras model file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path) or path.suffix != ".keras":
        raise ValueError(f"{str(path)!r} is not a Keras 3 .keras file (a zip archive named *.keras); a legacy HDF5 "
                         f"model (.h5): load it with keras.saving.load_model and save it with model.save('model.keras')")
    keras = import_keras()
    try:
        with keras_numerics():
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, TypeError, KeyError, OSError) as error:  # what Keras raises for a file it cannot read
        unsafe = "safe_mode" in str(error)
        raise ValueError(f"{str(path)!r}: Keras could not load it"
                         + (" in safe mode (gradflow never runs the Python code a Lambda layer stores)" if unsafe else "")
                         + f": {error}") from error
    return model_from_keras(model, where=str(path))
