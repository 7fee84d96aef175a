"""The cell and its scan unroll against a Python loop, a numpy LSTM and flax's OptimizedLSTMCell."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradflow as gf
from gradflow.lstm.cell import ACTIVATIONS, RECURRENT_ACTIVATIONS, initial_state, lstm_linearisation, lstm_pullback
from reference import random_params

#: Tolerances on states (h, c are O(1)) per dtype.
STATE_ATOL = {np.dtype("float32"): 1e-6, np.dtype("float64"): 1e-13}

#: Independent numpy definitions of the activations named in gradflow.lstm.cell.
NP_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "linear": lambda x: x,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
}
NP_GATES = {
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "hard_sigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
}


def numpy_lstm(W, U, b, xs, h0, c0, act="tanh", gate="sigmoid"):
    """The SCIENCE.md equations written out in float64 numpy, gate order (i, f, g, o)."""
    act, gate = NP_ACTIVATIONS[act], NP_GATES[gate]
    H = U.shape[0]
    h, c = np.asarray(h0, np.float64), np.asarray(c0, np.float64)
    hs, cs = [], []
    for x in np.asarray(xs, np.float64):
        z = x @ W + h @ U + b
        i, f, g, o = gate(z[:H]), gate(z[H : 2 * H]), act(z[2 * H : 3 * H]), gate(z[3 * H :])
        c = f * c + i * g
        h = o * act(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def python_loop(params, xs, h0, c0, act, gate):
    state = gf.LSTMState(h0, c0)
    hs, cs = [], []
    for x in xs:
        state = gf.lstm_step(params, state, x, activation=act, recurrent_activation=gate)
        hs.append(state.h)
        cs.append(state.c)
    return np.stack(hs), np.stack(cs)


def test_activation_tables_are_the_documented_ones():
    assert sorted(ACTIVATIONS) == sorted(NP_ACTIVATIONS)
    assert sorted(RECURRENT_ACTIVATIONS) == sorted(NP_GATES)


@pytest.mark.parametrize("gate", sorted(RECURRENT_ACTIVATIONS))
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_unroll_equals_a_python_loop_of_lstm_step(rng, act, gate):
    D, H, T = 3, 4, 11
    params = random_params(rng, D, H, scale=1.3, forget_bias=0.5)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    zeros = jnp.zeros(H)
    got = gf.unroll(params, xs, activation=act, recurrent_activation=gate)
    want_h, want_c = python_loop(params, xs, zeros, zeros, act, gate)
    assert got.h.shape == got.c.shape == (T, H) and got.h.dtype == jnp.float64
    np.testing.assert_allclose(got.h, want_h, rtol=0, atol=STATE_ATOL[np.dtype("float64")])
    np.testing.assert_allclose(got.c, want_c, rtol=0, atol=STATE_ATOL[np.dtype("float64")])
    assert np.max(np.abs(want_h)) > 0.05  # a non-trivial trajectory


@pytest.mark.parametrize("gate", sorted(RECURRENT_ACTIVATIONS))
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_cell_equals_the_numpy_equations(rng, act, gate):
    D, H, T = 3, 5, 9
    params = random_params(rng, D, H, scale=1.5, forget_bias=1.0)
    xs = rng.normal(size=(T, D))
    h0, c0 = rng.normal(size=H) * 0.5, rng.normal(size=H) * 0.5
    got = gf.unroll(
        params, jnp.asarray(xs), activation=act, recurrent_activation=gate, h0=jnp.asarray(h0), c0=jnp.asarray(c0)
    )
    want_h, want_c = numpy_lstm(*(np.asarray(a) for a in params), xs, h0, c0, act, gate)
    np.testing.assert_allclose(got.h, want_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.c, want_c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_cell_gate_order_is_i_f_g_o(dtype):
    """One step from zero state with only one gate's bias open: only that gate's role shows."""
    H = 2
    W, U = jnp.zeros((1, 4 * H), dtype), jnp.zeros((H, 4 * H), dtype)
    big = 40.0  # sigmoid(40) = 1 and sigmoid(-40) = 4e-18 in float64
    b = np.full(4 * H, -big)
    b[2 * H : 3 * H] = 0.5  # g = tanh(0.5)
    b[0:H] = big  # i open
    b[3 * H :] = big  # o open
    params = gf.LSTMParams(W, U, jnp.asarray(b, dtype))
    c_prev = jnp.asarray([3.0, -2.0], dtype)
    s = gf.lstm_step(params, gf.LSTMState(jnp.zeros(H, dtype), c_prev), jnp.zeros(1, dtype))
    # f closed: the old cell is forgotten, c = i * g = tanh(0.5); h = o * tanh(c)
    np.testing.assert_allclose(s.c, np.full(H, np.tanh(0.5)), rtol=STATE_ATOL[np.dtype(dtype)])
    np.testing.assert_allclose(s.h, np.tanh(np.full(H, np.tanh(0.5))), rtol=STATE_ATOL[np.dtype(dtype)])
    b[H : 2 * H] = big  # f open too: c = c_prev + tanh(0.5)
    params = gf.LSTMParams(W, U, jnp.asarray(b, dtype))
    s = gf.lstm_step(params, gf.LSTMState(jnp.zeros(H, dtype), c_prev), jnp.zeros(1, dtype))
    np.testing.assert_allclose(s.c, np.array([3.0, -2.0]) + np.tanh(0.5), rtol=STATE_ATOL[np.dtype(dtype)])
    assert s.c.dtype == dtype


@pytest.mark.parametrize(("act", "gate"), [("tanh", "sigmoid"), ("relu", "hard_sigmoid")])
def test_cell_equals_flax_optimized_lstm_cell(rng, act, gate):
    D, H, T = 3, 4, 8
    params = random_params(rng, D, H, scale=1.2, forget_bias=1.0)
    cell = nnx.OptimizedLSTMCell(
        D, H, gate_fn=RECURRENT_ACTIVATIONS[gate], activation_fn=ACTIVATIONS[act],
        param_dtype=jnp.float64, rngs=nnx.Rngs(0),
    )
    cell.dense_i.kernel[...] = params.W
    cell.dense_h.kernel[...] = params.U
    cell.dense_h.bias[...] = params.b
    xs = jnp.asarray(rng.normal(size=(T, D)))
    h0, c0 = jnp.asarray(rng.normal(size=H)), jnp.asarray(rng.normal(size=H))
    carry, hs, cs = (c0, h0), [], []
    for x in xs:
        carry, y = cell(carry, x)
        np.testing.assert_array_equal(y, carry[1])
        cs.append(carry[0])
        hs.append(carry[1])
    got = gf.unroll(params, xs, activation=act, recurrent_activation=gate, h0=h0, c0=c0)
    np.testing.assert_allclose(got.h, np.stack(hs), rtol=0, atol=STATE_ATOL[np.dtype("float64")])
    np.testing.assert_allclose(got.c, np.stack(cs), rtol=0, atol=STATE_ATOL[np.dtype("float64")])


def test_float32_unroll_agrees_with_float64(rng):
    params = random_params(rng, 3, 5)
    xs = rng.normal(size=(20, 3))
    p32 = gf.LSTMParams(*(a.astype(jnp.float32) for a in params))
    got = gf.unroll(p32, jnp.asarray(xs, jnp.float32))
    want = gf.unroll(params, jnp.asarray(xs))
    assert got.h.dtype == got.c.dtype == jnp.float32
    np.testing.assert_allclose(got.h, want.h, atol=STATE_ATOL[np.dtype("float32")])
    np.testing.assert_allclose(got.c, want.c, atol=STATE_ATOL[np.dtype("float32")])


def test_initial_state_is_respected(rng):
    D, H, T = 2, 3, 6
    params = random_params(rng, D, H)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    h0, c0 = jnp.asarray(rng.normal(size=H)), jnp.asarray(rng.normal(size=H))
    zeros = jnp.zeros(H)
    for kwargs, (h_start, c_start) in [
        ({"h0": h0, "c0": c0}, (h0, c0)),
        ({"h0": h0}, (h0, zeros)),
        ({"c0": c0}, (zeros, c0)),
        ({}, (zeros, zeros)),
    ]:
        got = gf.unroll(params, xs, **kwargs)
        want_h, want_c = numpy_lstm(*(np.asarray(a) for a in params), xs, h_start, c_start)
        np.testing.assert_allclose(got.h, want_h, rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.c, want_c, rtol=0, atol=1e-12)
    # the initial state matters: the first step differs from a zero start
    assert np.max(np.abs(gf.unroll(params, xs, h0=h0, c0=c0).h[0] - gf.unroll(params, xs).h[0])) > 1e-3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_initial_state_zeros_follow_kernel_dtype(dtype):
    params = gf.LSTMParams(jnp.zeros((2, 12), dtype), jnp.zeros((3, 12), dtype), jnp.zeros(12, dtype))
    s = initial_state(params)
    assert s.h.shape == s.c.shape == (3,) and s.h.dtype == s.c.dtype == dtype
    np.testing.assert_array_equal(s.h, 0.0)
    h0 = jnp.ones(3, dtype)
    assert initial_state(params, h0=h0).h is h0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "gelu"}, r"activation='gelu' is not a known cell activation; expected one of \['linear'"),
        ({"recurrent_activation": "tanh"}, r"recurrent_activation='tanh' is not a known gate activation"),
    ],
)
def test_unknown_activation_names_raise_naming_the_argument(rng, kwargs, match):
    params = random_params(rng, 2, 3)
    with pytest.raises(ValueError, match=match):
        gf.lstm_step(params, gf.LSTMState(jnp.zeros(3), jnp.zeros(3)), jnp.ones(2), **kwargs)
    with pytest.raises(ValueError, match=match):
        gf.unroll(params, jnp.ones((4, 2)), **kwargs)


def test_hard_sigmoid_is_relu6_of_x_plus_3_over_6():
    x = np.concatenate([np.linspace(-6.0, 6.0, 241), [-3.0, 3.0, -1e9, 1e9]])
    got = np.asarray(RECURRENT_ACTIVATIONS["hard_sigmoid"](jnp.asarray(x)))
    np.testing.assert_allclose(got, np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0, rtol=0, atol=1e-15)
    assert got[np.argmin(np.abs(x))] == 0.5  # not Keras 2's clip(0.2 x + 0.5): same at 0, differs at 2
    np.testing.assert_allclose(float(RECURRENT_ACTIVATIONS["hard_sigmoid"](jnp.asarray(2.0))), 5.0 / 6.0, rtol=1e-15)


def test_params_properties():
    p = gf.LSTMParams(jnp.zeros((2, 12)), jnp.zeros((3, 12)), jnp.zeros(12))
    assert (p.input_size, p.hidden_size) == (2, 3)
    batched = jax.tree.map(lambda a: jnp.stack([a] * 4), p)
    assert (batched.input_size, batched.hidden_size) == (2, 3)


@pytest.mark.parametrize("gate", sorted(RECURRENT_ACTIVATIONS))
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_closed_form_pullback_equals_autodiff(rng, act, gate):
    """lstm_pullback (one (2H, H) matrix per step) against jax.vjp of lstm_step, row by row, float64."""
    H = 5
    params = random_params(rng, 3, H, scale=1.5)
    state = gf.LSTMState(jnp.asarray(rng.normal(size=H)), jnp.asarray(rng.normal(size=H)))
    x = jnp.asarray(rng.normal(size=3))
    M = jnp.asarray(rng.normal(size=(7, 2 * H)))

    def flat(s):
        new = gf.lstm_step(params, gf.LSTMState(s[:H], s[H:]), x, activation=act, recurrent_activation=gate)
        return jnp.concatenate([new.h, new.c])

    _, vjp = jax.vjp(flat, jnp.concatenate([state.h, state.c]))
    want = np.stack([np.asarray(vjp(row)[0]) for row in M])
    got = lstm_pullback(params, state, x, M, activation=act, recurrent_activation=gate)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_linearisation_is_vectorised_over_time(rng):
    """Coefficients for all T steps at once equal those of each step alone."""
    params = random_params(rng, 3, 4)
    xs = jnp.asarray(rng.normal(size=(6, 3)))
    states = gf.unroll(params, xs)
    h_prev = jnp.concatenate([jnp.zeros((1, 4)), states.h[:-1]])
    c_prev = jnp.concatenate([jnp.zeros((1, 4)), states.c[:-1]])
    together = lstm_linearisation(params, gf.LSTMState(h_prev, c_prev), xs, activation="relu")
    for t in range(6):
        alone = lstm_linearisation(params, gf.LSTMState(h_prev[t], c_prev[t]), xs[t], activation="relu")
        for a, b in zip(together, alone):
            np.testing.assert_allclose(a[t], b, rtol=1e-14, atol=1e-15)
