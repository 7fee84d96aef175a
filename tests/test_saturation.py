"""Gate saturation fractions against a float64 numpy LSTM written out by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.lstm.cell import lstm_gates
from gradflow.flow.saturation import GATE_NAMES, saturation_fractions


def _numpy_gates(params, xs, activation):
    W, U, b = (np.asarray(a, np.float64) for a in params)
    H = U.shape[0]
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}[activation]
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    h, c = np.zeros(H), np.zeros(H)
    out = {k: [] for k in "ifgo"}
    for x in np.asarray(xs, np.float64):
        z = x @ W + h @ U + b
        i, f, g, o = sig(z[:H]), sig(z[H : 2 * H]), act(z[2 * H : 3 * H]), sig(z[3 * H :])
        c = f * c + i * g
        h = o * act(c)
        for k, v in zip("ifgo", (i, f, g, o)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_gates_and_fractions_match_a_numpy_lstm(activation):
    params = gf.init_lstm(jax.random.key(1), 3, 6, forget_bias=2.5, weight_scale=2.0, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(2), (40, 3), jnp.float64) * 2
    want = _numpy_gates(params, xs, activation)
    got = lstm_gates(params, xs, activation=activation)
    assert got._fields == GATE_NAMES == ("input", "forget", "cell", "output")  # one vocabulary for the gates
    for k, name in zip("ifgo", GATE_NAMES):
        np.testing.assert_allclose(np.asarray(getattr(got, name)), want[k], rtol=1e-12, atol=1e-14)
    fractions = saturation_fractions(params, xs, activation=activation)
    outside = lambda v: np.mean((v < 0.05) | (v > 0.95))  # noqa: E731
    expected = {"input": outside(want["i"]), "forget": outside(want["f"]), "cell": np.mean(np.abs(want["g"]) > 0.95),
                "output": outside(want["o"])}
    assert list(fractions) == list(GATE_NAMES)
    for name in GATE_NAMES:
        assert float(fractions[name]) == pytest.approx(expected[name], abs=1e-12), name
    assert 0 < expected["forget"] < 1  # the case is not trivial


def test_bounds_are_overridable_and_nonfinite_gates_give_nan():
    params = gf.init_lstm(jax.random.key(0), 2, 4, dtype=jnp.float64)
    xs = jnp.ones((10, 2), jnp.float64)
    wide = saturation_fractions(params, xs, low=0.0, high=1.0, cell=1.0)
    assert all(float(v) == 0.0 for v in wide.values())
    narrow = saturation_fractions(params, xs, low=0.5, high=0.5, cell=0.0)
    assert all(float(narrow[k]) > 0.9 for k in ("input", "forget", "output"))
    bad = saturation_fractions(params, xs.at[3, 0].set(jnp.nan))
    assert all(np.isnan(float(v)) for v in bad.values())
