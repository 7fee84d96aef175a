r"""Random-probe lag norms: ``||dh_T/dh_{T-k}||_F`` estimated from a few Gaussian probes, with error bars.

For ``J_k = dh_T / dh_{T-k}`` (H, H) and a probe ``v ~ N(0, I_H)``, ``E ||v^T J_k||^2 = ||J_k||_F^2``
(Hutchinson). R probe rows are placed on the ``h`` part of the (h, c) cotangent of ``s_T`` and pulled
back one step at a time with the LSTM's closed-form pullback, exactly as the exact engine
(:mod:`gradflow.flow.engine`) pulls back the R = H identity rows; the per-lag estimate is

.. math::

    q_j = \|v_j^\top J_k\|^2, \qquad \widehat{\|J_k\|_F^2} = \bar q = \frac1R \sum_j q_j, \qquad
    \text{estimate}_k = \log_{10} \sqrt{\bar q}.

Error bar (delta method): ``stderr_k = s_q / sqrt(R) / q̄ / (2 ln 10)`` decades, ``s_q`` the sample
standard deviation of the ``q_j``. It assumes ``q̄`` is roughly normal, so ``estimate ± z stderr``
covers the exact value about as often as a normal interval (68% at z = 1, 95% at z = 2) once R is a
few dozen; with few probes the ``q_j`` (chi-square-like, skewed) make the bars noisy and coverage runs below
nominal. Measured over 200 keys on an H = 16, T = 60 LSTM in float64 (tests/test_probes.py checks R = 64):
R = 32 covered 63% / 92%, R = 64 66% / 94% (z = 1 / z = 2); at R = 16 expect roughly 55-60% / 90-94%.
``log`` of a noisy mean is biased low by about ``var(q̄) / (2 q̄^2) / (2 ln 10) = ln 10 stderr^2``
decades (0.014 at stderr 0.08); ``debias=True`` adds that back.
With ``J = Σ σ_i u_i w_i^T``, ``var q = 2 Σ σ_i^4 <= 2 (Σ σ_i^2)^2``: the relative spread is at most
``sqrt(2 / R)``, so 16 probes give at most ~0.08 decades whatever H, and less when many singular
values are comparable.

Depth: all R rows share one power-of-two exponent; after every step they are rescaled so that the
largest entry over all rows is in [0.5, 1) (exact, integer exponent), and each ``q_j`` is taken
relative to that shared scale, so profiles far below 1e-300 stay finite and exact to rounding in
float32.

Cost per step: R rows through the (2H, H) folded matrix, 2 R H^2 multiply-adds (vs 2 H^3 for the
exact engine wrt ``h``, 8 H^3 wrt ``state``): a factor H / R cheaper. Memory: the forward states
(T, 2H) and coefficients (T, 6H) plus one (R, 2H) accumulator. Each step also builds the (2H, H) folded
matrix (~6 H^2 operations), so the measured gain is below H / R: with R = 16 in float32 on 2 CPU cores
(benchmarks/bench_probes.py) 10x at H = 512, T = 512 (5.5x at H = 256), median error 0.012 decades.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from gradflow.flow.engine import check_options, renormalise
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


_LN10 = math.log(10.0)
_LN2 = math.log(2.0)


def _measure(P: Array, exponent: Array, probes: int) -> tuple[Array, Array]:
    """``log10 sqrt(mean_j q_j)`` and its delta-method stderr for rows ``P 2^exponent``, ``q_j = ||P_j||^2 4^exponent``."""
    m = jnp.max(jnp.abs(P))
    scaled = P / jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))
    q = jnp.sum(jnp.square(scaled), axis=-1)  # q_j / (m 2^exponent)^2
    mean = jnp.mean(q)
    sd = jnp.std(q, ddof=1)
    log_norm = (exponent.astype(P.dtype) * _LN2 + jnp.log(m) + 0.5 * jnp.log(mean)) / _LN10
    return log_norm, sd / math.sqrt(probes) / mean / (2 * _LN10)


@functools.partial(jax.jit, static_argnames=("probes", "wrt", "activation", "recurrent_activation", "debias"))
def _probe_one(params, xs, key, h0, c0, *, probes, wrt, activation, recurrent_activation, debias):
    H = params.hidden_size
    options = {"activation": activation, "recurrent_activation": recurrent_activation}

    def step(state, x):
        return lstm_step(params, state, x, **options), state

    _, consumed = jax.lax.scan(step, initial_state(params, h0, c0), xs)
    lin = lstm_linearisation(params, consumed, xs, **options)
    U_T = recurrent_blocks_transposed(params)
    width = H if wrt == "h" else 2 * H
    v = jax.random.normal(key, (probes, width), dtype=xs.dtype)
    rows = jnp.concatenate([v, jnp.zeros((probes, 2 * H - width), xs.dtype)], axis=1)
    rows, exponent = renormalise(rows, jnp.zeros((), jnp.int32))

    def back(carry, lin_t):
        M, exponent = carry
        M, exponent = renormalise(lstm_pullback_apply(U_T, lin_t, M), exponent)
        return (M, exponent), _measure(M[:, :width], exponent, probes)

    _, (estimate, stderr) = jax.lax.scan(back, (rows, exponent), lin, reverse=True)
    if debias:
        estimate = estimate + _LN10 * jnp.square(stderr)
    return estimate[::-1], stderr[::-1]


def probe_lag_norms(
    params: LSTMParams,
    xs: Array,
    key: Array,
    *,
    probes: int = 16,
    wrt: str = "h",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
    debias: bool = False,
) -> tuple[Array, Array]:
    r"""Estimated lag profile ``log10 ||dh_T/dh_{T-k}||_F``, k = 1..T, from ``probes`` Gaussian probes, with stderr.

    See the module docstring for the estimator, its error bars, bias and cost (2 R H^2 per step
    against the exact engine's 2 H^3).

    Args:
      params: :class:`LSTMParams`, one variant or a leading variants axis V (each variant gets its own
        probes).
      xs: inputs (T, D), or (V, T, D) per variant.
      key: a JAX PRNG key (``jax.random.key``), split over the variants; or (V,) keys, one per variant
        (a variant's estimate then does not depend on which others are computed with it).
      probes: number of probe rows R >= 2 (a Python int: it fixes shapes).
      wrt: ``"h"`` (probes on ``h_T``, columns ``h_{T-k}``, ``c`` held fixed) or ``"state"``
        (probes of size 2H on ``s = (h, c)``), as in :func:`gradflow.flow.engine.lag_norms`.
      activation, recurrent_activation, h0, c0: as in :func:`gradflow.flow.engine.lag_norms`.
      debias: add the first-order log bias ``ln 10 stderr^2`` back to the estimate.

    Returns:
      ``(estimate, stderr)``, each (T,) or (V, T), by lag (entry ``k - 1`` is lag ``k``), in decades.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> p = init_lstm(jax.random.key(0), 2, 8)
      >>> est, err = probe_lag_norms(p, jnp.ones((20, 2)), jax.random.key(1), probes=8)
      >>> est.shape, err.shape
      ((20,), (20,))
    """
    check_options(activation, recurrent_activation, wrt)
    if not isinstance(probes, int) or isinstance(probes, bool) or probes < 2:
        raise ValueError(f"probes must be an int >= 2 (the stderr needs two); got {probes!r}")
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim <= 1):
        raise ValueError(f"key must be one typed PRNG key from jax.random.key, or (V,) of them; got {key!r}")
    V = check_lstm_inputs(params, xs, h0, c0)
    if key.ndim == 1 and key.shape != (V,):
        raise ValueError(f"key: {key.shape[0]} keys given for {'one variant' if V is None else f'V = {V} variants'}; "
                         "pass one key, or one per variant")
    params = LSTMParams(*params)
    fn = functools.partial(
        _probe_one, probes=probes, wrt=wrt, activation=activation,
        recurrent_activation=recurrent_activation, debias=debias,
    )
    if V is None:
        return fn(params, xs, key, h0, c0)
    axes = [0, 0 if jnp.ndim(xs) == 3 else None, 0]
    axes += [None if a is None or jnp.ndim(a) == 1 else 0 for a in (h0, c0)]
    keys = key if key.ndim == 1 else jax.random.split(key, V)
    return jax.vmap(fn, in_axes=tuple(axes))(params, xs, keys, h0, c0)
