r"""Lyapunov spectra of recurrences ``s_t = step(s_{t-1}, x_t)`` by QR re-orthonormalisation.

The k leading exponents are the growth rates of the product of step Jacobians
``J_t = ds_t/ds_{t-1}``: k orthonormal tangent vectors ``Q`` (n, k) are pushed forward,
``Q <- J_t Q`` (forward mode, :func:`jax.linearize` once per step and one JVP per column, vmapped),
and every ``reortho_every`` steps ``Q R = Q`` is re-orthonormalised with ``diag(R) >= 0``;
``lambda_i = (1/T) sum log R_ii``, in natural log per step. They come in the QR method's order, which is
descending once the tangent vectors have aligned with the growth directions; over a short run (or between
exponents closer than their finite-time scatter) neighbours may be out of order. They are not sorted, since
column i tracks the i-th direction.

Cost: ``O(T k n^2)`` for the JVPs of a dense step plus ``O((T / reortho_every) n k^2)`` for the QRs;
memory ``O(n k)`` (``lax.scan``, nothing stored per step). Accuracy: the log sums are exact to
rounding at any depth (the scale lives in the logs); the estimate itself converges like a
finite-time average, ``O(1/sqrt(T))`` for chaotic or input-driven dynamics and ``O(1/T)`` (the
alignment transient) for a fixed linear map. Between QRs the columns of ``J...J Q`` must neither
overflow nor collapse onto one another: keep ``reortho_every`` small where exponents are far apart.

Measured limits (``benchmarks/bench_lyapunov.py``, LSTMs with H = 32..256, float32):

- Start-up bias: the tangent vectors start at the first k unit vectors, and the nats lost while they align
  (2-6 nats for the leading exponent at default initialisation) bias a T-step estimate by that over T. At
  T = 512 the leading exponent was 16-20% off the profile's long-lag slope for H = 64 and 256; at T = 4096
  within 3%. Use ``transient=`` (the windows of :func:`finite_time_exponents` show when it has settled).
- Float32 and ``reortho_every``: between QRs the columns spread by ``reortho_every (lambda_1 - lambda_k)``
  nats; beyond about 16 (``ln 1/eps``) the lower exponents are lost without an error. k = 2H with QR every
  10 steps moved exponents by 2.6-4.1 nats per step; k <= H agreed with QR every step to 2e-6.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from gradflow.lstm.cell import LSTMParams, LSTMState, lstm_step

Array = jax.Array

#: ``linearise(s, x) -> (s_next, push)`` with ``push(v)`` the tangent map of one step applied to one vector.
Linearise = Callable[[Array, Array], tuple[Array, Callable[[Array], Array]]]


def _check(n: int, k: int | None, reortho_every: int, T: int, transient: int = 0) -> int:
    k = n if k is None else k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an integer in [1, n={n}]")
    if not isinstance(reortho_every, int) or reortho_every < 1:
        raise ValueError(f"reortho_every={reortho_every!r} must be an integer >= 1")
    if not isinstance(transient, int) or not 0 <= transient < T:
        raise ValueError(f"transient={transient!r} must be an integer in [0, T={T})")
    return k


def _positive_qr(M: Array) -> tuple[Array, Array]:
    """Reduced QR of M (n, k) with diag(R) >= 0; returns (Q, log|diag R|)."""
    Q, R = jnp.linalg.qr(M)
    d = jnp.diagonal(R)
    sign = jnp.where(d < 0, -1.0, 1.0).astype(M.dtype)
    return Q * sign[None, :], jnp.log(jnp.abs(d))


def _block_logs(linearise: Linearise, s0: Array, Q0: Array, xs: Array, r: int) -> Array:
    """log|diag R| summed per QR block: (ceil(T / r), k); the last block holds the T % r leftover steps."""

    def advance(carry, x):
        s, Q = carry
        s_next, push = linearise(s, x)
        return (s_next, jax.vmap(push, in_axes=1, out_axes=1)(Q)), None

    def block(carry, xb):
        (s, Q), _ = lax.scan(advance, carry, xb)
        Q, logs = _positive_qr(Q)
        return (s, Q), logs

    T = xs.shape[0]
    nb = T // r
    carry, logs = lax.scan(block, (s0, Q0), xs[: nb * r].reshape((nb, r) + xs.shape[1:]))
    if T % r:
        _, tail = block(carry, xs[nb * r:])
        logs = jnp.concatenate([logs, tail[None]])
    return logs


def _generic(step: Callable[[Array, Array], Array]) -> Linearise:
    def linearise(s, x):
        return jax.linearize(lambda v: step(v, x), s)

    return linearise


def _start(s0: Array, xs: Array, k: int | None, reortho_every: int, transient: int = 0) -> tuple[int, Array]:
    s0 = jnp.asarray(s0)
    if s0.ndim != 1:
        raise ValueError(f"s0 must be a flat state (n,); got shape {s0.shape}")
    if jnp.ndim(xs) < 1:
        raise ValueError(f"xs must have a leading time axis (T, ...); got shape {jnp.shape(xs)}")
    k = _check(s0.shape[0], k, reortho_every, jnp.shape(xs)[0], transient)
    return k, jnp.eye(s0.shape[0], k, dtype=s0.dtype)


def _spectrum(linearise: Linearise, s0: Array, xs: Array, Q0: Array, reortho_every: int, transient: int) -> Array:
    if transient:
        s0, Q0 = _warm_up(linearise, s0, Q0, xs[:transient])
        xs = xs[transient:]
    logs = _block_logs(linearise, s0, Q0, xs, reortho_every)
    return jnp.sum(logs, axis=0) / xs.shape[0]


def _warm_up(linearise: Linearise, s0: Array, Q0: Array, xs: Array) -> tuple[Array, Array]:
    """Run the trajectory and align Q over ``xs``, discarding the growth (QR every step)."""

    def advance(carry, x):
        s, Q = carry
        s_next, push = linearise(s, x)
        return (s_next, _positive_qr(jax.vmap(push, in_axes=1, out_axes=1)(Q))[0]), None

    return lax.scan(advance, (s0, Q0), xs)[0]


def lyapunov_spectrum(
    step: Callable[[Array, Array], Array],
    s0: Array,
    xs: Array,
    *,
    k: int | None = None,
    reortho_every: int = 1,
    transient: int = 0,
) -> Array:
    r"""The k leading Lyapunov exponents of ``s_t = step(s_{t-1}, x_t)``, natural log per step, in QR order
    (descending once aligned; see the module docstring).

    ``lambda_i = (1/T') sum_t log R_ii(t)`` from the QR re-orthonormalisation of k tangent vectors
    (see the module docstring), started from the first k columns of the identity. The first
    ``transient`` steps move the state and align the tangent vectors but are not counted
    (``T' = T - transient``). Pure and jittable with ``step``, ``k``, ``reortho_every`` and
    ``transient`` static.

    Args:
      step: ``step(s, x) -> s'`` on flat states (n,); any JAX-traceable function.
      s0: initial state (n,).
      xs: inputs (T, ...), one per step (zeros for an autonomous map the step ignores).
      k: number of exponents, 1 <= k <= n; n if None.
      reortho_every: steps between QRs (>= 1); the answer is the same to rounding while the
        unnormalised columns stay finite and distinct.
      transient: leading steps not counted, 0 <= transient < T.

    Returns:
      (k,) exponents; ``sum`` over the full spectrum (k = n) is the mean ``log|det J_t|``.

    Example (the Henon map, exponents 0.419 and -1.623):
      >>> import jax.numpy as jnp
      >>> henon = lambda s, x: jnp.stack([1 - 1.4 * s[0] ** 2 + s[1], 0.3 * s[0]])
      >>> lam = lyapunov_spectrum(henon, jnp.zeros(2), jnp.zeros((5000, 1)), transient=100)
      >>> [round(float(v), 1) for v in lam]
      [0.4, -1.6]
    """
    k, Q0 = _start(s0, xs, k, reortho_every, transient)
    return _spectrum(_generic(step), jnp.asarray(s0), jnp.asarray(xs), Q0, reortho_every, transient)


def finite_time_exponents(
    step: Callable[[Array, Array], Array],
    s0: Array,
    xs: Array,
    *,
    k: int | None = None,
    window: int = 100,
    reortho_every: int = 1,
    running: bool = False,
) -> Array:
    r"""Finite-time exponents over consecutive windows of ``window`` steps: (T // window, k).

    Row w is ``(1/window) sum log R_ii`` over steps ``[w window, (w+1) window)`` (tangent vectors
    carried across windows, so rows after the first are aligned); with ``running=True`` row w is
    the running estimate over steps ``[0, (w+1) window)``, which converges to
    :func:`lyapunov_spectrum`. Leftover steps past the last whole window are dropped.

    Args:
      step, s0, xs, k: as :func:`lyapunov_spectrum`.
      window: steps per window, a multiple of ``reortho_every`` and at most T.
      reortho_every: steps between QRs.
      running: cumulative averages instead of per-window ones.

    Example:
      >>> import jax.numpy as jnp
      >>> lin = lambda s, x: 0.5 * s
      >>> finite_time_exponents(lin, jnp.ones(3), jnp.zeros((25, 1)), k=1, window=10).shape
      (2, 1)
    """
    k, Q0 = _start(s0, xs, k, reortho_every)
    T = jnp.shape(xs)[0]
    if not isinstance(window, int) or not 1 <= window <= T or window % reortho_every:
        raise ValueError(f"window={window!r} must be an integer in [1, T={T}] and a multiple of "
                         f"reortho_every={reortho_every}")
    W = T // window
    logs = _block_logs(_generic(step), jnp.asarray(s0), Q0, jnp.asarray(xs)[: W * window], reortho_every)
    per = logs.reshape(W, window // reortho_every, k).sum(axis=1)
    if running:
        return jnp.cumsum(per, axis=0) / (window * jnp.arange(1, W + 1, dtype=per.dtype)[:, None])
    return per / window


def lstm_lyapunov_spectrum(
    params: LSTMParams,
    xs: Array,
    *,
    k: int | None = None,
    wrt: str = "state",
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
    reortho_every: int = 1,
    transient: int = 0,
) -> Array:
    r"""Lyapunov exponents of one LSTM driven by ``xs`` (T, D), natural log per step, in QR order (descending once
    aligned).

    The exponents of the flat state ``s = (h, c)`` (n = 2H, k default 2H): ``wrt="state"`` is the only
    choice, since the spectrum belongs to the full-state dynamics. The largest exponent is the asymptotic
    slope of :func:`gradflow.lag_norms` (``wrt="state"``, and generically ``wrt="h"`` too, whose products
    run through the same full-state Jacobians) times ``ln 10``.

    Args:
      params: one variant's :class:`LSTMParams`.
      xs: inputs (T, D).
      k, reortho_every, transient: as :func:`lyapunov_spectrum`.
      wrt: ``"state"``.
      activation, recurrent_activation: as :func:`gradflow.lstm.cell.lstm_step`.
      h0, c0: initial state (H,); zeros if None.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> p = init_lstm(jax.random.key(0), 2, 3)
      >>> lstm_lyapunov_spectrum(p, jnp.ones((20, 2))).shape
      (6,)
    """
    if wrt != "state":
        raise ValueError(f"wrt={wrt!r} must be 'state' (the spectrum of the full state s = (h, c))")
    step, s0 = _lstm_state_map(params, xs, activation, recurrent_activation, h0, c0)
    return lyapunov_spectrum(step, s0, xs, k=k, reortho_every=reortho_every, transient=transient)


def lstm_finite_time_exponents(
    params: LSTMParams,
    xs: Array,
    *,
    k: int | None = None,
    window: int = 100,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
    h0: Array | None = None,
    c0: Array | None = None,
    reortho_every: int = 1,
    running: bool = False,
) -> Array:
    """:func:`finite_time_exponents` of one LSTM's state ``s = (h, c)`` driven by ``xs`` (T, D): (T // window, k).

    Arguments as :func:`lstm_lyapunov_spectrum` and :func:`finite_time_exponents`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> lstm_finite_time_exponents(init_lstm(jax.random.key(0), 2, 3), jnp.ones((40, 2)), k=2, window=10).shape
      (4, 2)
    """
    step, s0 = _lstm_state_map(params, xs, activation, recurrent_activation, h0, c0)
    return finite_time_exponents(step, s0, xs, k=k, window=window, reortho_every=reortho_every, running=running)


def _lstm_state_map(params, xs, activation, recurrent_activation, h0, c0):
    """``(step, s0)``: one LSTM as a map of its flat state ``s = (h, c)`` (2H,), and the initial state."""
    params = LSTMParams(*params)
    H = params.U.shape[0]
    dtype = params.U.dtype
    h0 = jnp.zeros(H, dtype) if h0 is None else jnp.asarray(h0, dtype)
    c0 = jnp.zeros(H, dtype) if c0 is None else jnp.asarray(c0, dtype)
    if xs.ndim != 2:
        raise ValueError(f"xs must be (T, D); got shape {xs.shape}")
    opts = {"activation": activation, "recurrent_activation": recurrent_activation}

    def step(s, x):
        new = lstm_step(params, LSTMState(s[:H], s[H:]), x, **opts)
        return jnp.concatenate([new.h, new.c])

    return step, jnp.concatenate([h0, c0])
