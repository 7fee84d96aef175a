"""Independent float64 references for the tests: Python loops, explicit Jacobians, numpy products."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.lstm.cell import LSTMParams, LSTMState, lstm_step


def random_params(rng, D, H, *, scale=1.0, forget_bias=0.0, dtype=np.float64) -> LSTMParams:
    """Gaussian kernels with entries N(0, scale^2 / fan_in) and a forget-gate bias."""
    W = rng.normal(size=(D, 4 * H)) * scale / np.sqrt(D)
    U = rng.normal(size=(H, 4 * H)) * scale / np.sqrt(H)
    b = rng.normal(size=4 * H) * 0.1
    b[H : 2 * H] += forget_bias
    return LSTMParams(*(jnp.asarray(a, dtype) for a in (W, U, b)))


def loop_states(params, xs, act="tanh", gate="sigmoid"):
    """States s_0..s_T as a Python list of LSTMState, stepping the cell in a Python loop."""
    H = params.U.shape[0]
    s = LSTMState(jnp.zeros(H, xs.dtype), jnp.zeros(H, xs.dtype))
    out = [s]
    for x in xs:
        s = lstm_step(params, s, x, activation=act, recurrent_activation=gate)
        out.append(s)
    return out


def jacrev_lag_norms(params, xs, *, wrt="h", act="tanh"):
    """log10 ||dh_T/dh_{T-k}|| (c fixed) or ||ds_T/ds_{T-k}|| for lags k = 1..T (by lag), by jax.jacrev of a
    Python-loop unroll."""
    states = loop_states(params, xs, act)
    T, H = len(xs), params.U.shape[0]
    out = []
    for t in range(T):
        def from_t(v, t=t):
            s = LSTMState(v[:H], v[H:]) if wrt == "state" else LSTMState(v, states[t].c)
            for x in xs[t:]:
                s = lstm_step(params, s, x, activation=act)
            return jnp.concatenate([s.h, s.c]) if wrt == "state" else s.h

        v = jnp.concatenate([states[t].h, states[t].c]) if wrt == "state" else states[t].h
        out.append(np.log10(np.linalg.norm(np.asarray(jax.jacrev(from_t)(v)))))
    return np.array(out)[::-1]


def step_jacobians(params, xs, act="tanh"):
    """Explicit per-step Jacobians A_t = ds_t/ds_{t-1} (2H, 2H), t = 1..T, in float64 numpy."""
    p64 = LSTMParams(*(jnp.asarray(a, jnp.float64) for a in params))
    x64 = jnp.asarray(xs, jnp.float64)
    H = p64.U.shape[0]

    def flat(v, x):
        s = lstm_step(p64, LSTMState(v[:H], v[H:]), x, activation=act)
        return jnp.concatenate([s.h, s.c])

    states = loop_states(p64, x64, act)
    jac = jax.jit(jax.jacfwd(flat))
    return [np.asarray(jac(jnp.concatenate([s.h, s.c]), x)) for s, x in zip(states[:-1], x64)]


def renormalised_product_norms(jacobians, rows, cols):
    """log10 ||(A_T ... A_{t+1})[rows, cols]||_F by lag k = T - t = 1..T, numpy float64, rescaled every step."""
    n = jacobians[0].shape[0]
    M = np.eye(n)[rows]
    log10_scale = 0.0
    out = np.empty(len(jacobians))
    for t in range(len(jacobians) - 1, -1, -1):
        M = M @ jacobians[t]
        out[t] = log10_scale + np.log10(np.linalg.norm(M[:, cols]))
        scale = np.linalg.norm(M)
        M /= scale
        log10_scale += np.log10(scale)
    return out[::-1]
