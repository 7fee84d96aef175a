"""Lag profiles of whole networks and of any cell against explicit float64 Jacobians (jax.jacrev of the forward)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.flow.networks import cell_lag_norms, model_profiles
from gradflow.lstm.gru import GRUParams, gru_step
from gradflow.lstm.model import Bidirectional, Layer, Model, level_inputs

T, D = 7, 3


def _lstm(key, d, h, scale=0.8):
    return gf.LSTMParams(*(scale * jax.random.normal(k, s, jnp.float64) for k, s in
                           zip(jax.random.split(key, 3), [(d, 4 * h), (h, 4 * h), (4 * h,)])))


def _gru(key, d, h, scale=0.8):
    return GRUParams(*(scale * jax.random.normal(k, s, jnp.float64) for k, s in
                       zip(jax.random.split(key, 4), [(d, 3 * h), (h, 3 * h), (3 * h,), (3 * h,)])))


def _reference_layer_profile(layer: Layer, inputs, wrt="h"):
    """log10 ||dh_T/dh_{T-k}||_F, k = 1..T, from jacrev of the layer's own unroll started at T-k with c fixed."""
    xs = inputs[::-1] if layer.direction == "backward" else inputs
    p, H = layer.params, layer.hidden_size
    if layer.cell == "lstm":
        states = gf.unroll(p, xs, activation=layer.activation)
        hs = jnp.concatenate([jnp.zeros((1, H)), states.h])
        cs = jnp.concatenate([jnp.zeros((1, H)), states.c])
    else:
        hs = jnp.concatenate([jnp.zeros((1, H)), gf.gru_unroll(p, xs, reset_after=layer.cell == "gru")])
    out = []
    for k in range(1, T + 1):
        t = T - k

        def final(s, t=t):
            if layer.cell == "lstm":
                state = gf.LSTMState(s[:H], s[H:]) if wrt == "state" else gf.LSTMState(s, cs[t])
                for x in xs[t:]:
                    state = gf.lstm_step(p, state, x, activation=layer.activation)
                return jnp.concatenate([state.h, state.c]) if wrt == "state" else state.h
            h = s
            for x in xs[t:]:
                h = gru_step(p, h, x, reset_after=layer.cell == "gru")
            return h

        start = jnp.concatenate([hs[t], cs[t]]) if (layer.cell == "lstm" and wrt == "state") else hs[t]
        out.append(np.log10(np.linalg.norm(np.asarray(jax.jacrev(final)(start)))))
    return np.array(out)


def _check(model, xs, wrt="h"):
    profile = model_profiles(model, xs, wrt=wrt)
    inputs = level_inputs(model, xs)
    layers = [(depth, layer) for depth, level in enumerate(model.layers)
              for layer in ((level.forward, level.backward) if isinstance(level, Bidirectional) else (level,))]
    assert len(profile.layers) == len(layers)
    for got, (depth, layer) in zip(profile.layers, layers):
        assert (got.index, got.direction, got.hidden_size) == (depth, layer.direction, layer.hidden_size)
        np.testing.assert_allclose(got.log10_norm_h, _reference_layer_profile(layer, inputs[depth], wrt), atol=1e-9)
    return profile


def test_stacked_lstm_profiles_and_input_sensitivity_equal_jacrev():
    k = jax.random.split(jax.random.key(0), 3)
    model = Model((Layer(_lstm(k[0], D, 4)), Layer(_lstm(k[1], 4, 5), activation="softsign")))
    xs = jax.random.normal(k[2], (T, D), jnp.float64)
    profile = _check(model, xs)
    assert profile.cells == ("lstm",)
    J = np.asarray(jax.jacrev(lambda x: gf.hidden_states(model, x)[-1])(xs))  # (H, T, D)
    want = np.log10(np.linalg.norm(J, axis=(0, 2)))[::-1]  # entry k for x_{T-k}
    np.testing.assert_allclose(profile.input_sensitivity, want, atol=1e-9)


def test_state_profiles_of_a_stack():
    k = jax.random.split(jax.random.key(1), 3)
    model = Model((Layer(_lstm(k[0], D, 3)), Layer(_lstm(k[1], 3, 2))))
    _check(model, jax.random.normal(k[2], (T, D), jnp.float64), wrt="state")


def test_bidirectional_gru_and_mixed_stacks_equal_jacrev():
    k = jax.random.split(jax.random.key(2), 5)
    pair = Bidirectional(Layer(_gru(k[0], D, 3), cell="gru"), Layer(_gru(k[1], D, 3), cell="gru", direction="backward"))
    top = Layer(_lstm(k[2], 6, 4))
    model = Model((pair, top, Layer(_gru(k[3], 4, 2), cell="gru_reset_before")))
    profile = _check(model, jax.random.normal(k[4], (T, D), jnp.float64))
    assert profile.input_sensitivity is None  # a backward layer: no end-to-end input profile
    assert [p.cell for p in profile.layers] == ["gru", "gru", "lstm", "gru"] and profile.cells == ("gru", "lstm")
    assert [(p.index, p.direction) for p in profile.layers] == [(0, "forward"), (0, "backward"), (1, "forward"),
                                                                  (2, "forward")]


def test_gru_input_sensitivity_and_batch_mean():
    k = jax.random.split(jax.random.key(3), 3)
    model = Model((Layer(_gru(k[0], D, 3), cell="gru"), Layer(_lstm(k[1], 3, 3))))
    xs = jax.random.normal(k[2], (4, T, D), jnp.float64)
    batch = model_profiles(model, xs)
    singles = [model_profiles(model, x) for x in xs]
    np.testing.assert_allclose(batch.layers[1].log10_norm_h, np.mean([s.layers[1].log10_norm_h for s in singles], 0),
                               atol=1e-12)
    np.testing.assert_allclose(batch.input_sensitivity, np.mean([s.input_sensitivity for s in singles], 0), atol=1e-12)
    J = np.asarray(jax.jacrev(lambda x: gf.hidden_states(model, x)[-1])(xs[0]))
    np.testing.assert_allclose(singles[0].input_sensitivity, np.log10(np.linalg.norm(J, axis=(0, 2)))[::-1],
                               atol=1e-9)


def test_one_lstm_layer_matches_lag_norms_and_float32_follows_the_input():
    p = _lstm(jax.random.key(4), D, 4)
    xs = jax.random.normal(jax.random.key(5), (T, D), jnp.float64)
    got = model_profiles(Model((Layer(p),)), xs).layers[0].log10_norm_h
    np.testing.assert_allclose(got, gf.lag_norms(p, xs), atol=1e-12)
    single = model_profiles(Model((Layer(p),)), xs.astype(jnp.float32))
    assert single.layers[0].log10_norm_h.dtype == np.float32
    np.testing.assert_allclose(single.layers[0].log10_norm_h, got, atol=1e-4)


def test_depth_safe_far_below_float32_range():
    """A saturated forget gate: the profile reaches far below 1e-38 and stays finite and exact in float32."""
    H = 4
    p = _lstm(jax.random.key(6), D, H, scale=0.1)
    p = p._replace(b=p.b.at[H:2 * H].set(-4.0))
    xs = jax.random.normal(jax.random.key(7), (400, D), jnp.float64)
    want = gf.lag_norms(p, xs)
    assert want.min() < -100
    got = model_profiles(Model((Layer(p), Layer(p._replace(W=p.W[:1].repeat(H, 0))))), xs.astype(jnp.float32))
    assert np.isfinite(got.layers[0].log10_norm_h).all() and np.isfinite(got.input_sensitivity).all()
    np.testing.assert_allclose(got.layers[0].log10_norm_h, want, rtol=1e-4)


def test_cell_lag_norms_takes_a_pytree_carry_and_equals_lag_norms():
    """A Flax-style cell with carry (c, h): measuring h with c held fixed is the wrt="h" profile."""
    p = _lstm(jax.random.key(8), D, 4)
    xs = jax.random.normal(jax.random.key(9), (T, D), jnp.float64)

    def cell(carry, x):
        c, h = carry
        new = gf.lstm_step(p, gf.LSTMState(h, c), x)
        return (new.c, new.h), new.h

    carry = (jnp.zeros(4), jnp.zeros(4))
    np.testing.assert_allclose(cell_lag_norms(cell, carry, xs, wrt=lambda carry: carry[1]), gf.lag_norms(p, xs),
                               atol=1e-12)
    np.testing.assert_allclose(cell_lag_norms(cell, carry, xs), gf.lag_norms(p, xs, wrt="state"), atol=1e-12)


def test_bad_arguments_are_named():
    model = Model((Layer(_lstm(jax.random.key(0), D, 2)),))
    with pytest.raises(ValueError, match=r"xs must have shape \(T, 3\) or \(N, T, 3\)"):
        model_profiles(model, jnp.zeros((5, 2)))
    with pytest.raises(ValueError, match="wrt='c' is not known"):
        model_profiles(model, jnp.zeros((5, 3)), wrt="c")
    with pytest.raises(TypeError, match="floating dtype"):
        model_profiles(model, jnp.zeros((5, 3), jnp.int32))
    with pytest.raises(ValueError, match="wrt selects no entries"):
        cell_lag_norms(lambda c, x: (c, c), (jnp.zeros(2), jnp.zeros(0)), jnp.zeros((3, 1)), wrt=lambda c: c[1])
    with pytest.raises(ValueError, match="layer holds LSTMParams; got GRUParams"):
        Layer(_gru(jax.random.key(0), D, 2))
