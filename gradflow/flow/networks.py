r"""Lag profiles of whole networks (stacked, bidirectional, LSTM or GRU) and of any recurrent cell.

For a :class:`gradflow.lstm.model.Model` with levels ``l = 1..L``, each layer's profile is its own recurrence with
its inputs (the hidden states of the level below on the data) held fixed:

.. math::

    P^{(l)}(k) = \log_{10} \left\| \frac{\partial h^{(l)}_T}{\partial h^{(l)}_{T-k}} \right\|_F, \quad k = 1..T,

with ``c`` held fixed for an LSTM (``wrt="h"``) or the full state (``wrt="state"``); a backward layer is the same
quantity on its own reversed time axis. For a stack of forward layers the input sensitivity runs end to end,
through every layer, on the joint state ``S = (s^{(1)}, ..., s^{(L)})``:

.. math::

    Q(k) = \log_{10} \left\| \frac{\partial h^{(L)}_T}{\partial x_{T-k}} \right\|_F, \quad k = 0..T-1.

Both come from the renormalised engine (:mod:`gradflow.flow.engine`): exact to rounding at any depth. LSTM and
GRU layers take their closed-form pullbacks (:attr:`gradflow.lstm.model.CellKind.pullback`); the input
sensitivity, batched vector-Jacobian products through the whole stack.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradflow.flow.engine import WRT, lstm_lag_profile, step_input_norms, step_lag_norms
from gradflow.lstm.model import CELLS, Layer, Model, level_inputs, level_layers

Array = jax.Array


class LayerProfile(NamedTuple):
    """One recurrent layer's lag profile.

    Attributes:
      index: the level (both directions of a bidirectional level share it), bottom = 0.
      direction: ``"forward"`` or ``"backward"``.
      cell: the cell family, ``"lstm"`` or ``"gru"``.
      hidden_size: H of this layer (per direction).
      log10_norm_h: (T,) by lag, entry ``k - 1`` for lag k.
    """

    index: int
    direction: str
    cell: str
    hidden_size: int
    log10_norm_h: np.ndarray


class ModelProfile(NamedTuple):
    """Every layer's lag profile and, for a stack of forward layers, the input sensitivity.

    Attributes:
      layers: one :class:`LayerProfile` per layer, bottom first, forward before backward.
      input_sensitivity: (T,) with entry ``k`` for ``x_{T-k}``, k = 0..T-1; None for a model with a backward layer.
      wrt: ``"h"`` or ``"state"``.
    """

    layers: tuple[LayerProfile, ...]
    input_sensitivity: np.ndarray | None
    wrt: str

    @property
    def cells(self) -> tuple[str, ...]:
        """The distinct cell families, bottom first."""
        return tuple(dict.fromkeys(layer.cell for layer in self.layers))


def _layer_profile(layer: Layer, inputs: Array, wrt: str) -> Array:
    """One layer's profile (T,) by lag, its inputs (T, D) fixed, read in its own direction."""
    xs = inputs[::-1] if layer.direction == "backward" else inputs
    H = layer.hidden_size
    dtype = jnp.result_type(inputs)
    kind = CELLS[layer.cell]
    s0 = jnp.zeros(kind.state_size(H), dtype)
    dims = slice(0, H) if wrt == "h" else slice(None)
    if layer.cell == "lstm":
        return lstm_lag_profile(layer.params, s0, xs, dims, layer.activation, layer.recurrent_activation)
    pullback = None if kind.pullback is None else kind.pullback(layer)  # the GRU's closed form: 1.2-2.2x (bench_gru)
    return step_lag_norms(kind.step(layer), s0, xs, out_dims=dims, in_dims=dims, pullback=pullback)


def _stack_step(layers: tuple[Layer, ...]):
    """The joint recurrence of a stack of forward layers on ``S = (s^{(1)}, ..., s^{(L)})``, and the slice of
    the top layer's ``h`` in it."""
    sizes = [CELLS[layer.cell].state_size(layer.hidden_size) for layer in layers]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    steps = [CELLS[layer.cell].step(layer) for layer in layers]

    def step(S, x):
        parts, inputs = [], x
        for l, layer in enumerate(layers):
            s = steps[l](S[starts[l]:starts[l + 1]], inputs)
            parts.append(s)
            inputs = s[: layer.hidden_size]
        return jnp.concatenate(parts)

    top = slice(int(starts[-2]), int(starts[-2]) + layers[-1].hidden_size)
    return step, int(starts[-1]), top


@functools.partial(jax.jit, static_argnames=("wrt", "sensitivity"))
def _profiles(model: Model, xs: Array, wrt: str, sensitivity: bool):
    inputs = level_inputs(model, xs)
    layers = [_layer_profile(layer, inputs[depth], wrt)
              for depth, level in enumerate(model.layers) for layer in level_layers(level)]
    if not sensitivity:
        return layers, None
    step, n, top = _stack_step(tuple(model.layers))
    return layers, step_input_norms(step, jnp.zeros(n, xs.dtype), xs, out_dims=top)


def model_profiles(model: Model, xs: Array, *, wrt: str = "h") -> ModelProfile:
    r"""Lag profiles of every layer of ``model`` and its end-to-end input sensitivity (see the module docstring).

    Args:
      model: a :class:`gradflow.lstm.model.Model`, one variant (a head, if any, is not used).
      xs: inputs (T, D), or (N, T, D): then every profile is the mean over the N sequences of the log10 norms.
        The computation follows ``xs``'s dtype (the model's weights are cast to it).
      wrt: ``"h"`` (an LSTM's ``c`` held fixed) or ``"state"``; the same for a GRU, whose state is ``h``.

    Returns:
      A :class:`ModelProfile` of numpy arrays.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> lower, upper = init_lstm(jax.random.key(0), 2, 3), init_lstm(jax.random.key(1), 3, 4)
      >>> profile = model_profiles(Model((Layer(lower), Layer(upper))), jnp.ones((6, 2)))
      >>> [(p.index, p.hidden_size, p.log10_norm_h.shape) for p in profile.layers], profile.input_sensitivity.shape
      ([(0, 3, (6,)), (1, 4, (6,))], (6,))
    """
    if wrt not in WRT:
        raise ValueError(f"wrt={wrt!r} is not known; expected one of {list(WRT)}")
    xs = jnp.asarray(xs)
    if xs.ndim not in (2, 3) or xs.shape[-1] != model.input_size or xs.shape[-2] < 1:
        raise ValueError(f"xs must have shape (T, {model.input_size}) or (N, T, {model.input_size}) with T >= 1 for "
                         f"this model; got {xs.shape}")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(f"xs must have a floating dtype; got {xs.dtype}")
    model = jax.tree.map(lambda a: jnp.asarray(a, xs.dtype), model)
    sensitivity = all(isinstance(level, Layer) and level.direction == "forward" for level in model.layers)
    if xs.ndim == 2:
        layers, q = _profiles(model, xs, wrt, sensitivity)
    else:
        layers, q = jax.vmap(lambda x: _profiles(model, x, wrt, sensitivity))(xs)
        layers = [profile.mean(0) for profile in layers]
        q = None if q is None else q.mean(0)
    described = [(depth, layer) for depth, level in enumerate(model.layers) for layer in level_layers(level)]
    return ModelProfile(
        tuple(LayerProfile(depth, layer.direction, CELLS[layer.cell].family, layer.hidden_size, np.asarray(p))
              for (depth, layer), p in zip(described, layers)),
        None if q is None else np.asarray(q),
        wrt,
    )


def cell_lag_norms(
    cell: Callable[[Any, Array], tuple[Any, Any]],
    carry: Any,
    xs: Array,
    *,
    wrt: Callable[[Any], Any] | None = None,
) -> Array:
    r"""Lag profile of any recurrent cell ``cell(carry, x) -> (carry, y)`` with a pytree carry.

    ``log10 || d w(carry_T) / d w(carry_{T-k}) ||_F`` for k = 1..T, by lag, where ``w`` picks the measured part of
    the carry (default: all of it), the rest held fixed; through the renormalised engine, exact at any depth.

    Args:
      cell: a pure JAX function, as Flax's cells and ``nnx.RNN`` take them (``y`` is ignored).
      carry: the initial carry, any pytree of arrays (one sequence, no batch axis).
      xs: inputs (T, ...), scanned over the leading axis.
      wrt: ``carry -> subtree`` selecting the measured leaves, e.g. ``lambda carry: carry[1]`` for the ``h`` of
        Flax's ``(c, h)``; None for the whole carry.

    Returns:
      (T,), entry ``k - 1`` for lag k.

    Example (a GRU written as a cell):
      >>> import jax.numpy as jnp
      >>> from gradflow.lstm.gru import GRUParams, gru_step
      >>> p = GRUParams(jnp.zeros((1, 6)), jnp.zeros((2, 6)), jnp.zeros(6), jnp.zeros(6))
      >>> cell = lambda h, x: (gru_step(p, h, x),) * 2
      >>> [round(float(v), 4) for v in cell_lag_norms(cell, jnp.zeros(2), jnp.ones((2, 1)))]  # sqrt(2) / 2^k
      [-0.1505, -0.4515]
    """
    flat, unravel = ravel_pytree(carry)
    if flat.ndim != 1 or flat.size == 0:
        raise ValueError(f"carry must hold at least one array entry; got {jax.tree.structure(carry)}")
    if wrt is None:
        dims = slice(None)
    else:
        positions = unravel(jnp.arange(flat.size).astype(flat.dtype))
        dims = jnp.asarray(np.asarray(ravel_pytree(wrt(positions))[0]).round().astype(np.int64))
        if dims.size == 0:
            raise ValueError("wrt selects no entries of the carry")

    def step(s, x):
        return ravel_pytree(cell(unravel(s), x)[0])[0]

    return step_lag_norms(step, flat, jnp.asarray(xs), out_dims=dims, in_dims=dims)
