r"""The GRU: parameters, the cell, its ``lax.scan`` unroll and its closed-form step pullback, in the convention
PyTorch, Flax and Keras share.

Gate blocks (reset ``r``, update ``z``, candidate ``n``) along the kernels' last axis, time-major, unbatched:

.. math::

    r = \sigma(x W_r + b_r + h U_r + \beta_r), \qquad z = \sigma(x W_z + b_z + h U_z + \beta_z)

    \text{reset after (default):}\quad n = \mathrm{act}(x W_n + b_n + r \odot (h U_n + \beta_n))

    \text{reset before (Cho et al. 2014; Keras \texttt{reset\_after=False}):}\quad
    n = \mathrm{act}(x W_n + b_n + (r \odot h) U_n + \beta_n)

    h_t = (1 - z) \odot n + z \odot h_{t-1}

with ``W`` (D, 3H), ``U`` (H, 3H), the input bias ``b`` (3H,) and the recurrent bias ``β`` (3H,): PyTorch's
``weight_ih.T``, ``weight_hh.T``, ``bias_ih``, ``bias_hh`` (gate order r, z, n), Flax's ``GRUCell`` (same order,
``β = 0``); Keras orders its blocks (z, r, n), which the importer reorders. The two biases stay apart because
``β_n`` sits inside the reset product.

The step Jacobian ``dh_t/dh_{t-1}`` in closed form (:func:`gru_pullback_apply`) is what the lag-profile engine
applies to its cotangent rows for GRU layers (:func:`gru_pullback_fn`): a third of the multiply-adds of a generic
vector-Jacobian product for the reset-after GRU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradflow.lstm.cell import resolve_activation, resolve_recurrent_activation

Array = jax.Array

#: GRU gate blocks, in the order of the kernels' column blocks.
GRU_GATE_NAMES: tuple[str, ...] = ("reset", "update", "candidate")


class GRUParams(NamedTuple):
    """Weights of one GRU layer (a pytree of four arrays), gate blocks (r, z, n).

    Attributes:
      W: input kernel (D, 3H).
      U: recurrent kernel (H, 3H).
      b: input bias (3H,).
      b_recurrent: recurrent bias (3H,) (``β`` in the module docstring; zeros where a framework has none).
    """

    W: Array
    U: Array
    b: Array
    b_recurrent: Array

    @property
    def hidden_size(self) -> int:
        return self.U.shape[-2]

    @property
    def input_size(self) -> int:
        return self.W.shape[-2]


class _GRUParts(NamedTuple):
    """One step's pre-activations ``p_r, p_z, p_n``, gates ``r, z, n`` and ``y``, what ``r`` multiplies."""

    p_r: Array
    p_z: Array
    p_n: Array
    r: Array
    z: Array
    n: Array
    y: Array


def _gru_parts(params: GRUParams, h: Array, x: Array, act, gate, reset_after: bool) -> _GRUParts:
    """The gates of a step at ``h = h_{t-1}``, ``x = x_t`` (the module docstring's equations); leading axes allowed,
    so a whole sequence's previous states and inputs give every step's gates at once."""
    H = params.U.shape[-2]
    xW, hU = x @ params.W, h @ params.U
    x_r, x_z, x_n = jnp.split(xW + jnp.broadcast_to(params.b, xW.shape), 3, axis=-1)
    h_r, h_z, h_n = jnp.split(hU + jnp.broadcast_to(params.b_recurrent, hU.shape), 3, axis=-1)
    p_r, p_z = x_r + h_r, x_z + h_z
    r, z = gate(p_r), gate(p_z)
    if reset_after:
        y = h_n
        p_n = x_n + r * y
    else:
        y = h
        p_n = x_n + (r * h) @ params.U[..., 2 * H:] + jnp.broadcast_to(params.b_recurrent[..., 2 * H:], x_n.shape)
    return _GRUParts(p_r, p_z, p_n, r, z, act(p_n), y)


def gru_step(
    params: GRUParams,
    h: Array,
    x: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> Array:
    """One GRU step ``h_{t-1}, x_t -> h_t`` (see the module docstring); leading axes allowed.

    Example:
      >>> import jax.numpy as jnp
      >>> p = GRUParams(jnp.zeros((2, 9)), jnp.zeros((3, 9)), jnp.zeros(9), jnp.zeros(9))
      >>> gru_step(p, jnp.ones(3), jnp.ones(2)).tolist()  # z = 1/2, n = 0: h/2
      [0.5, 0.5, 0.5]
    """
    parts = _gru_parts(params, h, x, resolve_activation(activation), resolve_recurrent_activation(recurrent_activation),
                       reset_after)
    return (1 - parts.z) * parts.n + parts.z * h


def gru_unroll(
    params: GRUParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    h0: Array | None = None,
) -> Array:
    """Hidden states (T, H) after 1..T inputs of ``xs`` (T, D), by ``lax.scan``; ``h0`` zeros if None."""
    options = {"activation": activation, "recurrent_activation": recurrent_activation, "reset_after": reset_after}

    def body(h, x):
        h = gru_step(params, h, x, **options)
        return h, h

    start = jnp.zeros(params.U.shape[-2:-1], params.U.dtype) if h0 is None else h0
    return jax.lax.scan(body, start, xs)[1]


def _elementwise_derivative(fn, z: Array) -> Array:
    """Derivative of an elementwise ``fn`` at ``z``, entry by entry (JAX's own convention at kinks)."""
    return jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


class GRULinearisation(NamedTuple):
    r"""What a GRU step's Jacobian needs besides ``U``, each (..., H) (a leading time axis allowed).

    With pre-activations ``p_r, p_z, p_n`` of the gates at ``h_{t-1}, x_t``, ``σ`` the gate and ``act`` the cell
    activation: the update gate ``z``, the reset gate ``r``, ``d_z = (h_{t-1} - n) σ'(p_z)``,
    ``d_n = (1 - z) act'(p_n)`` and ``d_r = σ'(p_r) ⊙ y`` with ``y`` what ``r`` multiplies: ``h_{t-1} U_n + β_n``
    (reset after) or ``h_{t-1}`` (reset before).
    """

    z: Array
    r: Array
    d_z: Array
    d_n: Array
    d_r: Array


def gru_linearisation(
    params: GRUParams,
    h: Array,
    x: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> GRULinearisation:
    """The step Jacobian's coefficients at ``h = h_{t-1}``, ``x = x_t``; vectorised over leading axes.

    Given the states a forward pass consumed (T, H) and the inputs (T, D), this computes every step's
    coefficients at once.
    """
    act = resolve_activation(activation)
    gate = resolve_recurrent_activation(recurrent_activation)
    p = _gru_parts(params, h, x, act, gate, reset_after)
    return GRULinearisation(
        z=p.z,
        r=p.r,
        d_z=(h - p.n) * _elementwise_derivative(gate, p.p_z),
        d_n=(1 - p.z) * _elementwise_derivative(act, p.p_n),
        d_r=_elementwise_derivative(gate, p.p_r) * p.y,
    )


def gru_recurrent_blocks_transposed(params: GRUParams) -> Array:
    """``U_k^T`` for the gate blocks k = r, z, n, stacked: (3, H, H)."""
    H = params.U.shape[-2]
    return params.U.reshape(H, 3, H).transpose(1, 2, 0)


def gru_pullback_apply(U_T: Array, lin: GRULinearisation, M: Array, *, reset_after: bool = True) -> Array:
    r"""Rows of ``M`` (R, H) times one step's Jacobian ``J = dh_t / dh_{t-1}``, in closed form.

    With ``U_T`` from :func:`gru_recurrent_blocks_transposed` and the step's :class:`GRULinearisation`:

    .. math::

        \text{reset after:}\quad J = \mathrm{diag}(z) + \mathrm{diag}(d_z) U_z^\top
            + \mathrm{diag}(d_n \odot r) U_n^\top + \mathrm{diag}(d_n \odot d_r) U_r^\top

        \text{reset before:}\quad J = \mathrm{diag}(z) + \mathrm{diag}(d_z) U_z^\top
            + \mathrm{diag}(d_n) U_n^\top \left(\mathrm{diag}(r) + \mathrm{diag}(d_r) U_r^\top\right)

    Reset after: the (H, H) matrix ``J - diag(z)`` is built (3 H^2) and applied in one (R, H) x (H, H) product,
    R H^2 multiply-adds against the 3 R H^2 of a vector-Jacobian product through the (H, 3H) kernel. Reset before
    holds a product of two kernels: for ``2R > H`` it is formed (H^3) and applied (R H^2), otherwise the rows go
    through ``U_n^T`` then ``[U_z^T; U_r^T]`` (3 R H^2, as autodiff).

    Returns:
      ``M J``, shape (R, H).
    """
    R, H = M.shape[-2], U_T.shape[-1]
    z, r = lin.z[None, :], lin.r[None, :]
    if reset_after:
        B = (lin.d_n * lin.d_r)[:, None] * U_T[0] + lin.d_z[:, None] * U_T[1] + (lin.d_n * lin.r)[:, None] * U_T[2]
        return M @ B + M * z
    if 2 * R > H:
        reset_block = U_T[2] * r + (U_T[2] * lin.d_r[None, :]) @ U_T[0]
        B = lin.d_z[:, None] * U_T[1] + lin.d_n[:, None] * reset_block
        return M @ B + M * z
    G = (M * lin.d_n[None, :]) @ U_T[2]
    rows = jnp.concatenate([M * lin.d_z[None, :], G * lin.d_r[None, :]], axis=-1)
    return M * z + G * r + rows @ U_T[1::-1].reshape(2 * H, H)


def gru_pullback(
    params: GRUParams,
    h: Array,
    x: Array,
    M: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> Array:
    """Rows of ``M`` (R, H) times ``dh_t/dh_{t-1}`` at ``h = h_{t-1}``, ``x = x_t``, in closed form.

    :func:`gru_linearisation` then :func:`gru_pullback_apply` (see there for the math); the signature of the
    engine's ``pullback`` once the options are bound.

    Example (zero weights: ``z = 1/2``, ``n = 0``, so ``J = I/2``):
      >>> import jax.numpy as jnp
      >>> p = GRUParams(jnp.zeros((1, 6)), jnp.zeros((2, 6)), jnp.zeros(6), jnp.zeros(6))
      >>> gru_pullback(p, jnp.ones(2), jnp.ones(1), jnp.eye(2)).tolist()
      [[0.5, 0.0], [0.0, 0.5]]
    """
    options = {"activation": activation, "recurrent_activation": recurrent_activation, "reset_after": reset_after}
    lin = gru_linearisation(params, h, x, **options)
    return gru_pullback_apply(gru_recurrent_blocks_transposed(params), lin, M, reset_after=reset_after)


class GRUGates(NamedTuple):
    """Gate values of an unrolled GRU, each (T, H): the sigmoid gates ``reset`` and ``update``, the ``candidate`` n."""

    reset: Array
    update: Array
    candidate: Array


def gru_gates(
    params: GRUParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
    h0: Array | None = None,
) -> GRUGates:
    """Every step's gates (reset, update, candidate) along ``xs`` (T, D): the states from :func:`gru_unroll`, then
    the gates of all steps in one vectorised pass from the previous states."""
    options = {"activation": activation, "recurrent_activation": recurrent_activation, "reset_after": reset_after}
    hs = gru_unroll(params, xs, h0=h0, **options)
    start = jnp.zeros(params.U.shape[-2:-1], params.U.dtype) if h0 is None else h0
    previous = jnp.concatenate([start[None], hs[:-1]])
    act, gate = resolve_activation(activation), resolve_recurrent_activation(recurrent_activation)
    p = _gru_parts(params, previous, xs, act, gate, reset_after)
    return GRUGates(p.r, p.z, p.n)


def gru_pullback_fn(
    params: GRUParams,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    reset_after: bool = True,
) -> Callable[[Array, Array, Array], Array]:
    """:func:`gru_pullback` bound to one layer: ``pullback(h_{t-1}, x_t, M) -> M dh_t/dh_{t-1}``, the engine's
    ``pullback`` argument (:func:`gradflow.flow.engine.step_lag_norms`).

    The transposed kernel blocks are formed once, outside the engine's loop: re-forming them at every step
    (what :func:`gru_pullback` inside a scan does) costs as much as the product itself on a CPU.
    """
    options = {"activation": activation, "recurrent_activation": recurrent_activation, "reset_after": reset_after}
    resolve_activation(activation)
    resolve_recurrent_activation(recurrent_activation)
    U_T = gru_recurrent_blocks_transposed(params)

    def pullback(h: Array, x: Array, M: Array) -> Array:
        return gru_pullback_apply(U_T, gru_linearisation(params, h, x, **options), M, reset_after=reset_after)

    return pullback
