r"""PyTorch recurrent models as a :class:`gradflow.lstm.model.Model`: state dicts, ``.pt``/``.pth`` files and live
``nn.Module`` objects.

An ``nn.LSTM`` or ``nn.GRU`` at key prefix ``P`` (``""``, ``"lstm."``, ``"module.encoder.rnn."``, ...) holds, for
levels ``k = 0 .. L-1`` and, under the suffix ``_reverse``, the backward layer of a bidirectional level:

.. math::

    P\,\mathtt{weight\_ih\_l}k\ (gH, D_k), \quad P\,\mathtt{weight\_hh\_l}k\ (gH, H), \quad
    P\,\mathtt{bias\_ih\_l}k,\ P\,\mathtt{bias\_hh\_l}k\ (gH,)\ \text{(absent for bias=False: zeros)}

with ``g = 4`` for an LSTM (gates i, f, g, o) and ``g = 3`` for a GRU (r, z, n), told apart by the shape of
``weight_hh_l0``; ``D_0`` is the input width and ``D_k`` the width of the level below (H, or 2H below a
bidirectional level). gradflow's layers are, in the same gate order,

.. math::

    \text{LSTM: } W = W_{ih}^\top,\ U = W_{hh}^\top,\ b = b_{ih} + b_{hh}; \qquad
    \text{GRU: } W = W_{ih}^\top,\ U = W_{hh}^\top,\ b = b_{ih},\ \beta = b_{hh}

(PyTorch's GRU resets after the recurrent product, gradflow's ``cell="gru"``). The head is the ``Linear`` module
``P'`` (``P'weight`` (k, F), optional ``P'bias`` (k,)) whose ``in_features`` F is the top level's width: it reads
PyTorch's ``h_n``, the final state of each top-level direction, forward first, as
``fc(torch.cat((h_n[-2], h_n[-1]), -1))`` does (not ``output[:, -1]``, whose backward half has read one step).
Its ``kernel = weight^T``. A head of several Linear layers (``fc1`` feeding ``fc2``) is refused, not read as its
first layer; a module named ``*embed*`` is never the head. Other keys (embeddings, normalisation, an input
projection) are not the recurrent model's and are ignored; a key inside the chosen recurrent module that is not understood is an error.

Files are read with ``torch.load(..., weights_only=True)``, which never runs code from the file; torch is imported
only when a file is read (``pip install "gradflow[torch]"``).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from gradflow.data.weights import checked_array
from gradflow.lstm.cell import LSTMParams
from gradflow.lstm.gru import GRUParams
from gradflow.lstm.model import HEAD_OUTPUTS, Bidirectional, Head, Layer, Level, Model

#: A recurrent module's parameter key: its prefix, parameter name, level and direction.
RNN_KEY = re.compile(r"(?P<prefix>(?:.*\.)?)(?P<name>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                     r"_l(?P<level>\d+)(?P<reverse>_reverse)?")
#: The parameters gradflow reads from each layer, as PyTorch names them.
PARAMETER_NAMES: tuple[str, ...] = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
#: Cell kinds by gate count g (``weight_hh`` is (gH, H)).
CELL_BY_GATES: dict[int, str] = {4: "lstm", 3: "gru"}
#: Keys of a checkpoint dict that hold the state dict, in the order they are looked for.
CHECKPOINT_KEYS: tuple[str, ...] = ("model_state_dict", "state_dict", "model", "net")
INSTALL_HINT = 'pip install "gradflow[torch]"'


class TorchNotInstalledError(ImportError, ValueError):
    """torch is needed (to read a PyTorch file) but not installed. Both an ImportError and a ValueError, so that
    callers handling bad input (the CLI) report its message: install with ``pip install "gradflow[torch]"``."""


def as_numpy(value) -> np.ndarray:
    """A torch tensor (by duck typing: ``.detach().cpu().numpy()``, bfloat16 widened to float32) or any array-like
    as a numpy array."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        tensor = value.detach().cpu()
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(value)


def _state_arrays(state, where: str) -> dict[str, np.ndarray]:
    if not isinstance(state, Mapping):
        raise TypeError(f"{where}: a state dict must be a mapping of parameter names to arrays; got "
                        f"{type(state).__name__}")
    arrays = {}
    for key, value in state.items():
        try:
            arrays[str(key)] = as_numpy(value)
        except (TypeError, ValueError, RuntimeError):  # not an array (a module's extra state): an error only if read
            arrays[str(key)] = np.empty((), object)
            arrays[str(key)][()] = value
    return arrays


def _module_name(prefix: str) -> str:
    return prefix[:-1] if prefix else ""


def _as_prefix(name: str, argname: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{argname} must be a module name (a key prefix such as 'lstm' or 'encoder.rnn.'); got "
                        f"{type(name).__name__}")
    return name if name == "" or name.endswith(".") else name + "."


def _module_arrays(arrays: dict, prefix: str) -> dict:
    """The keys of the module at ``prefix``: those under it, or for the top-level module ``""`` those without a
    dot (the parameters of the root, not of its children)."""
    if prefix:
        return {key: a for key, a in arrays.items() if key.startswith(prefix)}
    return {key: a for key, a in arrays.items() if "." not in key}


def recurrent_modules(arrays: Mapping) -> list[str]:
    """The key prefixes of the recurrent modules (``nn.LSTM``, ``nn.GRU``) of a state dict, sorted."""
    return sorted({match["prefix"] for key in arrays if (match := RNN_KEY.fullmatch(str(key)))})


def _chosen_prefix(arrays: dict, rnn: str | None, where: str) -> str:
    prefixes = recurrent_modules(arrays)
    names = [_module_name(p) for p in prefixes]
    if not prefixes:
        shown = sorted(arrays)[:12] + (["..."] if len(arrays) > 12 else [])
        raise ValueError(f"{where}: no PyTorch nn.LSTM or nn.GRU found: expected keys PREFIX weight_ih_l0, "
                         f"weight_hh_l0, bias_ih_l0, bias_hh_l0 (PREFIX e.g. 'lstm.'); found {shown}")
    if rnn is None:
        if len(prefixes) > 1:
            raise ValueError(f"{where}: {len(prefixes)} recurrent modules {names}; pick one with rnn=PREFIX (CLI "
                             f"option --rnn), e.g. rnn={names[0]!r}")
        return prefixes[0]
    prefix = _as_prefix(rnn, "rnn")
    if prefix not in prefixes:
        raise ValueError(f"{where}: rnn={rnn!r} names no recurrent module; the recurrent modules are {names}")
    return prefix


def _cell_kind(module: dict, prefix: str, where: str) -> tuple[str, int]:
    """The cell kind and gate count g from the shape (gH, H) of ``weight_hh_l0``."""
    key = f"{prefix}weight_hh_l0"
    expected = "(4H, H) for an LSTM or (3H, H) for a GRU"
    if key not in module:
        raise ValueError(f"{where}: missing key {key!r}, expected {expected}; found {sorted(module)}")
    shape = np.shape(module[key])
    if len(shape) != 2 or shape[1] < 1:
        raise ValueError(f"{where}: {key} must have shape {expected}; got {shape}")
    rows, H = shape
    if rows == H:
        raise ValueError(f"{where}: {key} has shape {shape} = (H, H): an nn.RNN (Elman) layer, which gradflow does "
                         f"not read; it reads nn.LSTM (4H, H) and nn.GRU (3H, H)")
    gates = rows // H if rows % H == 0 else 0
    if gates not in CELL_BY_GATES:
        raise ValueError(f"{where}: {key} must have shape (4H, H) for an LSTM or (3H, H) for a GRU; got {shape}")
    return CELL_BY_GATES[gates], gates


def _layer(module: dict, prefix: str, suffix: str, *, cell: str, gates: int, bias: bool, width: int | None,
           below: str, where: str) -> Layer:
    """One direction of one level: ``suffix`` ``_l<k>`` or ``_l<k>_reverse``; ``width``: the features of the level
    ``below`` (None for the bottom level, whose input width the file gives)."""
    key = {name: f"{prefix}{name}{suffix}" for name in PARAMETER_NAMES}
    g = f"{gates}H"
    hh = np.shape(module.get(key["weight_hh"], ()))
    H = hh[1] if len(hh) == 2 else np.shape(module[f"{prefix}weight_hh_l0"])[1]
    U = checked_array(module, key["weight_hh"], (gates * H, H), where, f"({g}, H)")
    ih = np.shape(module.get(key["weight_ih"], ()))
    if width is None:
        W = checked_array(module, key["weight_ih"], (gates * H, ih[1] if len(ih) == 2 else 0), where, f"({g}, D)")
    else:
        if len(ih) == 2 and ih[1] != width:
            raise ValueError(f"{where}: {key['weight_ih']} must have shape ({g}, {width}) to take the {width} "
                             f"features of level {below}; got {ih}")
        W = checked_array(module, key["weight_ih"], (gates * H, width), where, f"({g}, {width})")
    b_ih, b_hh = (checked_array(module, key[name], (gates * H,), where, f"({g},)") if bias
                  else np.zeros(gates * H, np.float32) for name in ("bias_ih", "bias_hh"))
    W, U = np.ascontiguousarray(W.T), np.ascontiguousarray(U.T)
    params = LSTMParams(W, U, b_ih + b_hh) if cell == "lstm" else GRUParams(W, U, b_ih, b_hh)
    return Layer(params, cell=cell, direction="backward" if suffix.endswith("_reverse") else "forward")


def _levels(module: dict, prefix: str, where: str) -> list[Level]:
    """The levels l0, l1, ... of the recurrent module at ``prefix``, each a forward layer or a bidirectional pair;
    every key of the module must be read."""
    projections = sorted(key for key in module if (m := RNN_KEY.fullmatch(key)) and m["name"] == "weight_hr")
    if projections:
        raise ValueError(f"{where}: {projections[0]} is an LSTM projection: proj_size is not supported (gradflow "
                         f"reads LSTMs whose hidden state is their output)")
    cell, gates = _cell_kind(module, prefix, where)
    bias = any(key.startswith((f"{prefix}bias_ih_l", f"{prefix}bias_hh_l")) for key in module)
    levels: list[Level] = []
    read: set[str] = set()
    width = None
    k = 0
    while k == 0 or any(f"{prefix}{name}_l{k}" in module for name in PARAMETER_NAMES):
        suffixes = [f"_l{k}"] + ([f"_l{k}_reverse"] if any(f"{prefix}{name}_l{k}_reverse" in module
                                                           for name in PARAMETER_NAMES) else [])
        layers = [_layer(module, prefix, suffix, cell=cell, gates=gates, bias=bias, width=width, below=f"l{k - 1}",
                         where=where) for suffix in suffixes]
        if len(layers) == 2 and layers[1].hidden_size != layers[0].hidden_size:
            raise ValueError(f"{where}: {prefix}weight_hh_l{k}_reverse must have the shape of {prefix}weight_hh_l{k}, "
                             f"{(gates * layers[0].hidden_size, layers[0].hidden_size)}; got "
                             f"{np.shape(module[f'{prefix}weight_hh_l{k}_reverse'])}")
        read |= {f"{prefix}{name}{suffix}" for name in PARAMETER_NAMES for suffix in suffixes}
        levels.append(Bidirectional(*layers) if len(layers) == 2 else layers[0])
        width = sum(layer.hidden_size for layer in layers)
        k += 1
    unknown = sorted(set(module) - read)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in the recurrent module {_module_name(prefix)!r}; "
                         f"understood: PyTorch nn.LSTM / nn.GRU names weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, "
                         f"bias_hh_l<k> (suffix _reverse for a backward layer) for levels l0, l1, ... in order")
    if levels[0].input_size < 1:
        raise ValueError(f"{where}: {prefix}weight_ih_l0 must have at least one input feature; got shape "
                         f"{np.shape(module[f'{prefix}weight_ih_l0'])}")
    return levels


def _head(arrays: dict, owned: set[str], width: int, head: str | None, head_output: str, where: str) -> Head | None:
    """The Linear module reading the top level's ``width`` features (see the module docstring), or None."""
    linears = {key[: -len("weight")]: np.shape(a) for key, a in arrays.items()
               if key not in owned and (key == "weight" or key.endswith(".weight")) and np.ndim(a) == 2
               and "embed" not in key.lower()}  # an nn.Embedding (vocab, dim) is never the head
    fitting = sorted(prefix for prefix, shape in linears.items() if shape[1] == width)
    described = [f"{_module_name(p)!r} {linears[p]}" for p in fitting]
    if head is None:
        if not fitting:
            return None
        if len(fitting) > 1:
            raise ValueError(f"{where}: {len(fitting)} Linear layers read the top level's {width} features: "
                             f"{', '.join(described)}; name the head with head=PREFIX (CLI option --head-layer), "
                             f"e.g. head={_module_name(fitting[0])!r}")
        prefix = fitting[0]
        after = sorted(p for p, shape in linears.items() if p != prefix and shape[1] == linears[prefix][0])
        if after:  # fc1 -> act -> fc2: fc1's outputs are not the predictions; never judge them as if they were
            raise ValueError(f"{where}: the Linear {_module_name(prefix)!r} {linears[prefix]} reading the top level "
                             f"seems to feed {', '.join(f'{_module_name(p)!r} {linears[p]}' for p in after)}: gradflow "
                             f"reads a head of one Linear layer, not a multi-layer head; if those layers do not follow "
                             f"it, name the head with head=PREFIX (CLI option --head-layer)")
    else:
        prefix = _as_prefix(head, "head")
        if prefix not in fitting:
            reason = (f"its weight {prefix}weight {linears[prefix]} reads {linears[prefix][1]} features, not the top "
                      f"level's {width}" if prefix in linears else "no Linear layer has that name")
            raise ValueError(f"{where}: head={head!r}: {reason}; Linear layers that read the top level: "
                             f"{', '.join(described) or 'none'}")
    k = linears[prefix][0]
    weight = checked_array(arrays, f"{prefix}weight", (k, width), where, "(k, F)")
    bias = (checked_array(arrays, f"{prefix}bias", (k,), where, "(k,)") if f"{prefix}bias" in arrays
            else np.zeros(k, np.float32))
    return Head(np.ascontiguousarray(weight.T), bias, head_output)


def model_from_state_dict(state: Mapping, *, where: str = "state dict", rnn: str | None = None,
                          head: str | None = None, head_output: str = "linear") -> Model:
    """A :class:`gradflow.lstm.model.Model` from a PyTorch state dict (see the module docstring), validated.

    Args:
      state: parameter name -> tensor or array (``model.state_dict()``, or what :func:`read_torch_file` returns).
      where: what to name in errors (a file's path).
      rnn: the key prefix of the recurrent module to read (``"encoder.rnn"`` or ``"encoder.rnn."``); needed only
        when the state dict holds several.
      head: the key prefix of the Linear head; needed only when several Linear layers read the top level.
      head_output: the head's output function, one of :data:`gradflow.lstm.model.HEAD_OUTPUTS` (a state dict
        does not say it).

    Returns:
      The model, float32 numpy arrays as leaves; tanh and sigmoid activations, as PyTorch's.

    Raises:
      ValueError: no recurrent module, several and no ``rnn``, several fitting heads and no ``head``, an unknown
        ``rnn`` or ``head``, a projection (``proj_size``), a missing key, a wrong shape or dtype, a non-finite
        value, or an unknown key in the recurrent module; the message names the full key.

    Example:
      >>> import numpy as np
      >>> H, D = 3, 2
      >>> state = {"lstm.weight_ih_l0": np.zeros((4 * H, D)), "lstm.weight_hh_l0": np.zeros((4 * H, H)),
      ...          "fc.weight": np.zeros((1, H)), "fc.bias": np.zeros(1), "embedding.weight": np.zeros((10, D))}
      >>> model = model_from_state_dict(state, head_output="sigmoid")
      >>> model.input_size, model.hidden_size, model.layers[0].cell, model.head.kernel.shape, model.head.output
      (2, 3, 'lstm', (3, 1), 'sigmoid')
    """
    if head_output not in HEAD_OUTPUTS:
        raise ValueError(f"head_output={head_output!r} is not known; expected one of {list(HEAD_OUTPUTS)}")
    arrays = _state_arrays(state, where)
    prefix = _chosen_prefix(arrays, rnn, where)
    levels = _levels(_module_arrays(arrays, prefix), prefix, where)
    owned = {key for p in recurrent_modules(arrays) for key in _module_arrays(arrays, p)}
    top = levels[-1]
    width = 2 * top.hidden_size if isinstance(top, Bidirectional) else top.hidden_size
    return Model(tuple(levels), _head(arrays, owned, width, head, head_output, where))


def _import_torch():
    try:
        import torch
    except ImportError as err:
        raise TorchNotInstalledError(f"reading PyTorch files needs torch, which is not installed: {INSTALL_HINT}") from err
    return torch


def _state_dict_in(obj, where: str) -> Mapping:
    """The state dict in what ``torch.load`` returned: itself, or (repeatedly) a checkpoint's entry under one of
    :data:`CHECKPOINT_KEYS`."""
    while isinstance(obj, Mapping):
        inner = next((key for key in CHECKPOINT_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            break
        obj = obj[inner]
    if not (isinstance(obj, Mapping) and any(hasattr(value, "detach") for value in obj.values())):
        found = f"a dict with keys {sorted(map(str, obj))[:12]}" if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{where}: holds no state dict (parameter names -> tensors) but {found}; expected "
                         f"torch.save(model.state_dict(), path) or a checkpoint dict holding one under one of "
                         f"{list(CHECKPOINT_KEYS)}")
    return obj


def _refused_global(err: Exception) -> str | None:
    """The class a weights-only load refused (``torch.save(model)`` pickles the model's class), or None."""
    match = re.search(r"GLOBAL (\S+)", str(err))
    return match[1] if match else None


def read_torch_file(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict in a PyTorch file, as numpy arrays by key.

    Loads with ``torch.load(path, map_location="cpu", weights_only=True)``, which never runs code from the file, and
    unwraps what people save: a bare state dict, or a checkpoint dict holding one under ``model_state_dict``,
    ``state_dict`` (PyTorch Lightning, keys prefixed ``model.``), ``model`` or ``net``.

    Raises:
      FileNotFoundError: no file at ``path``.
      TorchNotInstalledError: torch is not installed (an ImportError and a ValueError naming
        ``pip install "gradflow[torch]"``).
      ValueError: not a PyTorch file, a pickled whole module (``torch.save(model)``: save ``model.state_dict()``
        instead) or other objects, or no state dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PyTorch file {str(path)!r} does not exist")
    torch = _import_torch()
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_global(err)
        if refused is None:
            raise ValueError(f"{path}: not a readable PyTorch file (torch.load(weights_only=True) failed: "
                             f"{str(err).split('WeightsUnpickler error:')[-1].strip().splitlines()[0]})") from None
        raise ValueError(f"{path}: holds the object {refused}, which gradflow does not load: it reads files with "
                         f"torch.load(weights_only=True), which never runs code from a file. A whole pickled model "
                         f"(torch.save(model)) is not read: save its weights with torch.save(model.state_dict(), "
                         f"{path.name!r})") from None
    except (RuntimeError, KeyError, EOFError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable PyTorch file ({type(err).__name__}: {err})") from None
    return _state_arrays(_state_dict_in(loaded, str(path)), str(path))


def load_torch_model(path: str | Path, *, rnn: str | None = None, head: str | None = None,
                     head_output: str = "linear") -> Model:
    """The model in a PyTorch file: :func:`model_from_state_dict` of :func:`read_torch_file`, errors naming the file.

    Example (``model.fc`` reads ``h_n`` of the top level; its output function is the caller's to say)::

      torch.save(model.state_dict(), "model.pt")
      model = load_torch_model("model.pt", head_output="sigmoid")
    """
    return model_from_state_dict(read_torch_file(path), where=str(path), rnn=rnn, head=head, head_output=head_output)


def model_from_torch_module(module, *, rnn: str | None = None, head: str | None = None,
                            head_output: str = "linear") -> Model:
    """The model held by a live PyTorch ``nn.Module`` (any device): :func:`model_from_state_dict` of its
    ``state_dict()``."""
    return model_from_state_dict(module.state_dict(), where=f"{type(module).__name__}.state_dict()", rnn=rnn,
                                 head=head, head_output=head_output)
