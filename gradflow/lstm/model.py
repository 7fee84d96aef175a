r"""One representation of an initialised or trained recurrent network: a stack of layers and an optional head.

A :class:`Model` is a pytree whose array leaves are exactly the trainable parameters; what fixes shapes or
Python control flow (cell kind, direction, activations, the head's output function) is static. So
``jax.value_and_grad``, optax updates and ``jax.vmap`` over a leading variants axis act on it unchanged,
and a new activation is a new compile while new weights are not. Training
(:mod:`gradflow.training.train`), weight files (:mod:`gradflow.data.weights`), diagnosis and the NNX shell
(:class:`gradflow.lstm.module.LSTM`) all hold a model as this.

The stack, for inputs ``x_1 .. x_T`` (``h^{(0)}_t = x_t``) and levels ``l = 1 .. L``:

.. math::

    \text{forward:}\quad h^{(l)}_t = \mathrm{cell}(h^{(l)}_{t-1}, h^{(l-1)}_t), \quad t = 1 .. T

    \text{backward:}\quad h^{(l)}_t = \mathrm{cell}(h^{(l)}_{t+1}, h^{(l-1)}_t), \quad t = T .. 1

    \text{bidirectional:}\quad h^{(l)}_t = [\overrightarrow{h}^{(l)}_t ; \overleftarrow{h}^{(l)}_t]

and the head reads the final state of each top-level layer, the state after the whole sequence in its
direction (``\phi = h_T`` forward, ``h_1`` backward: PyTorch's ``h_n``, Keras's ``return_sequences=False``):

.. math::

    z = \phi\, K + b, \qquad \hat y = \mathrm{out}(z), \quad \mathrm{out} \in \{\sigma, \mathrm{softmax}, \mathrm{id}\}

Every function here is pure and unbatched (one variant, one time-major sequence); callers vmap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from gradflow.lstm.cell import (
    LSTMParams,
    LSTMState,
    lstm_gates,
    lstm_step,
    resolve_activation,
    resolve_recurrent_activation,
    unroll,
)
from gradflow.lstm.gru import GRUParams, gru_gates, gru_pullback_fn, gru_step, gru_unroll

Array = jax.Array

#: Output functions of a head: the head's predictions are ``out(logits)``; each has its loss (:func:`head_loss`).
HEAD_OUTPUTS: tuple[str, ...] = ("sigmoid", "softmax", "linear")
#: Directions a layer reads its input sequence in.
DIRECTIONS: tuple[str, ...] = ("forward", "backward")


class CellKind(NamedTuple):
    """What a cell kind is to gradflow: its family, its hidden states and its recurrence on a flat state.

    Attributes:
      family: ``"lstm"`` or ``"gru"`` (what reports print as the layer's cell).
      params: the params pytree class the layer holds.
      hidden: ``hidden(layer, xs (T, D)) -> (T, H)``, the hidden states read forward.
      state_size: ``n(H)``, the size of the flat recurrent state ``s`` (2H for the LSTM's (h, c), H for a GRU).
      step: ``step(layer) -> (s_{t-1}, x_t) -> s_t`` on the flat state, ``h`` first (entries 0..H-1).
      gates: ``gates(layer, xs (T, D)) -> NamedTuple of (T, H)``, every step's gate values read forward, named and
        ordered as the kernel's column blocks (a NamedTuple keeps that order through ``vmap``, a dict would not) (a candidate is ``"cell"`` or ``"candidate"``; every other gate is a sigmoid gate).
      pullback: ``pullback(layer) -> (s_{t-1}, x_t, M) -> M ds_t/ds_{t-1}`` in closed form, or None for the
        engine's generic vector-Jacobian products (the LSTM's own fast path is the engine's ``lstm_lag_profile``).
    """

    family: str
    params: type
    hidden: Callable[[Layer, Array], Array]
    state_size: Callable[[int], int]
    step: Callable[[Layer], Callable[[Array, Array], Array]]
    gates: Callable[[Layer, Array], dict[str, Array]]
    pullback: Callable[[Layer], Callable[[Array, Array, Array], Array]] | None = None


def _activations(layer: Layer) -> dict:
    return {"activation": layer.activation, "recurrent_activation": layer.recurrent_activation}


def _lstm_hidden(layer: Layer, xs: Array) -> Array:
    return unroll(layer.params, xs, **_activations(layer)).h


def _lstm_gates(layer: Layer, xs: Array) -> tuple:
    return lstm_gates(layer.params, xs, **_activations(layer))


def _lstm_step(layer: Layer):
    H = layer.hidden_size

    def step(s, x):
        new = lstm_step(layer.params, LSTMState(s[:H], s[H:]), x, **_activations(layer))
        return jnp.concatenate([new.h, new.c])

    return step


def _gru_kind(reset_after: bool) -> CellKind:
    def hidden(layer, xs):
        return gru_unroll(layer.params, xs, reset_after=reset_after, **_activations(layer))

    def step(layer):
        return lambda h, x: gru_step(layer.params, h, x, reset_after=reset_after, **_activations(layer))

    def gates(layer, xs):
        return gru_gates(layer.params, xs, reset_after=reset_after, **_activations(layer))

    def pullback(layer):
        return gru_pullback_fn(layer.params, reset_after=reset_after, **_activations(layer))

    return CellKind("gru", GRUParams, hidden, lambda H: H, step, gates, pullback)


#: Cell kinds by name. ``"gru"`` resets after the recurrent product (PyTorch, Flax, cuDNN, Keras's default);
#: ``"gru_reset_before"`` is Cho et al.'s original (Keras ``reset_after=False``). A new cell is its params
#: pytree and one entry here.
CELLS: dict[str, CellKind] = {
    "lstm": CellKind("lstm", LSTMParams, _lstm_hidden, lambda H: 2 * H, _lstm_step, _lstm_gates),
    "gru": _gru_kind(True),
    "gru_reset_before": _gru_kind(False),
}


def _choice(value: str, options, argname: str, what: str) -> None:
    if value not in options:
        raise ValueError(f"{argname}={value!r} is not a known {what}; expected one of {list(options)}")


@flax.struct.dataclass
class Layer:
    """One recurrent layer: its parameters (the only pytree leaves) and what fixes its computation (static).

    Attributes:
      params: the cell's weights (:class:`gradflow.lstm.cell.LSTMParams` for ``cell="lstm"``,
        :class:`gradflow.lstm.gru.GRUParams` for the GRU kinds).
      cell: the cell kind, a key of :data:`CELLS`.
      direction: ``"forward"`` or ``"backward"`` (reads ``x_T`` first).
      activation, recurrent_activation: cell and gate activations (see :func:`gradflow.lstm.cell.lstm_step`).
    """

    params: LSTMParams | GRUParams
    cell: str = flax.struct.field(pytree_node=False, default="lstm")
    direction: str = flax.struct.field(pytree_node=False, default="forward")
    activation: str = flax.struct.field(pytree_node=False, default="tanh")
    recurrent_activation: str = flax.struct.field(pytree_node=False, default="sigmoid")

    def __post_init__(self):
        # Only static fields are checked: JAX rebuilds the node with placeholders (vmap axes, tracers) as leaves.
        _choice(self.cell, CELLS, "cell", "cell kind")
        _choice(self.direction, DIRECTIONS, "direction", "layer direction")
        resolve_activation(self.activation)
        resolve_recurrent_activation(self.recurrent_activation)
        expected = CELLS[self.cell].params
        if isinstance(self.params, (LSTMParams, GRUParams)) and not isinstance(self.params, expected):
            raise ValueError(f"a cell={self.cell!r} layer holds {expected.__name__}; got {type(self.params).__name__}")

    @property
    def input_size(self) -> int:
        return self.params.input_size

    @property
    def hidden_size(self) -> int:
        return self.params.hidden_size


@flax.struct.dataclass
class Bidirectional:
    """A forward and a backward layer reading the same input; their hidden states are concatenated."""

    forward: Layer
    backward: Layer

    def __post_init__(self):
        for name in ("forward", "backward"):
            if getattr(self, name).direction != name:
                raise ValueError(f"Bidirectional.{name} must be a {name} layer; got direction="
                                 f"{getattr(self, name).direction!r}")

    @property
    def input_size(self) -> int:
        return self.forward.input_size

    @property
    def hidden_size(self) -> int:
        return self.forward.hidden_size


#: A level of the stack: one layer, or a bidirectional pair.
Level = Layer | Bidirectional


@flax.struct.dataclass
class Head:
    """A dense head ``z = phi @ kernel + bias`` and its output function.

    Attributes:
      kernel: (F, k), F the width of the top level's output.
      bias: (k,).
      output: one of :data:`HEAD_OUTPUTS` (static).
    """

    kernel: Array
    bias: Array
    output: str = flax.struct.field(pytree_node=False, default="linear")

    def __post_init__(self):
        _choice(self.output, HEAD_OUTPUTS, "output", "head output")


@flax.struct.dataclass
class Model:
    """A stack of recurrent levels with an optional dense head: one pytree for any initialised or trained network.

    Attributes:
      layers: the levels, bottom first: :class:`Layer` or :class:`Bidirectional`.
      head: a :class:`Head`, or None.

    The sizes read the arrays' last axes, so they hold for a model with a leading variants axis too.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> layer = Layer(init_lstm(jax.random.key(0), 2, 3))
      >>> model = Model((layer,), Head(jnp.ones((3, 1)), jnp.zeros(1), "sigmoid"))
      >>> model.input_size, model.hidden_size, model.output_size
      (2, 3, 1)
      >>> predictions(model, jnp.ones((5, 2))).shape
      (1,)
    """

    layers: tuple[Level, ...]
    head: Head | None = None

    def __post_init__(self):
        if (not isinstance(self.layers, tuple) or not self.layers
                or not all(isinstance(level, (Layer, Bidirectional)) for level in self.layers)):
            raise ValueError(f"layers must be a non-empty tuple of Layer or Bidirectional; got {self.layers!r}")

    @property
    def input_size(self) -> int:
        """D, the input features of the bottom level."""
        return self.layers[0].input_size

    @property
    def hidden_size(self) -> int:
        """H of the top level (per direction)."""
        return self.layers[-1].hidden_size

    @property
    def output_size(self) -> int:
        """The head's k; without a head, the width of the top level's hidden states."""
        if self.head is not None:
            return self.head.kernel.shape[-1]
        return _width(self.layers[-1])

    def single_layer(self) -> Layer | None:
        """The layer if the stack is one forward layer (what most of gradflow's analyses take), else None."""
        top = self.layers[0]
        return top if len(self.layers) == 1 and isinstance(top, Layer) and top.direction == "forward" else None


def _width(level: Level) -> int:
    return 2 * level.hidden_size if isinstance(level, Bidirectional) else level.hidden_size


def level_layers(level: Level) -> tuple[Layer, ...]:
    """The layers of a level: ``(layer,)``, or ``(forward, backward)`` for a bidirectional pair."""
    return (level.forward, level.backward) if isinstance(level, Bidirectional) else (level,)


def _layer_states(layer: Layer, xs: Array) -> Array:
    """Hidden states (T, H) in time order; a backward layer runs on the reversed sequence."""
    if layer.direction == "backward":
        return CELLS[layer.cell].hidden(layer, xs[::-1])[::-1]
    return CELLS[layer.cell].hidden(layer, xs)


def _run_levels(model: Model, xs: Array) -> tuple[list[Array], tuple[Array, ...]]:
    """The input sequence of every level (T, width below) and the hidden states (T, H) of each top-level layer,
    after checking that the widths chain."""
    if xs.ndim != 2 or xs.shape[-1] != model.input_size:
        raise ValueError(f"xs must have shape (T, {model.input_size}) for this model; got {xs.shape}")
    inputs, levels_in = xs, []
    for depth, level in enumerate(model.layers):
        for layer in level_layers(level):
            if layer.input_size != inputs.shape[-1]:
                raise ValueError(f"layers[{depth}] takes {layer.input_size} input features but the level below "
                                 f"gives {inputs.shape[-1]}")
        levels_in.append(inputs)
        states = tuple(_layer_states(layer, inputs) for layer in level_layers(level))
        inputs = jnp.concatenate(states, axis=-1) if len(states) > 1 else states[0]
    return levels_in, states


def level_inputs(model: Model, xs: Array) -> list[Array]:
    """The input sequence each level reads, in time order: ``xs`` (T, D) for the bottom level, then the hidden
    states of the level below (T, H or 2H)."""
    return _run_levels(model, xs)[0]


def _top_states(model: Model, xs: Array) -> tuple[Array, ...]:
    return _run_levels(model, xs)[1]


def layer_gates(layer: Layer, xs: Array) -> tuple:
    """Gate values of ``layer`` on its input sequence ``xs`` (T, D), in time order (a backward layer reads the reversed
    sequence): the cell's NamedTuple of (T, H) arrays (:class:`gradflow.lstm.cell.Gates`,
    :class:`gradflow.lstm.gru.GRUGates`), in the order of the kernel's blocks."""
    if layer.direction == "backward":
        return jax.tree.map(lambda v: v[::-1], CELLS[layer.cell].gates(layer, xs[::-1]))
    return CELLS[layer.cell].gates(layer, xs)


def hidden_states(model: Model, xs: Array) -> Array:
    """Hidden states of the top level for one sequence, in time order.

    Args:
      model: one variant's :class:`Model`.
      xs: inputs, shape (T, D).

    Returns:
      (T, F): ``h^{(L)}_t`` for t = 1..T; F = H, or 2H for a bidirectional top level (forward first).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> bottom, upper = init_lstm(jax.random.key(0), 2, 3), init_lstm(jax.random.key(1), 3, 4)
      >>> pair = Bidirectional(Layer(upper), Layer(upper, direction="backward"))
      >>> hidden_states(Model((Layer(bottom), pair)), jnp.ones((5, 2))).shape
      (5, 8)
    """
    states = _top_states(model, xs)
    return jnp.concatenate(states, axis=-1) if len(states) > 1 else states[0]


def final_state(model: Model, xs: Array) -> Array:
    """What the head reads: each top-level layer's state after the whole sequence (``h_T`` forward, ``h_1``
    backward), concatenated: (F,)."""
    states = _top_states(model, xs)
    layers = level_layers(model.layers[-1])
    finals = [hs[-1] if layer.direction == "forward" else hs[0] for layer, hs in zip(layers, states)]
    return jnp.concatenate(finals, axis=-1) if len(finals) > 1 else finals[0]


def head_logits(model: Model, xs: Array) -> Array:
    """The head's pre-activations ``z = phi K + b`` (k,) for one sequence ``xs`` (T, D); ValueError without a head."""
    if model.head is None:
        raise ValueError("this model has no head: use hidden_states or final_state")
    return final_state(model, xs) @ model.head.kernel + model.head.bias


def head_output(output: str, logits: Array) -> Array:
    """The output function called ``output`` on ``logits`` (..., k): sigmoid, softmax over k, or the identity."""
    _choice(output, HEAD_OUTPUTS, "output", "head output")
    if output == "sigmoid":
        return jax.nn.sigmoid(logits)
    if output == "softmax":
        return jax.nn.softmax(logits, axis=-1)
    return logits


def predictions(model: Model, xs: Array) -> Array:
    """The model's predictions (k,) for one sequence ``xs`` (T, D): its head's output function of the logits."""
    return head_output(model.head.output if model.head is not None else "linear", head_logits(model, xs))


def head_loss(output: str, logits: Array, y: Array) -> Array:
    r"""Mean loss of a head with output function ``output`` on a batch: the loss that output is the link of.

    .. math::

        \text{sigmoid: } -y \log \sigma(z) - (1 - y) \log(1 - \sigma(z)), \qquad
        \text{softmax: } -\textstyle\sum_j y_j \log \mathrm{softmax}(z)_j, \qquad
        \text{linear: } (z - y)^2

    computed from the logits (no overflow for confident predictions) and averaged over the batch (and, for
    sigmoid and linear, over the k outputs).

    Args:
      output: one of :data:`HEAD_OUTPUTS`.
      logits: (N, k).
      y: targets, (N,) for k = 1 or (N, k) (0/1 for sigmoid, rows of probabilities for softmax).

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(head_loss("sigmoid", jnp.zeros((4, 1)), jnp.array([0.0, 1.0, 1.0, 0.0]))), 4)  # log 2
      0.6931
    """
    _choice(output, HEAD_OUTPUTS, "output", "head output")
    if output == "sigmoid":
        return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.reshape(y.shape), y))
    if output == "softmax":
        return jnp.mean(optax.softmax_cross_entropy(logits, y))
    return jnp.mean((logits.reshape(y.shape) - y) ** 2)
