"""Spectral lag profiles against explicit float64 Jacobians, the norm sandwich and the Pascanu bound."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import loop_states, random_params, step_jacobians

import gradflow as gf
from gradflow.flow.engine import lag_norms, step_lag_norms
from gradflow.lstm.cell import LSTMState, lstm_step


def jacrev_spectral(params, xs, wrt):
    """log10 sigma_max(dh_T/dh_{T-k}) (c fixed) or of ds_T/ds_{T-k}, by lag, from jacrev of a Python unroll."""
    states = loop_states(params, xs)
    H = params.U.shape[0]
    out = []
    for t in range(len(xs)):
        def from_t(v, t=t):
            s = LSTMState(v[:H], v[H:]) if wrt == "state" else LSTMState(v, states[t].c)
            for x in xs[t:]:
                s = lstm_step(params, s, x)
            return jnp.concatenate([s.h, s.c]) if wrt == "state" else s.h

        v = jnp.concatenate([states[t].h, states[t].c]) if wrt == "state" else states[t].h
        out.append(np.log10(np.linalg.norm(np.asarray(jax.jacrev(from_t)(v)), 2)))
    return np.array(out)[::-1]


def renormalised_spectral(jacobians, dims):
    """log10 sigma_max((A_T ... A_{t+1})[dims, dims]) by lag, numpy float64, rescaled by powers of two each step."""
    M = np.eye(jacobians[0].shape[0])[dims]
    exponent = 0
    out = np.empty(len(jacobians))
    for t in range(len(jacobians) - 1, -1, -1):
        M = M @ jacobians[t]
        out[t] = exponent * np.log10(2.0) + np.log10(np.linalg.norm(M[:, dims], 2))
        _, e = np.frexp(np.max(np.abs(M)))
        M = np.ldexp(M, -e)
        exponent += int(e)
    return out[::-1]


@pytest.mark.parametrize("wrt", ["h", "state"])
@pytest.mark.parametrize("H", [3, 8])
def test_spectral_matches_jacrev_in_float64(rng, wrt, H):
    params = random_params(rng, 2, H, scale=1.5)
    xs = jnp.asarray(rng.normal(size=(12, 2)))
    got = np.asarray(lag_norms(params, xs, wrt=wrt, norm="spectral"))
    np.testing.assert_allclose(got, jacrev_spectral(params, xs, wrt), rtol=0, atol=1e-12)


@pytest.mark.parametrize("wrt", ["h", "state"])
def test_spectral_deep_case_below_1e_minus_100(rng, wrt):
    H, T = 4, 300
    params = random_params(rng, 2, H, scale=0.5, forget_bias=-2.0)
    xs = jnp.asarray(rng.normal(size=(T, 2)))
    dims = slice(0, H) if wrt == "h" else slice(None)
    want = renormalised_spectral(step_jacobians(params, xs), dims)
    assert want[-1] < -100, "the case must be deep"
    got = np.asarray(lag_norms(params, xs, wrt=wrt, norm="spectral"))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_frobenius_default_is_unchanged(rng):
    params = random_params(rng, 2, 5)
    xs = jnp.asarray(rng.normal(size=(20, 2)))
    np.testing.assert_array_equal(lag_norms(params, xs), lag_norms(params, xs, norm="frobenius"))


@pytest.mark.parametrize("wrt", ["h", "state"])
def test_norm_sandwich_on_random_lstms(rng, wrt):
    """||J||_F / sqrt(n) <= ||J||_2 <= ||J||_F at every lag (log10, 1e-12 rounding slack); batched variants."""
    H, V = 6, 5
    n = H if wrt == "h" else 2 * H
    ps = [random_params(rng, 3, H, scale=s) for s in np.linspace(0.5, 2.5, V)]
    params = gf.LSTMParams(*(jnp.stack(a) for a in zip(*ps)))
    xs = jnp.asarray(rng.normal(size=(80, 3)))
    spec = np.asarray(lag_norms(params, xs, wrt=wrt, norm="spectral"))
    frob = np.asarray(lag_norms(params, xs, wrt=wrt))
    assert spec.shape == (V, 80)
    slack = 1e-12 * np.maximum(1.0, np.abs(frob))
    assert np.all(spec <= frob + slack)
    assert np.all(spec >= frob - 0.5 * np.log10(n) - slack)
    assert np.any(spec < frob - 1e-3)  # the two norms differ: the test compares something
    for v in range(V):  # the batched path gives each variant's own profile
        np.testing.assert_allclose(spec[v], lag_norms(ps[v], xs, wrt=wrt, norm="spectral"), rtol=1e-13, atol=1e-13)


def test_norm_is_validated(rng):
    params = random_params(rng, 2, 3)
    with pytest.raises(ValueError, match="norm='nuclear'"):
        lag_norms(params, jnp.ones((4, 2)), norm="nuclear")
    with pytest.raises(ValueError, match="norm="):
        step_lag_norms(lambda s, x: s + x, jnp.zeros(2), jnp.zeros((3, 2)), norm="l1")


def test_pascanu_bound_for_vanilla_rnn():
    """h_t = W tanh(h_{t-1}) + x_t with sigma_max(W) < 1: ||dh_T/dh_{T-k}||_2 <= sigma_max^k (|tanh'| <= 1)."""
    n, T = 5, 60
    for seed in range(20):
        r = np.random.default_rng(seed)
        sigma = r.uniform(0.3, 0.99)
        W = r.normal(size=(n, n))
        W = W * sigma / np.linalg.norm(W, 2)
        Wj = jnp.asarray(W)
        xs = jnp.asarray(r.normal(size=(T, n)) * 2.0)

        def step(h, x, Wj=Wj):
            return Wj @ jnp.tanh(h) + x

        bound = np.arange(1, T + 1) * np.log10(sigma) + 1e-12 * np.arange(1, T + 1)
        spec = np.asarray(step_lag_norms(step, jnp.zeros(n), xs, norm="spectral"))
        frob = np.asarray(step_lag_norms(step, jnp.zeros(n), xs))
        assert np.all(spec <= bound), seed
        assert np.all(frob - 0.5 * np.log10(n) <= bound), seed
        assert spec[0] > bound[0] - 1.5  # not vacuous: lag 1 is within 1.5 decades of the bound
