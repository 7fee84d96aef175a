"""Random-probe lag norms against the exact engine: coverage of the stated error bars, accuracy with many probes,
depth far below float32's range, wrt="state", variants, and input errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.flow.probes import probe_lag_norms
from gradflow.lstm.cell import LSTMParams
from gradflow.lstm.init import init_lstm


def _lstm(seed, D, H, T, dtype=jnp.float64, scale=1.0, forget_bias=None):
    p = init_lstm(jax.random.key(seed), D, H)
    b = p.b if forget_bias is None else p.b.at[H:2 * H].set(forget_bias)
    p = LSTMParams(p.W.astype(dtype), (scale * p.U).astype(dtype), b.astype(dtype))
    return p, jax.random.normal(jax.random.key(seed + 100), (T, D), dtype)


@pytest.mark.slow
@pytest.mark.parametrize(("seed", "H", "T", "wrt"), [(0, 16, 50, "h"), (1, 24, 60, "state")])
def test_error_bars_cover_the_exact_profile_at_the_nominal_rate(seed, H, T, wrt):
    p, xs = _lstm(seed, 3, H, T)
    exact = np.asarray(gf.lag_norms(p, xs, wrt=wrt))
    n = 200
    est, err = jax.vmap(lambda k: probe_lag_norms(p, xs, k, probes=64, wrt=wrt))(jax.random.split(jax.random.key(7), n))
    est, err = np.asarray(est), np.asarray(err)
    for lag in (1, T // 4, T):  # each lag: n independent probe sets
        miss = np.abs(est[:, lag - 1] - exact[lag - 1])
        for z, nominal in ((1.0, 0.6827), (2.0, 0.9545)):
            rate = np.mean(miss <= z * err[:, lag - 1])
            assert abs(rate - nominal) <= 3 * math.sqrt(nominal * (1 - nominal) / n) + 0.01, (lag, z, rate)
    # the bars are honest in size too: the spread of the estimates over keys matches the mean stated stderr
    np.testing.assert_allclose(est.std(axis=0), err.mean(axis=0), rtol=0.3)


def test_many_probes_agree_with_the_exact_profile_to_0_02_decades():
    H = 16
    p, xs = _lstm(3, 3, H, 50)
    est, err = probe_lag_norms(p, xs, jax.random.key(0), probes=H * 64)
    exact = gf.lag_norms(p, xs)
    assert float(jnp.max(jnp.abs(est - exact))) < 0.02
    assert 0.0 < float(jnp.max(err)) < 0.02


def test_one_step_jacobian_norm_is_recovered_by_many_probes():
    # T = 1: the single lag is the step Jacobian itself; 8 x 4096 probes pin its norm to ~0.005 decades
    p, xs = _lstm(4, 2, 8, 1)
    exact = float(gf.lag_norms(p, xs)[0])
    est, _ = jax.vmap(lambda k: probe_lag_norms(p, xs, k, probes=4096))(jax.random.split(jax.random.key(1), 8))
    assert abs(float(jnp.mean(est)) - exact) < 0.005


def test_depth_below_1e_300_in_float32_stays_finite_and_within_its_bars():
    p, xs = _lstm(5, 2, 16, 220, dtype=jnp.float32, scale=0.1, forget_bias=-6.0)
    exact = np.asarray(gf.lag_norms(p, xs))
    assert exact.dtype == np.float32 and exact[-1] < -300
    est, err = probe_lag_norms(p, xs, jax.random.key(2), probes=32)
    est, err = np.asarray(est), np.asarray(err)
    assert est.dtype == np.float32 and np.all(np.isfinite(est)) and np.all(np.isfinite(err)) and np.all(err > 0)
    assert np.mean(np.abs(est - exact) <= 2 * err) > 0.8  # lags share the probes: a loose joint check
    assert np.max(np.abs(est - exact) / err) < 5


def test_variants_axis_matches_a_loop_with_split_keys():
    V, H, T = 3, 8, 20
    ps = [_lstm(10 + v, 2, H, T)[0] for v in range(V)]
    batched = LSTMParams(*(jnp.stack(a) for a in zip(*ps)))
    xs = jax.random.normal(jax.random.key(9), (T, 2), jnp.float64)
    est, err = probe_lag_norms(batched, xs, jax.random.key(3), probes=8)
    assert est.shape == err.shape == (V, T)
    for v, k in enumerate(jax.random.split(jax.random.key(3), V)):
        e1, s1 = probe_lag_norms(ps[v], xs, k, probes=8)
        np.testing.assert_allclose(est[v], e1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(err[v], s1, rtol=1e-12, atol=1e-12)
    # One key per variant: each variant's estimate is what it gets alone with its key, whatever its neighbours.
    keys = jax.random.split(jax.random.key(4), V)
    est, _ = probe_lag_norms(batched, xs, keys, probes=8)
    np.testing.assert_allclose(est[2], probe_lag_norms(ps[2], xs, keys[2], probes=8)[0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="key: 2 keys given for V = 3"):
        probe_lag_norms(batched, xs, keys[:2], probes=8)


def test_debias_adds_ln10_stderr_squared():
    p, xs = _lstm(6, 2, 8, 10)
    e0, s0 = probe_lag_norms(p, xs, jax.random.key(0), probes=4)
    e1, s1 = probe_lag_norms(p, xs, jax.random.key(0), probes=4, debias=True)
    np.testing.assert_allclose(e1, e0 + math.log(10) * s0**2, rtol=1e-12)
    np.testing.assert_allclose(s1, s0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"probes": 1}, "probes"), ({"probes": 2.0}, "probes"), ({"wrt": "c"}, "wrt"),
     ({"activation": "nope"}, "activation")],
)
def test_bad_options_raise_naming_the_argument(kwargs, match):
    p, xs = _lstm(0, 2, 4, 5)
    with pytest.raises(ValueError, match=match):
        probe_lag_norms(p, xs, jax.random.key(0), **kwargs)


def test_bad_shapes_and_keys_raise():
    p, xs = _lstm(0, 2, 4, 5)
    with pytest.raises(ValueError, match="xs"):
        probe_lag_norms(p, xs[:, :1], jax.random.key(0))
    with pytest.raises(ValueError, match="params.b"):
        probe_lag_norms(LSTMParams(p.W, p.U, p.b[:3]), xs, jax.random.key(0))
    with pytest.raises(ValueError, match="key"):
        probe_lag_norms(p, xs, jax.random.PRNGKey(0))
