r"""The exact gradient-flow engine: lag profiles and per-step loss gradients, at any depth.

A recurrence ``s_t = F(s_{t-1}, x_t)`` has per-step Jacobians ``A_t = ds_t / ds_{t-1}`` and

.. math::

    \frac{\partial s_T}{\partial s_t} = A_T A_{T-1} \cdots A_{t+1}.

Such products shrink or grow geometrically and leave float32's range (1e-38) within a few hundred
steps; squaring entries for a Frobenius norm underflows already near 1e-19. The engine therefore
pushes the cotangent rows of ``s_T`` back one step at a time (one vector-Jacobian product per row)
and after every step rescales the accumulator by the power of two that brings its largest entry into
[0.5, 1), carrying that binary exponent as an integer. Rescaling by a power of two is exact and an
integer sum never rounds, so the only rounding is that of the products themselves: the result is
exact to rounding at any depth, in float32 as in float64 (a float log-scale accumulator would lose
~1e-3 decades by 1e-600 in float32). Norms are taken scale-safely (divided by the largest entry
before squaring). A Jacobian that is exactly zero gives ``-inf``, one that overflows ``+inf`` and a
NaN stays NaN (non-finite values are data here).

Cost per variant and step: R rows (R = H wrt ``h``, 2H wrt ``state``) pushed through one step. A
generic vector-Jacobian product meets the (4H, H) recurrent kernel, 4 R H^2 multiply-adds (8 H^3
FLOPs wrt ``h``); the LSTM's closed-form pullback (:func:`gradflow.lstm.cell.lstm_pullback`) folds the
gates into one (2H, H) matrix per step first and needs 2 R H^2. Memory per variant: the forward
states (T, 2H) (and, on the LSTM path, each step's Jacobian coefficients, (T, 6H)) plus one (R, 2H)
accumulator; no (H, T, H) Jacobian is ever materialised. Variants run in vmapped blocks of
:data:`VARIANT_BLOCK` (fewer on CPU for large H: :func:`lag_profile_block`), so memory grows with
the block, not with V.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradflow.lstm.cell import (
    LSTMParams,
    LSTMState,
    initial_state,
    lstm_linearisation,
    lstm_pullback,
    lstm_pullback_apply,
    lstm_step,
    recurrent_blocks_transposed,
    resolve_activation,
    resolve_recurrent_activation,
    scale_linearisation,
)
from gradflow.lstm.checks import check_lstm_inputs

Array = jax.Array

#: What a lag profile differentiates with respect to: ``h`` holds ``c_t`` fixed; ``state`` is (h, c).
WRT: tuple[str, ...] = ("h", "state")
#: Matrix norms a lag profile can report: Frobenius (default) or spectral (largest singular value).
NORMS: tuple[str, ...] = ("frobenius", "spectral")

_LN10 = math.log(10.0)
_LN2 = math.log(2.0)
#: Binary exponent standing for 'no magnitude' (an exactly zero accumulator).
_ZERO_EXPONENT = -(2**30)


def log_frobenius_norm(X: Array) -> Array:
    r"""Natural log of ``||X||_F``, without underflow: ``log m + 0.5 log sum((X / m)^2)``, ``m = max|X|``.

    Zero gives ``-inf``, an infinite entry ``+inf``, NaN stays NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(log_frobenius_norm(jnp.full((3, 3), 1e-30))) / 2.302585, 4)  # log10(3e-30)
      -29.5229
    """
    m = jnp.max(jnp.abs(X))
    scaled = X / jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))
    return jnp.log(m) + 0.5 * jnp.log(jnp.sum(jnp.square(scaled)))


def log_spectral_norm(X: Array) -> Array:
    r"""Natural log of ``||X||_2`` (largest singular value), scale-safely: ``log m + log sigma_max(X / m)``, ``m = max|X|``.

    Zero gives ``-inf``, an infinite entry ``+inf``, NaN stays NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> round(float(log_spectral_norm(jnp.full((3, 3), 1e-30))) / 2.302585, 4)  # log10(3e-30)
      -29.5229
    """
    m = jnp.max(jnp.abs(X))
    ok = (m > 0) & jnp.isfinite(m)
    scaled = X / jnp.where(ok, m, jnp.ones_like(m))
    top = jnp.linalg.svd(jnp.where(jnp.isfinite(scaled), scaled, 0), compute_uv=False)[0]
    return jnp.where(ok, jnp.log(m) + jnp.log(top), jnp.log(m) + jnp.where(jnp.isnan(m), m, 0))


def check_norm(norm: str) -> None:
    """Raise a ValueError naming ``norm`` unless it is one of :data:`NORMS`."""
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not known; expected one of {list(NORMS)}")


def renormalise(M: Array, exponent: Array) -> tuple[Array, Array]:
    """``M = M' 2^e`` with ``max|M'|`` in [0.5, 1): exact rescaling, ``e`` added to the integer ``exponent``.

    The scale is applied as two multiplications by powers of two (each a normal float, even for
    ``e`` near the ends of the range), which is exact and much cheaper than ``ldexp`` per element.
    A zero, infinite or NaN ``M`` is left as it is (``e = 0``).
    """
    _, e = jnp.frexp(jnp.max(jnp.abs(M)))
    half = -e // 2
    one = jnp.ones((), M.dtype)
    return M * jnp.ldexp(one, half) * jnp.ldexp(one, -e - half), exponent + e.astype(jnp.int32)


def log10_norm(M: Array, exponent: Array, norm: str = "frobenius") -> Array:
    """``log10 ||M 2^exponent||`` in the Frobenius or spectral ``norm``."""
    log_norm = log_spectral_norm if norm == "spectral" else log_frobenius_norm
    return (exponent.astype(M.dtype) * _LN2 + log_norm(M)) / _LN10


def _pow2_factors(e: Array, dtype) -> tuple[Array, Array]:
    """Two powers of two whose product is ``2^-e``, each a normal float for any exponent :func:`renormalise` meets."""
    half = -e // 2
    one = jnp.ones((), dtype)
    return jnp.ldexp(one, half), jnp.ldexp(one, -e - half)


def _max_exponent(M: Array) -> Array:
    """The binary exponent ``e`` with ``max|M| = m 2^e``, ``m`` in [0.5, 1); 0 for a zero, infinite or NaN ``M``."""
    return jnp.frexp(jnp.max(jnp.abs(M)))[1].astype(jnp.int32)


def _log10_norm_deferred(M: Array, pending: Array, exponent: Array, norm: str) -> Array:
    """``log10_norm(M 2^-pending, exponent + pending, norm)``, bit for bit, without writing ``M 2^-pending``.

    Frobenius: ``M / max|M|`` equals ``M' / max|M'|`` for ``M' = M 2^-pending`` exactly, so only the scalar
    ``max|M|`` is rescaled and both reductions read ``M`` itself (one pass less per step). Spectral: the
    SVD dominates; ``M'`` is formed.
    """
    scale_1, scale_2 = _pow2_factors(pending, M.dtype)
    total = exponent + pending
    if norm == "spectral":
        return log10_norm(M * scale_1 * scale_2, total, norm)
    m = jnp.max(jnp.abs(M))
    scaled = M / jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))
    log_norm = jnp.log(m * scale_1 * scale_2) + 0.5 * jnp.log(jnp.sum(jnp.square(scaled)))
    return (total.astype(M.dtype) * _LN2 + log_norm) / _LN10


def _forward_states(step, s0, xs):
    """``s_T`` and ``(s_0 .. s_{T-1})`` stacked (the state each step consumes)."""

    def body(s, x):
        return step(s, x), s

    return jax.lax.scan(body, s0, xs)


def _profile(apply_scaled, per_step, rows: Array, in_dims: slice, norm: str = "frobenius") -> Array:
    r"""The engine's loop: ``M <- apply(per_step[t], M)`` from t = T down to 1, renormalised each step.

    Returns ``log10 ||M_t[:, in_dims]||`` (Frobenius or spectral ``norm``) for t = 0..T-1 (by time;
    the public functions reverse it to by lag) with ``M_t = rows A_T ... A_{t+1}``.

    ``apply_scaled(step_inputs, M, e)`` returns ``(M 2^{-e}) A_t``. The loop carries the product as
    ``M 2^{exponent + e}`` with ``e`` the binary exponent of ``max|M|``: step t's renormalisation is
    applied by step t - 1 (the LSTM folds it into that step's coefficient vectors, 5 H multiplications,
    see :func:`gradflow.lstm.cell.scale_linearisation`) and to the norm's scalar ``max|M|``
    (:func:`_log10_norm_deferred`). No pass over ``M`` only rescales it, and every product and sum is the
    one :func:`renormalise` after each step gives (power-of-two scaling is exact and commutes with them):
    results agree bit for bit, or to rounding where XLA fuses the elementwise work differently.
    """

    def back(carry, step_inputs):
        M, pending, exponent = carry
        M = apply_scaled(step_inputs, M, pending)
        exponent = exponent + pending
        pending = _max_exponent(M)
        return (M, pending, exponent), _log10_norm_deferred(M[:, in_dims], pending, exponent, norm)

    zero = jnp.zeros((), jnp.int32)
    _, profile = jax.lax.scan(back, (rows, zero, zero), per_step, reverse=True)
    return profile


def vjp_pullback(step: Callable[[Array, Array], Array]) -> Callable[[Array, Array, Array], Array]:
    """The generic pullback of ``step``: rows of ``M`` times ``ds_t/ds_{t-1}`` by batched vector-Jacobian products."""

    def pullback(s, x, M):
        _, vjp = jax.vjp(lambda s: step(s, x), s)
        return jax.vmap(lambda row: vjp(row)[0])(M)

    return pullback


def step_lag_norms(
    step: Callable[[Array, Array], Array],
    s0: Array,
    xs: Array,
    *,
    out_dims: slice = slice(None),
    in_dims: slice = slice(None),
    pullback: Callable[[Array, Array, Array], Array] | None = None,
    norm: str = "frobenius",
) -> Array:
    r"""``log10 || d s_T[out_dims] / d s_t[in_dims] ||_F`` for t = 0..T-1, for any recurrence.

    The generic engine behind :func:`lag_norms`: ``step(s, x) -> s`` maps a flat state (n,) and one
    input to the next state; the product of its Jacobians is accumulated with renormalisation.

    Args:
      step: the recurrence ``s_t = step(s_{t-1}, x_t)``, pure and differentiable in ``s``.
      s0: initial state, shape (n,).
      xs: inputs, shape (T, ...), scanned over the leading axis.
      out_dims: the components of ``s_T`` measured (the cotangent rows pushed back).
      in_dims: the components of ``s_t`` differentiated against.
      pullback: ``pullback(s_{t-1}, x_t, M) -> M ds_t/ds_{t-1}`` for rows ``M`` (R, n), when a closed
        form beats autodiff (as :func:`gradflow.lstm.cell.lstm_pullback` does); default
        :func:`vjp_pullback` of ``step``.
      norm: ``"frobenius"`` or ``"spectral"`` (largest singular value, ``||.||_2``; see :func:`lag_norms`).

    Returns:
      Array (T,) of ``s0``'s dtype, by lag: entry ``k - 1`` is lag ``k`` (``d s_T / d s_{T-k}``), k = 1..T.

    Example (a linear recurrence, ``ds_T/ds_t = A^{T-t}``):
      >>> import jax.numpy as jnp
      >>> A = 0.5 * jnp.eye(2)
      >>> profile = step_lag_norms(lambda s, x: s @ A + x, jnp.zeros(2), jnp.zeros((3, 2)))
      >>> [round(float(v), 4) for v in profile]  # log10(sqrt(2) 0.5^k), k = 1, 2, 3
      [-0.1505, -0.4515, -0.7526]
    """
    check_norm(norm)
    pullback = pullback or vjp_pullback(step)
    rows = jnp.eye(s0.shape[-1], dtype=s0.dtype)[out_dims]
    _, consumed = _forward_states(step, s0, xs)
    def apply_scaled(sx, M, e):
        scale_1, scale_2 = _pow2_factors(e, M.dtype)
        return pullback(*sx, M * scale_1 * scale_2)

    return _profile(apply_scaled, (consumed, xs), rows, in_dims, norm)[::-1]


def step_input_norms(
    step: Callable[[Array, Array], Array],
    s0: Array,
    xs: Array,
    *,
    out_dims: slice | Array = slice(None),
) -> Array:
    r"""``log10 || d s_T[out_dims] / d x_{T-k} ||_F`` for k = 0..T-1: how much the final state depends on each input.

    The rows of ``s_T`` are pushed back as in :func:`step_lag_norms`; at step t one vector-Jacobian product gives
    both ``M ds_t/ds_{t-1}`` (carried on, renormalised) and ``M ds_t/dx_t`` (measured with the carried exponent),
    so the result is exact to rounding at any depth.

    Args:
      step, s0, xs: the recurrence, as in :func:`step_lag_norms`; ``xs`` (T, ...) is differentiated against.
      out_dims: the components of ``s_T`` measured.

    Returns:
      (T,), by lag: entry ``k`` is ``x_{T-k}`` (entry 0 the last input).

    Example (``s_t = 0.5 s_{t-1} + x_t``: ``ds_T/dx_{T-k} = 0.5^k I``):
      >>> import jax.numpy as jnp
      >>> profile = step_input_norms(lambda s, x: 0.5 * s + x, jnp.zeros(1), jnp.zeros((3, 1)))
      >>> [round(float(v), 4) for v in profile]  # log10 0.5^k, k = 0, 1, 2
      [0.0, -0.301, -0.6021]
    """
    rows = jnp.eye(s0.shape[-1], dtype=s0.dtype)[out_dims]
    _, consumed = _forward_states(step, s0, xs)

    def back(carry, sx):
        M, exponent = carry
        _, vjp = jax.vjp(step, *sx)
        M_s, M_x = jax.vmap(vjp)(M)
        measured = log10_norm(M_x, exponent)
        return renormalise(M_s, exponent), measured

    _, profile = jax.lax.scan(back, (rows, jnp.zeros((), jnp.int32)), (consumed, xs), reverse=True)
    return profile[::-1]


def step_loss_grad_norms(
    step: Callable[[Array, Array], Array],
    s0: Array,
    xs: Array,
    direct: Array,
    *,
    in_dims: slice = slice(None),
    pullback: Callable[[Array, Array, Array], Array] | None = None,
) -> Array:
    r"""``log10 || dL / d s_t[in_dims] ||`` for t = 0..T from one renormalised backward pass.

    ``direct[t-1]`` is the explicit partial ``∂L/∂s_t`` (t = 1..T); the total gradient obeys
    ``g_t = direct_t + g_{t+1} A_{t+1}``, accumulated as a vector times a carried power of two so
    that a gradient of 1e-300 is still exact in float32.

    Args:
      step: the recurrence, as in :func:`step_lag_norms`.
      s0: initial state (n,).
      xs: inputs (T, ...).
      direct: explicit loss gradients (T, n).
      in_dims: the state components whose gradient norm is reported.
      pullback: as in :func:`step_lag_norms`.

    Returns:
      Array (T + 1,); entry ``t`` is for ``s_t`` (entry 0 is the initial state).
    """
    _, consumed = _forward_states(step, s0, xs)
    return _loss_profile(pullback or vjp_pullback(step), consumed, xs, direct, in_dims)


def _loss_profile(pullback, consumed: Array, xs: Array, direct: Array, in_dims: slice) -> Array:
    """The loop of :func:`step_loss_grad_norms`, given the forward pass's consumed states (T, n)."""

    def add_direct(g, exponent, d):
        # g 2^exponent + d, rescaled by 2^new with new the larger of the two binary exponents.
        m_d = jnp.max(jnp.abs(d))
        e_d = jnp.where(m_d == 0, _ZERO_EXPONENT, jnp.frexp(m_d)[1].astype(jnp.int32))
        e_g = jnp.where(jnp.max(jnp.abs(g)) == 0, _ZERO_EXPONENT, exponent)
        new = jnp.maximum(e_g, e_d)
        return jnp.ldexp(g, exponent - new) + jnp.ldexp(d, -new), new

    def back(carry, inputs):
        g, exponent = carry
        s, x, d = inputs
        g, exponent = renormalise(*add_direct(g, exponent, d))
        log_norm = log10_norm(g[in_dims], exponent)
        g = pullback(s, x, g[None])[0]
        return renormalise(g, exponent), log_norm

    init = (jnp.zeros(consumed.shape[1:], consumed.dtype), jnp.full((), _ZERO_EXPONENT, jnp.int32))
    (g0, exponent0), later = jax.lax.scan(back, init, (consumed, xs, direct), reverse=True)
    return jnp.concatenate([log10_norm(g0[in_dims], exponent0)[None], later])


def _flat_lstm(params: LSTMParams, activation: str, recurrent_activation: str):
    """The LSTM step on a flat state ``s = concat(h, c)`` (2H,), and its closed-form pullback."""
    H = params.hidden_size
    options = {"activation": activation, "recurrent_activation": recurrent_activation}

    def step(s, x):
        new = lstm_step(params, LSTMState(s[:H], s[H:]), x, **options)
        return jnp.concatenate([new.h, new.c])

    def pullback(s, x, M):
        return lstm_pullback(params, LSTMState(s[..., :H], s[..., H:]), x, M, **options)

    return step, pullback


def lstm_lag_profile(params: LSTMParams, s0: Array, xs: Array, dims: slice, activation: str,
                     recurrent_activation: str, norm: str = "frobenius") -> Array:
    r""":func:`step_lag_norms` for one LSTM variant on its flat state ``s = (h, c)``, rows and columns ``dims``, with every step's Jacobian coefficients computed up front.

    The coefficients of all T steps come from one vectorised pass over the forward states (a
    (T, D + H) x (D + H, 4H) product); the sequential loop then only builds each step's (2H, H)
    matrix ``B_t`` (from the fixed ``U_k^T`` blocks and the step's coefficient vectors, with the previous
    step's renormalisation ``2^{-e}`` folded into those vectors) and applies it: per step one
    (R, 2H) x (2H, H) product, 2 R H^2 multiply-adds, and O(R H + H^2) elementwise work (``B_t``, the
    ``c`` block, ``max|M|`` and the norm's two reductions over the measured block).
    """
    H = params.hidden_size
    step, _ = _flat_lstm(params, activation, recurrent_activation)
    _, consumed = _forward_states(step, s0, xs)
    lin = lstm_linearisation(
        params, LSTMState(consumed[:, :H], consumed[:, H:]), xs,
        activation=activation, recurrent_activation=recurrent_activation,
    )
    U_T = recurrent_blocks_transposed(params)
    rows = jnp.eye(2 * H, dtype=s0.dtype)[dims]
    def apply_scaled(lin_t, M, e):
        return lstm_pullback_apply(U_T, scale_linearisation(lin_t, *_pow2_factors(e, M.dtype)), M)

    return _profile(apply_scaled, lin, rows, dims, norm)[::-1]


def check_options(activation: str, recurrent_activation: str, wrt: str | None = None) -> None:
    resolve_activation(activation)
    resolve_recurrent_activation(recurrent_activation)
    if wrt is not None and wrt not in WRT:
        raise ValueError(f"wrt={wrt!r} is not known; expected one of {list(WRT)}")


#: Most variants processed together inside one compiled call: larger batches leave the CPU caches
#: (measured on 2 cores: V = 256 at once ran at 60% of the per-variant speed of blocks of 64).
VARIANT_BLOCK = 64

#: On CPU, the bytes one vmapped block of lag profiles may keep in its backward loop (see
#: :func:`lag_profile_block`): about a quarter of the 32 MiB L3 of the machine it was measured on.
CPU_BLOCK_BYTES = 8 * 2**20


def lag_profile_block(variants: int, hidden_size: int, rows: int, itemsize: int, backend: str | None = None) -> int:
    r"""Variants vmapped together by the exact lag profile: :data:`VARIANT_BLOCK`, fewer on CPU for large H.

    One variant's backward loop touches ``U^T`` (4 H^2), ``B_t`` (2 H^2) and the accumulator before and
    after the step with its two output blocks (6 R H) every step. On CPU a block is capped so that this,
    ``itemsize (6 H^2 + 6 R H)`` per variant, fits :data:`CPU_BLOCK_BYTES`; a block that leaves the cache
    runs from memory (measured, float32, wrt ``h``, 2 cores with 2 MiB L2 each and 32 MiB L3, V = 8: at
    H = 512 blocks of 1 / 2 / 4 / 8 took 1.43 / 1.51 / 1.79 / 2.10 ms per variant-step; at H = 128 and
    V = 64, blocks of 8 / 16 / 32 / 64 took 54 / 55 / 60 / 80 us). Accelerators keep :data:`VARIANT_BLOCK`.

    Example:
      >>> [lag_profile_block(256, H, H, 4, "cpu") for H in (32, 64, 128, 256, 512)]
      [64, 42, 10, 2, 1]
    """
    block = min(variants, VARIANT_BLOCK)
    if (backend or jax.default_backend()) != "cpu":
        return block
    per_variant = itemsize * (6 * hidden_size**2 + 6 * rows * hidden_size)
    return max(1, min(block, CPU_BLOCK_BYTES // per_variant))


def _over_variants(fn, V, params, xs, h0, c0, *, block: int | None = None):
    """Apply the one-variant ``fn`` to each of V variants: the single place variants are batched.

    Blocks of ``block`` variants (default :data:`VARIANT_BLOCK`) are vmapped; the blocks run one after
    another (``lax.map``), so memory and cache footprint do not grow with V.
    """
    if V is None:
        return fn(params, xs, h0, c0)
    args = {"params": params, "xs": xs, "h0": h0, "c0": c0}
    unbatched_ndim = {"params": None, "xs": 2, "h0": 1, "c0": 1}
    mapped = {k: a for k, a in args.items() if a is not None and (k == "params" or jnp.ndim(a) > unbatched_ndim[k])}
    shared = {k: a for k, a in args.items() if k not in mapped}

    def one(m):
        return fn(**m, **shared)

    return jax.lax.map(one, mapped, batch_size=min(V, block or VARIANT_BLOCK))


@functools.partial(jax.jit, static_argnames=("activation", "recurrent_activation", "wrt", "batched", "norm"))
def _lag_norms(params, xs, h0, c0, *, activation, recurrent_activation, wrt, batched, norm="frobenius"):
    def one(params, xs, h0, c0):
        state = initial_state(params, h0, c0)
        H = params.hidden_size
        dims = slice(0, H) if wrt == "h" else slice(None)
        s0 = jnp.concatenate([state.h, state.c])
        return lstm_lag_profile(params, s0, xs, dims, activation, recurrent_activation, norm)

    if not batched:
        return one(params, xs, h0, c0)
    V, H = params.U.shape[0], params.U.shape[-2]
    block = lag_profile_block(V, H, H if wrt == "h" else 2 * H, jnp.dtype(params.U.dtype).itemsize)
    return _over_variants(one, V, params, xs, h0, c0, block=block)


def lag_norms(
    params: LSTMParams,
    xs: Array,
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    wrt: str = "h",
    h0: Array | None = None,
    c0: Array | None = None,
    norm: str = "frobenius",
) -> Array:
    r"""Lag profile of an LSTM: ``log10 ||dh_T / dh_{T-k}||_F`` for every lag k = 1..T, by lag.

    With ``wrt="h"`` the Jacobian holds ``c_t`` fixed; with ``wrt="state"`` it is
    ``log10 ||ds_T / ds_t||_F`` for the full state ``s = (h, c)``. Exact to rounding at any depth
    (see the module docstring), following the dtype of the inputs.

    Args:
      params: :class:`LSTMParams`, one variant or a leading variants axis V.
      xs: inputs (T, D), or (V, T, D) for per-variant inputs.
      activation: cell activation (see :data:`gradflow.lstm.cell.ACTIVATIONS`).
      recurrent_activation: gate activation.
      wrt: ``"h"`` or ``"state"``.
      h0, c0: initial state (H,) or (V, H); zeros if None.
      norm: ``"frobenius"`` (default) or ``"spectral"``: ``log10 sigma_max(dh_T/dh_{T-k})``, the top
        singular value of the same renormalised accumulator block (``sigma_max(M_t) + e log10 2``), so
        equally exact at any depth. ``||J||_F / sqrt(n) <= ||J||_2 <= ||J||_F`` (n = H or 2H). Cost: one
        SVD of the (R, n) block per step, ~10 n^3 FLOPs against the pullback's 2 R H^2 multiply-adds:
        measured 2.4x / 4.6x / 8.4x the Frobenius profile's time for H = 8 / 32 / 64 (float32, T = 500, CPU).

    Returns:
      (T,) or (V, T), by lag: entry ``k - 1`` is lag ``k`` (index 0 = lag 1, the last step), as the
      results store holds profiles. ``-inf`` where the Jacobian is exactly zero.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> p = init_lstm(jax.random.key(0), 2, 4)
      >>> lag_norms(p, jnp.ones((50, 2))).shape
      (50,)
    """
    check_options(activation, recurrent_activation, wrt)
    check_norm(norm)
    V = check_lstm_inputs(params, xs, h0, c0)
    if norm == "frobenius":  # the historical call, unchanged (bit-identical results, same compiled cache entry)
        return _lag_norms(
            LSTMParams(*params), xs, h0, c0,
            activation=activation, recurrent_activation=recurrent_activation, wrt=wrt, batched=V is not None,
        )
    return _lag_norms(
        LSTMParams(*params), xs, h0, c0,
        activation=activation, recurrent_activation=recurrent_activation, wrt=wrt, batched=V is not None, norm=norm,
    )


def loss_grad_norms(
    params: LSTMParams,
    xs: Array,
    loss_fn: Callable[[Array], Array],
    *,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
) -> Array:
    r"""``log10 ||dL/dh_t||`` for t = 0..T from one backward pass, ``L = loss_fn(h_1, ..., h_T)``.

    The gradient is the total derivative through all later steps with ``c_t`` held fixed,
    accumulated with renormalisation (exact at any depth).

    Args:
      params: :class:`LSTMParams`, one variant or a leading variants axis V.
      xs: inputs (T, D) or (V, T, D).
      loss_fn: maps the hidden states ``hs`` (T, H) (``hs[t-1] = h_t``) to a scalar loss.
      activation, recurrent_activation, h0, c0: as in :func:`lag_norms`.

    Returns:
      (T + 1,) or (V, T + 1): entry ``t`` is ``log10 ||dL/dh_t||``, t = 0 the initial state.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> p = init_lstm(jax.random.key(0), 2, 4)
      >>> loss_grad_norms(p, jnp.ones((10, 2)), lambda hs: jnp.sum(hs[-1])).shape
      (11,)
    """
    check_options(activation, recurrent_activation)
    V = check_lstm_inputs(params, xs, h0, c0)
    return _loss_grad_norms(
        LSTMParams(*params), xs, h0, c0, loss_fn,
        activation=activation, recurrent_activation=recurrent_activation, batched=V is not None,
    )


@functools.partial(jax.jit, static_argnames=("loss_fn", "activation", "recurrent_activation", "batched"))
def _loss_grad_norms(params, xs, h0, c0, loss_fn, *, activation, recurrent_activation, batched):
    def one(params, xs, h0, c0):
        state = initial_state(params, h0, c0)
        H = params.hidden_size
        step, pullback = _flat_lstm(params, activation, recurrent_activation)
        s_T, consumed = _forward_states(step, jnp.concatenate([state.h, state.c]), xs)
        hs = jnp.concatenate([consumed[1:, :H], s_T[None, :H]])  # h_1 .. h_T, from the one forward pass
        direct_h = jax.grad(loss_fn)(hs)
        direct = jnp.concatenate([direct_h, jnp.zeros_like(direct_h)], axis=-1)
        return _loss_profile(pullback, consumed, xs, direct, slice(0, H))

    return _over_variants(one, params.U.shape[0] if batched else None, params, xs, h0, c0)


def horizon(profile: Array, *, decades: float = 10.0) -> Array:
    r"""First lag at which the profile falls below ``10^-decades``.

    Args:
      profile: log10 norms by lag, (..., T), entry ``k - 1`` for lag k (as :func:`lag_norms` returns
        them and the results store holds them).
      decades: k in the threshold ``10^-k``.

    Returns:
      Float array (...): the lag in 1..T, ``inf`` if the profile never falls that low, NaN if it
      holds a NaN.

    Example:
      >>> import jax.numpy as jnp
      >>> float(horizon(jnp.array([-1.0, -2.0, -3.0, -4.0]), decades=2.5))  # lags 1..4
      3.0
    """
    lagged = profile
    below = lagged < -decades
    first = jnp.argmax(below, axis=-1).astype(profile.dtype) + 1
    result = jnp.where(jnp.any(below, axis=-1), first, jnp.inf)
    return jnp.where(jnp.any(jnp.isnan(profile), axis=-1), jnp.nan, result)


def decay_rate(profile: Array) -> Array:
    r"""Least-squares slope of a by-lag profile against lag, in decades per step (negative: vanishing).

    Only finite entries enter the fit. A profile that is ``-inf`` from some lag on (an exactly
    zero Jacobian) with fewer than two finite entries gives ``-inf``; NaN if any entry is NaN or
    fewer than two entries are finite otherwise.

    Example:
      >>> import jax.numpy as jnp
      >>> float(decay_rate(jnp.array([-1.0, -2.0, -3.0])))  # lags 1, 2, 3
      -1.0
    """
    lagged = profile
    lags = jnp.broadcast_to(jnp.arange(1, lagged.shape[-1] + 1, dtype=profile.dtype), lagged.shape)
    w = jnp.isfinite(lagged).astype(profile.dtype)
    y = jnp.where(w > 0, lagged, 0)
    n = jnp.sum(w, axis=-1)
    safe_n = jnp.maximum(n, 1)
    mean_x = jnp.sum(w * lags, axis=-1) / safe_n
    mean_y = jnp.sum(y, axis=-1) / safe_n
    dx = (lags - mean_x[..., None]) * w
    cov = jnp.sum(dx * (y - mean_y[..., None]), axis=-1)
    var = jnp.sum(dx * dx, axis=-1)
    slope = cov / jnp.where(var > 0, var, 1)
    few = n < 2
    slope = jnp.where(few, jnp.where(jnp.any(jnp.isneginf(lagged), axis=-1), -jnp.inf, jnp.nan), slope)
    return jnp.where(jnp.any(jnp.isnan(lagged), axis=-1), jnp.nan, slope)
