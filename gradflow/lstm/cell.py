r"""The LSTM: parameters, the cell, its ``lax.scan`` unroll and the NNX shell.

Keras/PyTorch gate order (i, f, g, o), time-major, unbatched kernels:

.. math::

    z_t = x_t W + h_{t-1} U + b, \qquad
    i, f, o = \sigma(z_i), \sigma(z_f), \sigma(z_o), \qquad g = \mathrm{act}(z_g)

    c_t = f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \mathrm{act}(c_t)

with ``W`` (D, 4H), ``U`` (H, 4H), ``b`` (4H,): exactly Keras's ``kernel``, ``recurrent_kernel`` and
``bias``. ``h_t`` is the state after ``t`` inputs; ``h_0, c_0`` are the initial state (zeros by
default). Everything here is a pure function of an :class:`LSTMParams` pytree for one variant and one
sequence; batching over variants happens in :mod:`gradflow.flow.engine`, and the NNX shell that
holds a model is :class:`gradflow.lstm.module.LSTM`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

#: Cell activations ``act`` (applied to the candidate ``g`` and to ``c_t``).
ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "linear": lambda x: x,
    "softsign": jax.nn.soft_sign,
}

#: Recurrent (gate) activations. ``hard_sigmoid`` is ``relu6(x + 3) / 6`` (Keras 3, JAX).
RECURRENT_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": jax.nn.hard_sigmoid,
}


class LSTMParams(NamedTuple):
    """Weights of one LSTM layer in the Keras layout (a pytree of three arrays).

    Attributes:
      W: input kernel, shape (D, 4H), gate blocks (i, f, g, o) along the last axis.
      U: recurrent kernel, shape (H, 4H).
      b: bias, shape (4H,).

    A leading variants axis on all three (``W`` (V, D, 4H) ...) describes V models at once.
    """

    W: Array
    U: Array
    b: Array

    @property
    def hidden_size(self) -> int:
        return self.U.shape[-2]

    @property
    def input_size(self) -> int:
        return self.W.shape[-2]


class LSTMState(NamedTuple):
    """The recurrent state (h, c), each of shape (H,)."""

    h: Array
    c: Array


def resolve_activation(name: str, *, argname: str = "activation") -> Callable[[Array], Array]:
    """The cell activation called ``name``; ValueError naming ``argname`` otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"{argname}={name!r} is not a known cell activation; expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def resolve_recurrent_activation(name: str) -> Callable[[Array], Array]:
    """The gate activation called ``name``; ValueError otherwise."""
    if name not in RECURRENT_ACTIVATIONS:
        raise ValueError(
            f"recurrent_activation={name!r} is not a known gate activation; "
            f"expected one of {sorted(RECURRENT_ACTIVATIONS)}"
        )
    return RECURRENT_ACTIVATIONS[name]


def lstm_step(
    params: LSTMParams,
    state: LSTMState,
    x: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> LSTMState:
    """One LSTM step: ``(h_{t-1}, c_{t-1}), x_t -> (h_t, c_t)`` for one sequence.

    Args:
      params: one variant's :class:`LSTMParams`.
      state: ``LSTMState(h, c)``, each (H,).
      x: input at this step, shape (D,).
      activation: cell activation name (see :data:`ACTIVATIONS`).
      recurrent_activation: gate activation name (see :data:`RECURRENT_ACTIVATIONS`).

    Returns:
      The next ``LSTMState``.
    """
    act = resolve_activation(activation)
    _, (_, _, _, o), c = _gates(params, state, x, act, resolve_recurrent_activation(recurrent_activation))
    return LSTMState(o * act(c), c)


def _gates(params: LSTMParams, state: LSTMState, x: Array, act, gate):
    """Pre-activations ``z_k``, gates ``(i, f, g, o)`` and the new cell ``c_t`` (leading axes allowed)."""
    z = x @ params.W + state.h @ params.U
    z_i, z_f, z_g, z_o = jnp.split(z + jnp.broadcast_to(params.b, z.shape), 4, axis=-1)
    i, f, g, o = gate(z_i), gate(z_f), act(z_g), gate(z_o)
    return (z_i, z_f, z_g, z_o), (i, f, g, o), f * state.c + i * g


def _derivative(fn: Callable[[Array], Array], z: Array) -> Array:
    """Elementwise derivative of an elementwise ``fn`` at ``z`` (JAX's own convention at kinks)."""
    return jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


class LSTMLinearisation(NamedTuple):
    """What a step's Jacobian needs besides ``U``, each (..., H) (a leading time axis allowed).

    With ``σ`` the gate and ``act`` the cell activation: ``a_i = g σ'(z_i)``, ``a_f = c_{t-1} σ'(z_f)``,
    ``a_g = i act'(z_g)``, ``a_o = act(c_t) σ'(z_o)``, ``q = o act'(c_t)`` and the forget gate ``f``.
    """

    a_i: Array
    a_f: Array
    a_g: Array
    a_o: Array
    q: Array
    f: Array


def lstm_linearisation(
    params: LSTMParams,
    state: LSTMState,
    x: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> LSTMLinearisation:
    """The step Jacobian's coefficients at ``(h_{t-1}, c_{t-1}), x_t``; vectorised over leading axes.

    Given the states a forward pass consumed, (T, H) each, and the inputs (T, D), this computes every
    step's coefficients at once: one (T, D + H) x (D + H, 4H) product instead of T small ones.
    """
    act = resolve_activation(activation)
    gate = resolve_recurrent_activation(recurrent_activation)
    (z_i, z_f, z_g, z_o), (i, f, g, o), c = _gates(params, state, x, act, gate)
    return LSTMLinearisation(
        a_i=g * _derivative(gate, z_i),
        a_f=state.c * _derivative(gate, z_f),
        a_g=i * _derivative(act, z_g),
        a_o=act(c) * _derivative(gate, z_o),
        q=o * _derivative(act, c),
        f=f,
    )


def recurrent_blocks_transposed(params: LSTMParams) -> Array:
    """``U_k^T`` for the gates k = i, f, g, o, stacked: (4, H, H)."""
    H = params.U.shape[-2]
    return params.U.reshape(H, 4, H).transpose(1, 2, 0)


def lstm_pullback_apply(U_T: Array, lin: LSTMLinearisation, M: Array) -> Array:
    r"""Rows of ``M`` times the step Jacobian ``ds_t / ds_{t-1}``, ``s = (h, c)``, in closed form.

    With cotangent rows ``M = [M_h, M_c]`` (R, 2H) on ``(h_t, c_t)``, ``U_T`` from
    :func:`recurrent_blocks_transposed` and one step's :class:`LSTMLinearisation`:

    .. math::

        K_c = \sum_{k \in \{i,f,g\}} \mathrm{diag}(a_k) U_k^\top, \qquad
        K_o = \mathrm{diag}(a_o) U_o^\top

        M_h' = [M_h, M_c] \begin{bmatrix} \mathrm{diag}(q) K_c + K_o \\ K_c \end{bmatrix}, \qquad
        M_c' = (M_c + M_h \mathrm{diag}(q)) \mathrm{diag}(f)

    One (R, 2H) x (2H, H) product: 2 R H^2 multiply-adds, half of what a generic vector-Jacobian
    product through the (4H, H) kernel costs, and no (R, 4H) intermediate.

    Returns:
      ``M ds_t/ds_{t-1}``, shape (R, 2H).
    """
    H = U_T.shape[-1]
    K_c = lin.a_i[:, None] * U_T[0] + lin.a_f[:, None] * U_T[1] + lin.a_g[:, None] * U_T[2]
    B = jnp.concatenate([lin.q[:, None] * K_c + lin.a_o[:, None] * U_T[3], K_c], axis=0)
    M_h, M_c = M[:, :H], M[:, H:]
    return jnp.concatenate([M @ B, (M_c + M_h * lin.q[None, :]) * lin.f[None, :]], axis=1)


def scale_linearisation(lin: LSTMLinearisation, *factors: Array) -> LSTMLinearisation:
    r"""The coefficients of ``s`` times the step Jacobian, ``s`` the product of the scalar ``factors``.

    ``a_i, a_f, a_g, a_o`` and ``f`` are multiplied by each factor in turn; ``q`` is not (it multiplies rows of
    ``M``, not the Jacobian's scale). Every block of :func:`lstm_pullback_apply` is linear in those five, so

    .. math::

        \mathrm{apply}(U^\top, \mathrm{scale}(\ell, s), M) = \mathrm{apply}(U^\top, \ell, s M)

    at the cost of 5 H multiplications instead of R 2H. For powers of two the two sides agree bit for bit
    (barring overflow or underflow of a scaled coefficient): the engine folds each step's renormalisation
    into the next step's coefficients this way.
    """
    scaled = {}
    for name in ("a_i", "a_f", "a_g", "a_o", "f"):
        value = getattr(lin, name)
        for factor in factors:
            value = value * factor
        scaled[name] = value
    return lin._replace(**scaled)


def lstm_pullback(
    params: LSTMParams,
    state: LSTMState,
    x: Array,
    M: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> Array:
    """Rows of ``M`` (R, 2H) times ``ds_t/ds_{t-1}`` at ``state = (h_{t-1}, c_{t-1})``, ``x = x_t``.

    :func:`lstm_linearisation` then :func:`lstm_pullback_apply` (see there for the math).
    """
    lin = lstm_linearisation(params, state, x, activation=activation, recurrent_activation=recurrent_activation)
    return lstm_pullback_apply(recurrent_blocks_transposed(params), lin, M)


class Gates(NamedTuple):
    """Gate values of an unrolled cell, each (T, H), in the order of the kernel's column blocks.

    ``input``, ``forget`` and ``output`` (``i``, ``f``, ``o`` above) come from the gate activation, ``cell``
    (the candidate ``g``) from the cell activation.
    """

    input: Array
    forget: Array
    cell: Array
    output: Array


#: The gates' names, in the order of the kernel's column blocks: the fields of :class:`Gates`.
GATE_NAMES: tuple[str, ...] = Gates._fields


def lstm_gates(
    params: LSTMParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
) -> Gates:
    """Every step's gates (input, forget, candidate, output) along the sequence ``xs`` (T, D).

    The states come from :func:`unroll`; the gates of all steps are then recomputed in one
    vectorised pass from the previous states.
    """
    states = unroll(params, xs, activation=activation, recurrent_activation=recurrent_activation, h0=h0, c0=c0)
    s0 = initial_state(params, h0, c0)
    previous = LSTMState(
        jnp.concatenate([s0.h[None], states.h[:-1]]), jnp.concatenate([s0.c[None], states.c[:-1]])
    )
    act, gate = resolve_activation(activation), resolve_recurrent_activation(recurrent_activation)
    return Gates(*_gates(params, previous, xs, act, gate)[1])


def initial_state(params: LSTMParams, h0: Array | None = None, c0: Array | None = None) -> LSTMState:
    """``LSTMState(h0, c0)`` with zeros (in the kernel's dtype) for whichever is None."""
    zeros = jnp.zeros(params.U.shape[-2:-1], params.U.dtype)
    return LSTMState(zeros if h0 is None else h0, zeros if c0 is None else c0)


def unroll(
    params: LSTMParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
) -> LSTMState:
    """Run the cell over a time-major sequence with ``lax.scan``.

    Args:
      params: one variant's :class:`LSTMParams`.
      xs: inputs, shape (T, D).
      activation, recurrent_activation: as in :func:`lstm_step`.
      h0, c0: initial state, (H,) each; zeros if None.

    Returns:
      ``LSTMState(hs, cs)`` with ``hs[t-1] = h_t``, each of shape (T, H): the states after 1..T inputs.

    Example:
      >>> import jax.numpy as jnp
      >>> p = LSTMParams(jnp.zeros((2, 12)), jnp.zeros((3, 12)), jnp.zeros(12))
      >>> unroll(p, jnp.ones((5, 2))).h.shape
      (5, 3)
    """

    def body(state, x):
        new = lstm_step(params, state, x, activation=activation, recurrent_activation=recurrent_activation)
        return new, new

    _, states = jax.lax.scan(body, initial_state(params, h0, c0), xs)
    return states
