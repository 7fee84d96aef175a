r"""The full lag matrix: ``log10 ||dh_t / dh_s||`` for every origin ``s`` and target times ``t`` on a grid.

:func:`gradflow.flow.engine.lag_norms` measures one row, the target ``t = T``. Here every target ``t_i`` on
the grid ``T, T - stride, ...`` gets its own renormalised backward pass (the engine's loop), started at
``t_i`` with identity rows: steps after ``t_i`` leave the accumulator unchanged, so all rows run as one
vmapped scan over the shared forward pass.

Cost: rows x T steps, each a (R, 2H) x (2H, H) pullback (R = H wrt ``h``, 2H wrt ``state``): about
``rows * T * 2 R H^2`` multiply-adds (``rows * T * H^3`` order), plus an SVD per entry for
``norm="spectral"``; memory ``rows * T`` for the matrix. :data:`MAX_ROWS` bounds the rows unless
``allow_large=True``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gradflow.flow.engine import check_norm, check_options, log10_norm, renormalise
from gradflow.lstm.cell import (
    LSTMParams,
    initial_state,
    lstm_linearisation,
    lstm_pullback_apply,
    lstm_step,
    recurrent_blocks_transposed,
)
from gradflow.lstm.checks import check_lstm_inputs

Array = jax.Array

#: Most target rows :func:`lag_matrix` computes unless ``allow_large=True`` (each row costs a full backward pass).
MAX_ROWS = 256


def lag_matrix(
    params: LSTMParams,
    xs: Array,
    *,
    stride: int = 1,
    wrt: str = "h",
    norm: str = "frobenius",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
    allow_large: bool = False,
) -> tuple[Array, Array]:
    r"""``log10 ||dh_t / dh_s||`` (Frobenius or spectral ``norm``) for targets ``t`` on a stride grid and all ``s < t``.

    Args:
      params: one LSTM variant (no variants axis).
      xs: inputs (T, D).
      stride: spacing of the target grid ``t = T, T - stride, ... >= 1``.
      wrt: ``"h"`` (``c`` held fixed) or ``"state"`` (``s = (h, c)``), as in :func:`lag_norms`.
      norm: ``"frobenius"`` or ``"spectral"``.
      activation, recurrent_activation, h0, c0: as in :func:`lag_norms`.
      allow_large: permit more than :data:`MAX_ROWS` rows.

    Returns:
      ``(origins, matrix)``: ``origins`` (rows,) int, the target times ``t_i`` in increasing order (the last
      is ``T``); ``matrix`` (rows, T) with ``matrix[i, s] = log10 ||dh_{t_i} / dh_s||`` for origins
      ``s = 0..T-1`` (by time, ``s = 0`` the initial state) and NaN where ``s >= t_i``; entry ``[i, s]`` is
      lag ``t_i - s``. The last row is :func:`~gradflow.flow.engine.lag_norms` reversed (lag ``k`` at
      ``s = T - k``), the same loop on the same accumulator, equal to rounding.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> origins, m = lag_matrix(init_lstm(jax.random.key(0), 2, 3), jnp.ones((6, 2)), stride=2)
      >>> origins.tolist(), m.shape, bool(jnp.isnan(m[0, 2]))
      ([2, 4, 6], (3, 6), True)
    """
    check_options(activation, recurrent_activation, wrt)
    check_norm(norm)
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise ValueError(f"stride={stride!r} must be a positive int")
    if check_lstm_inputs(params, xs, h0, c0) is not None:
        raise ValueError("params: lag_matrix takes one variant (no leading variants axis)")
    T = xs.shape[0]
    rows = math.ceil(T / stride)
    if rows > MAX_ROWS and not allow_large:
        raise ValueError(
            f"stride={stride} gives {rows} rows for T={T} (cost ~ rows x T x H^3), over MAX_ROWS={MAX_ROWS}; "
            "raise stride or pass allow_large=True"
        )
    origins = jnp.arange(T - stride * (rows - 1), T + 1, stride)
    matrix = _lag_matrix(LSTMParams(*params), xs, h0, c0, origins, wrt=wrt, norm=norm, activation=activation,
                         recurrent_activation=recurrent_activation)
    return origins, matrix


@functools.partial(jax.jit, static_argnames=("wrt", "norm", "activation", "recurrent_activation"))
def _lag_matrix(params, xs, h0, c0, origins, *, wrt, norm, activation, recurrent_activation):
    H = params.hidden_size
    state = initial_state(params, h0, c0)
    options = {"activation": activation, "recurrent_activation": recurrent_activation}

    def forward(st, x):
        return lstm_step(params, st, x, **options), st

    _, consumed = jax.lax.scan(forward, state, xs)
    lin = lstm_linearisation(params, consumed, xs, **options)
    U_T = recurrent_blocks_transposed(params)
    dims = slice(0, H) if wrt == "h" else slice(None)
    steps = jnp.arange(1, xs.shape[0] + 1)  # step t maps s_{t-1} to s_t

    def row(target):
        def back(carry, inputs):
            M, exponent = carry
            t, lin_t = inputs
            M = jnp.where(t <= target, lstm_pullback_apply(U_T, lin_t, M), M)
            M, exponent = renormalise(M, exponent)
            value = log10_norm(M[:, dims], exponent, norm)
            return (M, exponent), jnp.where(t <= target, value, jnp.nan)

        rows0 = jnp.eye(2 * H, dtype=xs.dtype)[dims]
        _, by_time = jax.lax.scan(back, (rows0, jnp.zeros((), jnp.int32)), (steps, lin), reverse=True)
        return by_time  # entry t - 1 is s = t - 1: the origin consumed by step t

    return jax.vmap(row)(origins)
