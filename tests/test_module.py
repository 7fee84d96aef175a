"""The NNX shell: its weights come from init_lstm, its output is the head of unroll's h_T, and it jits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import gradflow as gf

#: Tolerances on outputs (O(1)) per dtype.
OUT_ATOL = {np.dtype("float32"): 1e-6, np.dtype("float64"): 1e-13}


def _model(**kwargs):
    kwargs.setdefault("rngs", nnx.Rngs(0))
    kwargs.setdefault("dtype", jnp.float64)
    return gf.LSTM(3, 4, out_features=2, **kwargs)


def _with_bias(model, rng):
    """A non-zero head bias, so that the tests see whether it is applied."""
    model.head.bias[...] = jnp.asarray(rng.normal(size=model.head.bias.shape), model.head.bias.dtype)
    return model


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scheme": "normal", "weight_scale": 1.7, "forget_bias": -0.5},
        {"scheme": "glorot_uniform", "forget_bias": 2.0},
    ],
)
def test_params_are_init_lstm_on_the_params_stream(kwargs):
    model = _model(rngs=nnx.Rngs(3), **kwargs)
    want = gf.init_lstm(nnx.Rngs(3).params(), 3, 4, dtype=jnp.float64, **kwargs)
    assert isinstance(model.params, gf.LSTMParams)
    for got, w in zip(model.params, want):
        assert got.dtype == jnp.float64
        np.testing.assert_array_equal(got, w)


def test_head_uses_the_next_key_of_the_params_stream():
    model = _model(rngs=nnx.Rngs(3))
    rngs = nnx.Rngs(3)
    rngs.params()  # the LSTM kernels
    head = nnx.Linear(4, 2, rngs=rngs, param_dtype=jnp.float64)
    np.testing.assert_array_equal(model.head.kernel[...], head.kernel[...])
    assert not np.array_equal(_model(rngs=nnx.Rngs(4)).head.kernel[...], head.kernel[...])


def test_output_is_the_head_of_h_T_from_unroll(rng):
    model = _with_bias(_model(activation="softsign", recurrent_activation="hard_sigmoid"), rng)
    xs = jnp.asarray(rng.normal(size=(7, 3)))
    h_T = np.asarray(gf.unroll(model.params, xs, activation="softsign", recurrent_activation="hard_sigmoid").h[-1])
    want = h_T @ np.asarray(model.head.kernel[...]) + np.asarray(model.head.bias[...])
    got = model(xs)
    assert got.shape == (2,) and got.dtype == jnp.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=OUT_ATOL[np.dtype("float64")])
    # the activation options reach the cell: tanh/sigmoid gives another output
    default = gf.unroll(model.params, xs).h[-1]
    assert np.max(np.abs(np.asarray(default) - h_T)) > 1e-3


def test_states_are_unroll(rng):
    model = _model(activation="relu")
    xs = jnp.asarray(rng.normal(size=(6, 3)))
    got, want = model.states(xs), gf.unroll(model.params, xs, activation="relu")
    np.testing.assert_array_equal(got.h, want.h)
    np.testing.assert_array_equal(got.c, want.c)
    assert got.h.shape == (6, 4)


@pytest.mark.slow
def test_batched_input_is_a_loop_over_sequences(rng):
    model = _with_bias(_model(), rng)
    xs = jnp.asarray(rng.normal(size=(5, 8, 3)))
    got = model(xs)
    assert got.shape == (5, 2)
    loop = np.stack([np.asarray(model(x)) for x in xs])
    np.testing.assert_allclose(got, loop, rtol=0, atol=OUT_ATOL[np.dtype("float64")])
    assert np.max(np.abs(np.asarray(got[0] - got[1]))) > 1e-4  # inputs reach the output


def test_float32_default_dtype(rng):
    model = gf.LSTM(3, 4, rngs=nnx.Rngs(0))
    assert model.W.dtype == model.U.dtype == model.b.dtype == model.head.kernel.dtype == jnp.float32
    out = model(jnp.asarray(rng.normal(size=(2, 5, 3)), jnp.float32))
    assert out.shape == (2, 1) and out.dtype == jnp.float32
    p64 = gf.LSTMParams(*(a.astype(jnp.float64) for a in model.params))
    xs = jnp.asarray(rng.normal(size=(5, 3)))
    h_T = np.asarray(gf.unroll(p64, xs).h[-1])
    want = h_T @ np.asarray(model.head.kernel[...], np.float64) + np.asarray(model.head.bias[...], np.float64)
    np.testing.assert_allclose(model(xs.astype(jnp.float32)), want, atol=OUT_ATOL[np.dtype("float32")])


@pytest.mark.slow
def test_works_under_nnx_jit_and_jax_jit_of_split_state(rng):
    model = _with_bias(_model(), rng)
    xs = jnp.asarray(rng.normal(size=(3, 6, 3)))
    eager = np.asarray(model(xs))
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, xs), eager, rtol=0, atol=OUT_ATOL[np.dtype("float64")])

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
    np.testing.assert_allclose(forward(state, xs), eager, rtol=0, atol=OUT_ATOL[np.dtype("float64")])
    # new weights of the same shapes: a new answer from the same compiled function
    before = forward._cache_size()
    state2 = jax.tree.map(lambda a: 0.5 * a, state)
    halved = forward(state2, xs)
    assert forward._cache_size() == before
    assert np.max(np.abs(np.asarray(halved) - eager)) > 1e-4
    np.testing.assert_allclose(halved, nnx.merge(graphdef, state2)(xs), rtol=0, atol=OUT_ATOL[np.dtype("float64")])


@pytest.mark.slow
def test_gradient_of_the_module_equals_the_functional_gradient(rng):
    model = _model()
    xs = jnp.asarray(rng.normal(size=(6, 3)))

    def module_loss(m):
        return jnp.sum(m(xs) ** 2)

    grads = nnx.grad(module_loss)(model)
    kernel, bias = model.head.kernel[...], model.head.bias[...]

    def functional_loss(p):
        return jnp.sum((gf.unroll(p, xs).h[-1] @ kernel + bias) ** 2)

    want = jax.grad(functional_loss)(model.params)
    for name, w in zip("WUb", want):
        np.testing.assert_allclose(grads[name][...], w, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(np.asarray(want.U))) > 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "gelu"}, "activation='gelu'"),
        ({"recurrent_activation": "tanh"}, "recurrent_activation='tanh'"),
        ({"scheme": "he_normal"}, "scheme='he_normal'"),
        ({"head_output": "tanh"}, "head_output='tanh'"),
    ],
)
def test_bad_options_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _model(**kwargs)

