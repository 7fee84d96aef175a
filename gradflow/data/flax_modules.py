r"""Flax recurrent networks as a :class:`gradflow.lstm.model.Model`: NNX modules, or Linen parameter trees.

Flax's cells compute, on the carry ``(c, h)`` (LSTM) or ``h`` (GRU), with dense layers ``W_g x (+ b_g)`` on the
input and ``U_g h (+ \beta_g)`` on the state per gate ``g``:

.. math::

    \text{LSTM:}\quad (i, f, g, o) = (\sigma, \sigma, \mathrm{act}, \sigma)(x W + h U + b), \quad
    c' = f \odot c + i \odot g, \quad h' = o \odot \mathrm{act}(c')

    \text{GRU:}\quad r, z = \sigma(x W_{r,z} + b_{r,z} + h U_{r,z} + \beta_{r,z}), \quad
    n = \mathrm{act}(x W_n + b_n + r \odot (h U_n + \beta_n)), \quad h' = (1 - z) \odot n + z \odot h

which is gradflow's ``"lstm"`` and ``"gru"`` (reset after) with the gate blocks concatenated in Flax's order
(i, f, g, o) and (r, z, n), the LSTM's biases summed (``b = b_input + b_hidden``) and the GRU's kept apart
(``b`` the input denses' biases, ``β`` the hidden denses', zero where a dense has none). Read:

- NNX: ``LSTMCell`` (denses ``ii, if_, ig, io`` and ``hi, hf, hg, ho``), ``OptimizedLSTMCell`` and ``GRUCell``
  (fused ``dense_i``, ``dense_h``), alone or in an ``RNN``; a ``Bidirectional`` of two RNNs that concatenates;
  a list, tuple or ``Sequential`` of these (a stack, bottom first), optionally ending in an ``nnx.Linear`` head.
  The activations are the cell's ``activation_fn`` and ``gate_fn``. An ``RNN(reverse=True)`` is a backward layer;
  one without ``keep_order`` hands the levels above its outputs in reversed time, so they read the sequence
  backwards: gradflow records each layer's direction in true time, and its hidden states are in true time order
  (Flax's output of such a stack is gradflow's reversed in time; the final carries agree).
- Linen parameter trees (what ``module.init`` returns, with or without the ``"params"`` level): a cell's dict
  (``LSTMCell`` and ``OptimizedLSTMCell``: ``ii, if, ig, io, hi, hf, hg, ho``; ``GRUCell``: ``ir, iz, in, hr, hz,
  hn``), an ``RNN``'s ``{"cell": ...}``, a ``Bidirectional``'s ``{"forward_rnn", "backward_rnn"}``, or a dict of
  several levels (ordered by their names' trailing integers when they share a prefix, as ``RNN_0, RNN_1`` or
  ``layers_0, layers_1``, else by how their widths chain) and at most one dense ``{kernel, bias}``, the head. A
  tree says nothing of activations or directions: give ``activation`` / ``recurrent_activation``, and
  ``directions`` where a level is reversed (else every layer is read forward).

Parameters keep their dtype (float64 modules give a float64 model) after checks of shape and finiteness whose
errors name the parameter's path. The head reads :func:`gradflow.lstm.model.final_state` (Flax's final carry
``h``, concatenated forward first for a bidirectional top).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import nnx

from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS, LSTMParams
from gradflow.lstm.gru import GRUParams
from gradflow.lstm.model import Bidirectional, Head, Layer, Level, Model

#: Linen cells' dense names: (input denses, hidden denses) in gate order, by gradflow cell.
LINEN_CELLS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lstm": (("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho")),
    "gru": (("ir", "iz", "in"), ("hr", "hz", "hn")),
}
GATES = {"lstm": 4, "gru": 3}
NNX_CELLS = (nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell)


class Dense(NamedTuple):
    """One dense layer as read: where it is, its kernel (in, out) and its bias (out,) or None."""

    path: str
    kernel: Any
    bias: Any


class Settings(NamedTuple):
    """What a Linen tree does not say, and the cell kind the caller expects (None: any)."""

    activation: str
    recurrent_activation: str
    cell: str | None


def _value(leaf: Any) -> Any:
    """The array an NNX variable holds, or the leaf itself."""
    return leaf[...] if isinstance(leaf, nnx.Variable) else leaf


def _checked(value: Any, path: str, shape: tuple[int, ...], expected: str) -> np.ndarray:
    """``value`` as a numpy array of its own floating dtype, after checking its shape and finiteness."""
    a = np.asarray(_value(value))
    if not jnp.issubdtype(a.dtype, jnp.floating):
        raise ValueError(f"{path} must hold floating-point numbers {expected}; got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{path} must have shape {expected} = {shape}; got {a.shape}")
    if not np.isfinite(a.astype(np.float64)).all():
        raise ValueError(f"{path} holds {int((~np.isfinite(a.astype(np.float64))).sum())} non-finite values")
    return a


def _rows(dense: Dense, what: str) -> int:
    shape = np.shape(_value(dense.kernel))
    if len(shape) != 2:
        raise ValueError(f"{dense.path}.kernel must be a 2-D {what} kernel; got shape {shape}")
    return shape[0]


def _stacked(denses: Sequence[Dense], rows: int, width: int, row_name: str) -> tuple[np.ndarray, np.ndarray]:
    """The kernels (rows, width) and the biases (width,) of ``denses`` concatenated along the output axis (each
    dense holds ``width / len(denses)`` outputs), zeros where a dense has no bias; one dtype throughout."""
    part = width // len(denses)
    kernels = [_checked(d.kernel, f"{d.path}.kernel", (rows, part), f"({row_name}, {part})") for d in denses]
    biases = [np.zeros(part, kernels[0].dtype) if d.bias is None else _checked(d.bias, f"{d.path}.bias", (part,),
                                                                               f"({part},)") for d in denses]
    for dense, a in zip(denses * 2, kernels + biases):
        if a.dtype != kernels[0].dtype:
            raise ValueError(f"{dense.path} holds {a.dtype} parameters beside {kernels[0].dtype} ones ({denses[0].path}); "
                             f"a layer's parameters share one dtype")
    return np.concatenate(kernels, axis=1), np.concatenate(biases)


def _layer(kind: str, inputs: Sequence[Dense], hidden: Sequence[Dense], direction: str, activation: str,
           recurrent_activation: str) -> Layer:
    """A gradflow layer from a cell's input and hidden denses (one fused dense each, or one per gate)."""
    H = _rows(hidden[0], "hidden")
    D = _rows(inputs[0], "input")
    width = GATES[kind] * H
    W, b_input = _stacked(inputs, D, width, "D")
    U, b_hidden = _stacked(hidden, H, width, "H")
    if W.dtype != U.dtype:
        raise ValueError(f"{inputs[0].path} holds {W.dtype} parameters but {hidden[0].path} {U.dtype}; a layer's "
                         f"parameters share one dtype")
    params = LSTMParams(W, U, b_input + b_hidden) if kind == "lstm" else GRUParams(W, U, b_input, b_hidden)
    return Layer(params, cell=kind, direction=direction, activation=activation,
                 recurrent_activation=recurrent_activation)


def _function_name(fn: Callable, table: dict[str, Callable], path: str, role: str) -> str:
    for name, known in table.items():
        if fn is known:
            return name
    supported = {"cell activation": "jnp.tanh / jax.nn.tanh, jax.nn.relu, jax.nn.soft_sign",
                 "gate function": "jax.nn.sigmoid, jax.nn.hard_sigmoid"}[role]
    raise ValueError(f"{path}: {getattr(fn, '__name__', repr(fn))} is not a supported {role}; supported: {supported}")


def _check_kind(kind: str, settings: Settings, path: str) -> None:
    if settings.cell is not None and settings.cell != kind:
        raise ValueError(f"{path} is a {kind.upper()} cell but cell={settings.cell!r} was given")


def _nnx_dense(linear: nnx.Linear, path: str) -> Dense:
    return Dense(path, linear.kernel, linear.bias)


def _nnx_layer(cell: nnx.Module, path: str, direction: str, settings: Settings) -> Layer:
    """A layer from an NNX cell, its activations read from the cell."""
    if not isinstance(cell, NNX_CELLS):
        raise TypeError(f"{path} is a {type(cell).__name__}; supported cells: "
                         f"{[c.__name__ for c in NNX_CELLS]}")
    kind = "gru" if isinstance(cell, nnx.GRUCell) else "lstm"
    _check_kind(kind, settings, path)
    if isinstance(cell, nnx.LSTMCell):
        inputs = [_nnx_dense(getattr(cell, n), f"{path}.{n}") for n in ("ii", "if_", "ig", "io")]
        hidden = [_nnx_dense(getattr(cell, n), f"{path}.{n}") for n in ("hi", "hf", "hg", "ho")]
    else:
        inputs, hidden = [_nnx_dense(cell.dense_i, f"{path}.dense_i")], [_nnx_dense(cell.dense_h, f"{path}.dense_h")]
    activation = _function_name(cell.activation_fn, ACTIVATIONS, f"{path}.activation_fn", "cell activation")
    gate = _function_name(cell.gate_fn, RECURRENT_ACTIVATIONS, f"{path}.gate_fn", "gate function")
    return _layer(kind, inputs, hidden, direction, activation, gate)


def _pair(forward: Layer, backward: Layer, path: str) -> Bidirectional:
    if (backward.hidden_size, backward.input_size) != (forward.hidden_size, forward.input_size):
        raise ValueError(f"{path}: the backward layer has hidden size {backward.hidden_size} and input size "
                         f"{backward.input_size}; gradflow's bidirectional levels need the forward layer's "
                         f"({forward.hidden_size}, {forward.input_size})")
    return Bidirectional(forward, backward)


def _concatenates(merge_fn: Callable) -> bool:
    a, b = jnp.arange(6.0).reshape(2, 3), 10.0 + jnp.arange(4.0).reshape(2, 2)
    try:
        merged = merge_fn(a, b)
    except Exception:  # noqa: BLE001 - any failure on the probe means it is not a concatenation
        return False
    return np.shape(merged) == (2, 5) and np.array_equal(np.asarray(merged), np.concatenate([a, b], axis=-1))


def _nnx_level(obj: nnx.Module, path: str, reversed_flow: bool, settings: Settings) -> tuple[Level, bool]:
    """An NNX cell, RNN or Bidirectional as a level, reading a sequence in reversed time if ``reversed_flow``;
    returns the level and whether its output sequence is in reversed time."""
    flip = {False: "forward", True: "backward"}
    if isinstance(obj, nnx.RNN):
        backward = bool(obj.reverse) != reversed_flow
        return _nnx_layer(obj.cell, f"{path}.cell", flip[backward], settings), reversed_flow != (
            bool(obj.reverse) and not obj.keep_order)
    if isinstance(obj, nnx.Bidirectional):
        if not _concatenates(obj.merge_fn):
            raise ValueError(f"{path}.merge_fn must concatenate the two directions (the default); got "
                             f"{getattr(obj.merge_fn, '__name__', repr(obj.merge_fn))}")
        if reversed_flow:
            raise ValueError(f"{path}: a Bidirectional above an RNN(reverse=True, keep_order=False) reads the sequence "
                             f"in reversed time and concatenates backward first; not supported (use keep_order=True)")
        for name in ("forward_rnn", "backward_rnn"):
            if not isinstance(getattr(obj, name), nnx.RNN):
                raise TypeError(f"{path}.{name} must be an nnx.RNN; got {type(getattr(obj, name)).__name__}")
        pair = _pair(_nnx_layer(obj.forward_rnn.cell, f"{path}.forward_rnn.cell", "forward", settings),
                     _nnx_layer(obj.backward_rnn.cell, f"{path}.backward_rnn.cell", "backward", settings), path)
        return pair, reversed_flow
    return _nnx_layer(obj, path, flip[reversed_flow], settings), reversed_flow


def _is_linen_dense(tree: Any) -> bool:
    return isinstance(tree, Mapping) and "kernel" in tree and set(tree) <= {"kernel", "bias"}


def _linen_dense(tree: Mapping, path: str) -> Dense:
    return Dense(path, tree["kernel"], tree.get("bias"))


def _linen_layer(tree: Mapping, path: str, direction: str, settings: Settings) -> Layer | None:
    """A layer from a Linen cell's dict, or None if ``tree`` is no cell's."""
    for kind, (inputs, hidden) in LINEN_CELLS.items():
        if isinstance(tree, Mapping) and set(tree) == set(inputs + hidden):
            _check_kind(kind, settings, path)
            for name in inputs + hidden:
                if not _is_linen_dense(tree[name]):
                    raise ValueError(f"{path}/{name} must be a dense {{kernel, bias}}; got keys "
                                     f"{sorted(tree[name]) if isinstance(tree[name], Mapping) else type(tree[name])}")
            return _layer(kind, [_linen_dense(tree[n], f"{path}/{n}") for n in inputs],
                          [_linen_dense(tree[n], f"{path}/{n}") for n in hidden], direction,
                          settings.activation, settings.recurrent_activation)
    return None


def _linen_level(tree: Any, path: str, settings: Settings) -> Level | None:
    """A Linen cell's, RNN's or Bidirectional's parameters as a level, or None if ``tree`` is none of them."""
    if not isinstance(tree, Mapping):
        return None
    if set(tree) == {"cell"}:
        return _linen_layer(tree["cell"], f"{path}/cell", "forward", settings) or _unknown(tree["cell"], f"{path}/cell")
    if set(tree) == {"forward_rnn", "backward_rnn"}:
        layers = []
        for name in ("forward_rnn", "backward_rnn"):
            sub, where = tree[name], f"{path}/{name}"
            if not (isinstance(sub, Mapping) and set(sub) == {"cell"}):
                _unknown(sub, where)
            layer = _linen_layer(sub["cell"], f"{where}/cell", name.split("_")[0], settings)
            layers.append(layer or _unknown(sub["cell"], f"{where}/cell"))
        return _pair(*layers, path)
    return _linen_layer(tree, path, "forward", settings)


def _unknown(tree: Any, path: str):
    found = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
    raise ValueError(f"{path}: unknown subtree {found}; expected a Linen LSTMCell / OptimizedLSTMCell "
                     f"{list(sum(LINEN_CELLS['lstm'], ()))}, a GRUCell {list(sum(LINEN_CELLS['gru'], ()))}, an RNN "
                     f"{{'cell': ...}}, a Bidirectional {{'forward_rnn', 'backward_rnn'}}, or one dense head "
                     f"{{'kernel', 'bias'}}")


def _width(level: Level) -> int:
    return 2 * level.hidden_size if isinstance(level, Bidirectional) else level.hidden_size


def _chains(levels: Sequence[Level]) -> bool:
    return all(upper.input_size == _width(lower) for lower, upper in itertools.pairwise(levels))


def _ordered(named: dict[str, Level], path: str) -> list[Level]:
    """A dict's levels bottom first: by their names' trailing integers when all share one prefix, else the one
    order in which their widths chain."""
    parts = {name: re.fullmatch(r"(.*?)(\d+)", name) for name in named}
    if all(parts.values()) and len({m.group(1) for m in parts.values()}) == 1:
        return [named[name] for name in sorted(named, key=lambda n: int(parts[n].group(2)))]
    chains = [order for order in itertools.permutations(named) if _chains([named[n] for n in order])]
    if len(chains) != 1:
        raise ValueError(f"{path}: cannot tell the order of the levels {sorted(named)} (their names do not number them "
                         f"and {len(chains)} orders chain their widths); pass them as a list, bottom first")
    return [named[name] for name in chains[0]]


def _linen_tree(tree: Mapping, settings: Settings) -> tuple[list[Level], Dense | None]:
    """The levels and the head of a Linen parameter tree."""
    path = "params" if "params" in tree else "tree"
    root = tree.get("params", tree)
    others = sorted(set(tree) - {"params"}) if "params" in tree else []
    if others:
        raise ValueError(f"tree: unknown collection(s) {others} beside 'params'; pass the 'params' tree")
    level = _linen_level(root, path, settings)
    if level is not None:
        return [level], None
    if not isinstance(root, Mapping) or not root:
        _unknown(root, path)
    named, heads = {}, []
    for name, sub in root.items():
        level = _linen_level(sub, f"{path}/{name}", settings)
        if level is not None:
            named[name] = level
        elif _is_linen_dense(sub):
            heads.append(_linen_dense(sub, f"{path}/{name}"))
        else:
            _unknown(sub, f"{path}/{name}")
    if not named:
        raise ValueError(f"{path}: no recurrent level found; keys {sorted(root)}")
    if len(heads) > 1:
        raise ValueError(f"{path}: more than one dense subtree ({[h.path for h in heads]}); a model has one head")
    return _ordered(named, path), heads[0] if heads else None


def _head(dense: Dense, top: Level, output: str) -> Head:
    F = _width(top)
    shape = np.shape(_value(dense.kernel))
    k = shape[-1] if len(shape) == 2 else 0
    kernel = _checked(dense.kernel, f"{dense.path}.kernel", (F, k), f"(F, k) with F = {F}, the width of the top level")
    bias = np.zeros(k, kernel.dtype) if dense.bias is None else _checked(dense.bias, f"{dense.path}.bias", (k,), "(k,)")
    return Head(kernel, bias, output)


def _as_head(obj: Any, path: str) -> Dense:
    if isinstance(obj, nnx.Linear):
        return _nnx_dense(obj, path)
    if _is_linen_dense(obj):
        return _linen_dense(obj, path)
    raise TypeError(f"{path} must be an nnx.Linear or a Linen dense {{kernel, bias}}; got {type(obj).__name__}")


def _elements(obj: Any) -> tuple[list[Any], str] | None:
    if isinstance(obj, nnx.Sequential):
        return list(obj.layers), "layers"
    if isinstance(obj, (list, tuple, nnx.List)):
        return list(obj), ""
    return None


def _directed(levels: list[Level], directions: Sequence[str]) -> list[Level]:
    """Linen levels given their directions in true time (a tree does not say)."""
    allowed = [("bidirectional",) if isinstance(level, Bidirectional) else ("forward", "backward") for level in levels]
    if len(directions) != len(levels):
        raise ValueError(f"directions must give one entry per level, bottom first: {len(levels)} from "
                         f"{[list(a) for a in allowed]}; got {list(directions)}")
    for i, direction in enumerate(directions):
        if direction not in allowed[i]:
            raise ValueError(f"directions[{i}]={direction!r}; level {i} is a {type(levels[i]).__name__}: "
                             f"expected one of {list(allowed[i])}")
    return [level if isinstance(level, Bidirectional) else level.replace(direction=direction)
            for level, direction in zip(levels, directions)]


def model_from_flax(obj: Any, *, head: Any = None, head_output: str = "linear", activation: str | None = None,
                    recurrent_activation: str | None = None, cell: str | None = None,
                    directions: Sequence[str] | None = None) -> Model:
    """A :class:`gradflow.lstm.model.Model` from Flax NNX modules or Linen parameter trees (see the module docstring).

    Args:
      obj: an NNX ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``RNN`` or ``Bidirectional``; a list, tuple or
        ``nnx.Sequential`` of these, bottom first, optionally ending in an ``nnx.Linear`` head; or a Linen parameter
        tree (a nested dict, with or without the ``"params"`` level), or a list of Linen levels' trees.
      head: an ``nnx.Linear`` or a Linen dense ``{kernel (F, k), bias (k,)}`` reading the final state, if ``obj``
        holds none.
      head_output: the head's output function (:data:`gradflow.lstm.model.HEAD_OUTPUTS`).
      activation, recurrent_activation: for Linen trees, the cell and gate activations (default ``"tanh"``,
        ``"sigmoid"``); an NNX cell carries its own, and giving them with one is an error.
      cell: ``"lstm"`` or ``"gru"`` to require that every layer is that cell (None: any).
      directions: for Linen trees, each level's direction in true time, bottom first: ``"backward"`` for a layer
        that reads the sequence last step first (an ``nn.RNN(reverse=True)``, or one above an
        ``nn.RNN(reverse=True, keep_order=False)``), else ``"forward"``; ``"bidirectional"`` for a pair. None:
        every layer forward. An NNX RNN says its own.

    Returns:
      The model; its leaves are numpy arrays of the parameters' own dtype.

    Raises:
      ValueError: an unsupported activation function or merge, an unknown Linen subtree, a wrong shape or a
        non-finite value; the message names the parameter's path.
      TypeError: an object that is no supported Flax module or parameter tree.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from flax import nnx
      >>> from gradflow.lstm.model import final_state
      >>> rnn = nnx.RNN(nnx.GRUCell(2, 3, rngs=nnx.Rngs(0)), return_carry=True)
      >>> model = model_from_flax(rnn)
      >>> xs = jnp.ones((5, 2))
      >>> bool(jnp.allclose(final_state(model, xs), rnn(xs[None])[0][0], atol=1e-6))
      True
    """
    if cell not in (None, "lstm", "gru"):
        raise ValueError(f"cell={cell!r} is not a Flax cell kind; expected None, 'lstm' or 'gru'")
    settings = Settings(activation or "tanh", recurrent_activation or "sigmoid", cell)
    elements = _elements(obj)
    items, prefix = elements if elements is not None else ([obj], "")
    if not items:
        raise ValueError("obj is an empty sequence; expected at least one recurrent level")
    where = (lambda i: f"{prefix}[{i}]") if elements is not None else (lambda i: type(obj).__name__)
    if any(isinstance(item, nnx.Module) for item in items) and (activation or recurrent_activation or directions):
        raise ValueError("activation / recurrent_activation / directions are for Linen trees; an NNX cell carries "
                         "its own activation_fn and gate_fn, an NNX RNN its reverse and keep_order")
    dense = None
    if len(items) > 1 and (isinstance(items[-1], nnx.Linear) or _is_linen_dense(items[-1])):
        dense = _as_head(items[-1], where(len(items) - 1))
        items = items[:-1]
    levels: list[Level] = []
    reversed_flow = False
    for i, item in enumerate(items):
        if isinstance(item, nnx.Module):
            level, reversed_flow = _nnx_level(item, where(i), reversed_flow, settings)
            levels.append(level)
        elif isinstance(item, Mapping) and elements is None:
            found, dense_in_tree = _linen_tree(item, settings)
            levels += found
            dense = dense_in_tree
        elif isinstance(item, Mapping):
            level = _linen_level(item, where(i), settings)
            levels.append(level if level is not None else _unknown(item, where(i)))
        else:
            raise TypeError(f"{where(i)}: a {type(item).__name__} is not a Flax recurrent module or parameter tree")
    if directions is not None:
        levels = _directed(levels, directions)
    for i, (lower, upper) in enumerate(itertools.pairwise(levels)):
        if upper.input_size != _width(lower):
            raise ValueError(f"level {i + 1} takes {upper.input_size} input features but level {i} gives "
                             f"{_width(lower)}")
    if head is not None:
        if dense is not None:
            raise ValueError(f"head= was given but obj already ends in a head ({dense.path})")
        dense = _as_head(head, "head")
    return Model(tuple(levels), None if dense is None else _head(dense, levels[-1], head_output))
