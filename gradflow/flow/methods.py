r"""How a lag profile is computed: the methods a sweep config names, their cost, memory and accuracy.

:class:`Method` is the documented choice (``[analysis] method = "exact" | "spectral" | "probes"``);
:func:`estimate_lag_norms` computes a profile by any of them and returns its standard error where the
method has one. The Lyapunov spectrum (``[analysis] lyapunov = k``) is a separate measurement with its
own error: :func:`lyapunov_with_stderr`.
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradflow.flow.engine import lag_norms
from gradflow.flow.lyapunov import lstm_finite_time_exponents
from gradflow.flow.probes import probe_lag_norms
from gradflow.lstm.cell import LSTMParams

Array = jax.Array


class Method(str, enum.Enum):
    r"""A way to compute the lag profile ``log10 ||dh_T / dh_{T-k}||``, k = 1..T.

    Per variant and step, with H units, n = H (``wrt="h"``) or 2H (``wrt="state"``) and R probes:

    ==========  ============================================  ==============================  ========================
    method      quantity, accuracy                            cost per step                   memory
    ==========  ============================================  ==============================  ========================
    exact       Frobenius norm, exact to rounding at any      one (n, 2H) x (2H, H) product:  forward states (T, 2H) and
                depth (renormalised)                          2 n H^2 multiply-adds           coefficients (T, 6H), one
                                                                                              (n, 2H) accumulator
    spectral    largest singular value, exact to rounding;    exact's product and an SVD of   as exact
                ``||J||_F / sqrt(n) <= ||J||_2 <= ||J||_F``   the (n, n) block: ~10 n^3;
                                                              measured 2.4-8.4x exact at
                                                              H = 8..64 (CPU)
    probes      Frobenius norm estimated from R Gaussian      2 R H^2 multiply-adds: H / R    as exact, with an (R, 2H)
                probes, with a per-lag standard error in      cheaper; measured 10x faster    accumulator
                decades (relative spread at most              at H = 512, T = 512, R = 16
                ``sqrt(2 / R)``); 16 probes: median error     (2-core CPU)
                0.012 decades at H = 512, bars covering
                ~60% / ~93% at 1 / 2 s.e. (nominal 68/95)
    ==========  ============================================  ==============================  ========================

    See :func:`gradflow.flow.engine.lag_norms` and :func:`gradflow.flow.probes.probe_lag_norms`.
    """

    EXACT = "exact"
    SPECTRAL = "spectral"
    PROBES = "probes"


#: Counted windows of :func:`lyapunov_with_stderr` (after one transient window): the batch means of its error.
LYAPUNOV_WINDOWS = 8

#: The method names a config may give, in :class:`Method`'s order.
METHODS: tuple[str, ...] = tuple(m.value for m in Method)


def as_method(name: str | Method) -> Method:
    """``name`` as a :class:`Method`; a ValueError naming ``method`` and the choices otherwise."""
    try:
        return Method(name)
    except ValueError:
        raise ValueError(f"method={name!r} is not known; expected one of {list(METHODS)}") from None


class LagEstimate(NamedTuple):
    """A lag profile by lag (entry ``k - 1`` is lag ``k``) and its standard error in decades (None: exact)."""

    log10_norm: Array
    stderr: Array | None


def estimate_lag_norms(
    params: LSTMParams,
    xs: Array,
    *,
    method: str | Method = Method.EXACT,
    wrt: str = "h",
    key: Array | None = None,
    probes: int = 16,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> LagEstimate:
    """The lag profile of one LSTM or a variants batch by ``method`` (see :class:`Method`).

    Args:
      params: :class:`LSTMParams`, optionally with a leading variants axis V.
      xs: inputs (T, D) or (V, T, D).
      method: ``"exact"``, ``"spectral"`` or ``"probes"``.
      wrt: ``"h"`` or ``"state"``, as in :func:`gradflow.flow.engine.lag_norms`.
      key: the probes' PRNG key, or (V,) keys, one per variant (``"probes"`` only; required there).
      probes: number of probes R (``"probes"`` only).
      activation, recurrent_activation: the cell's activations.

    Returns:
      :class:`LagEstimate`: ``log10_norm`` (T,) or (V, T) and ``stderr`` of the same shape for
      ``"probes"``, None for the exact methods.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.lstm.init import init_lstm
      >>> p, xs = init_lstm(jax.random.key(0), 2, 8), jnp.ones((20, 2))
      >>> est = estimate_lag_norms(p, xs, method="probes", key=jax.random.key(1), probes=8)
      >>> est.log10_norm.shape, est.stderr.shape
      ((20,), (20,))
    """
    chosen = as_method(method)
    options = {"wrt": wrt, "activation": activation, "recurrent_activation": recurrent_activation}
    if chosen is Method.PROBES:
        if key is None:
            raise ValueError('key: method="probes" needs a PRNG key (jax.random.key) or one per variant')
        return LagEstimate(*probe_lag_norms(params, xs, key, probes=probes, **options))
    if key is not None:
        raise ValueError(f"key: method={chosen.value!r} is exact and draws nothing; pass key only with \"probes\"")
    norm = "spectral" if chosen is Method.SPECTRAL else "frobenius"
    return LagEstimate(lag_norms(params, xs, norm=norm, **options), None)


def lyapunov_with_stderr(
    params: LSTMParams,
    xs: Array,
    *,
    k: int,
    windows: int = LYAPUNOV_WINDOWS,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[Array, Array]:
    r"""The k leading Lyapunov exponents of one LSTM's state ``(h, c)`` driven by ``xs``, with standard errors.

    The T steps are cut into ``windows + 1`` windows of ``w = T // (windows + 1)`` steps; the first aligns
    the tangent vectors (a transient, not counted) and each later one gives finite-time exponents
    ``lambda^(j)`` (:func:`gradflow.flow.lyapunov.lstm_finite_time_exponents`). The estimate is their
    mean and its error the batch-means standard error ``sd_j(lambda^(j)) / sqrt(windows)`` (natural log
    per step): honest when a window is longer than the dynamics' correlation time.

    Args:
      params: one variant's :class:`LSTMParams`.
      xs: inputs (T, D), T >= 2 (windows + 1).
      k: number of exponents, 1 <= k <= 2H.
      windows: counted windows (>= 2).
      activation, recurrent_activation: the cell's activations.

    Returns:
      ``(exponents, stderr)``, each (k,), exponents in QR order (descending once the transient has aligned the
      tangent vectors; close exponents may stay out of order over a short run).
    """
    if not isinstance(windows, int) or isinstance(windows, bool) or windows < 2:
        raise ValueError(f"windows must be an int >= 2 (a standard error needs two); got {windows!r}")
    T = xs.shape[0]
    window = T // (windows + 1)
    if window < 2:
        raise ValueError(f"xs: T = {T} steps is too short for {windows} windows of at least 2 steps after a "
                         f"transient; need T >= {2 * (windows + 1)}")
    per = lstm_finite_time_exponents(params, xs[: window * (windows + 1)], k=k, window=window,
                                     activation=activation, recurrent_activation=recurrent_activation)[1:]
    return jnp.mean(per, axis=0), jnp.std(per, axis=0, ddof=1) / math.sqrt(windows)


__all__ = ["LYAPUNOV_WINDOWS", "METHODS", "LagEstimate", "Method", "as_method", "estimate_lag_norms", "lyapunov_with_stderr"]
