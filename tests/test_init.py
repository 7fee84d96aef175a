"""Initialisation schemes: their statistics and structure, the bias, the gain, and traced settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.lstm.init import SCHEMES, init_lstm, scheme_index

#: Identities that hold to rounding (Q^T Q = I, exact zeros) per dtype.
ORTHO_ATOL = {np.dtype("float32"): 2e-6, np.dtype("float64"): 1e-13}


def _blocks(K, H):
    return [K[:, k * H : (k + 1) * H] for k in range(4)]


def test_schemes_are_the_documented_ones():
    assert SCHEMES == ("glorot_uniform", "orthogonal", "normal")
    assert [scheme_index(s) for s in SCHEMES] == [0, 1, 2]


@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_glorot_uniform_bounds_and_variance(gain):
    D, H = 300, 100
    p = init_lstm(jax.random.key(1), D, H, scheme="glorot_uniform", weight_scale=gain, dtype=jnp.float64)
    for K, fan_in in ((np.asarray(p.W), D), (np.asarray(p.U), H)):
        limit = gain * np.sqrt(6.0 / (fan_in + 4 * H))
        assert np.max(np.abs(K)) <= limit
        assert np.max(np.abs(K)) > 0.999 * limit  # the whole range is used
        assert abs(np.mean(K)) < 0.01 * limit
        # var of a U(-a, a) sample of n: a^2/3 with relative sd sqrt(0.8 / n) <= 0.3% here
        np.testing.assert_allclose(np.var(K), limit**2 / 3, rtol=0.02)


@pytest.mark.parametrize(("D", "H"), [(3, 5), (7, 5), (5, 5)])
@pytest.mark.parametrize("gain", [1.0, 0.6])
def test_orthogonal_gate_blocks(D, H, gain):
    p = init_lstm(jax.random.key(2), D, H, scheme="orthogonal", weight_scale=gain, dtype=jnp.float64)
    atol = ORTHO_ATOL[np.dtype("float64")]
    for Q in _blocks(np.asarray(p.U), H):
        np.testing.assert_allclose(Q.T @ Q, gain**2 * np.eye(H), rtol=0, atol=atol)
    for Q in _blocks(np.asarray(p.W), H):
        # semi-orthogonal: orthonormal rows when D <= H, orthonormal columns when D >= H
        gram = Q @ Q.T if D <= H else Q.T @ Q
        np.testing.assert_allclose(gram, gain**2 * np.eye(min(D, H)), rtol=0, atol=atol)
    # each gate block is its own draw (and U is not a rescaled W)
    U_blocks = _blocks(np.asarray(p.U), H)
    assert min(np.max(np.abs(a - b)) for i, a in enumerate(U_blocks) for b in U_blocks[i + 1 :]) > 1e-3


def test_orthogonal_float32():
    p = init_lstm(jax.random.key(2), 3, 4, scheme="orthogonal")
    assert p.U.dtype == jnp.float32
    for Q in _blocks(np.asarray(p.U, np.float64), 4):
        np.testing.assert_allclose(Q.T @ Q, np.eye(4), rtol=0, atol=ORTHO_ATOL[np.dtype("float32")])


@pytest.mark.parametrize("gain", [1.0, 0.3])
def test_normal_variance_is_gain_squared_over_fan_in(gain):
    D, H = 500, 100
    p = init_lstm(jax.random.key(3), D, H, scheme="normal", weight_scale=gain, dtype=jnp.float64)
    for K, fan_in in ((np.asarray(p.W), D), (np.asarray(p.U), H)):
        want = gain**2 / fan_in
        # relative sd of a sample variance of n normals: sqrt(2 / n) <= 0.71% here; allow ~5 sd
        np.testing.assert_allclose(np.var(K), want, rtol=0.035)
        assert abs(np.mean(K)) < 5 * np.sqrt(want / K.size)
        kurtosis = np.mean(K**4) / np.var(K) ** 2
        assert abs(kurtosis - 3.0) < 0.15  # gaussian, not uniform (1.8)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("forget_bias", [0.0, 1.0, -0.7])
def test_bias_is_zero_except_the_forget_block(scheme, forget_bias):
    H = 4
    p = init_lstm(jax.random.key(0), 3, H, scheme=scheme, forget_bias=forget_bias, dtype=jnp.float64)
    want = np.zeros(4 * H)
    want[H : 2 * H] = forget_bias
    np.testing.assert_array_equal(p.b, want)
    assert p.b.dtype == jnp.float64


@pytest.mark.parametrize("scheme", SCHEMES)
def test_weight_scale_multiplies_kernels_exactly(scheme):
    key = jax.random.key(7)
    one = init_lstm(key, 3, 4, scheme=scheme, weight_scale=1.0, forget_bias=0.5, dtype=jnp.float64)
    three = init_lstm(key, 3, 4, scheme=scheme, weight_scale=3.0, forget_bias=0.5, dtype=jnp.float64)
    np.testing.assert_array_equal(three.W, 3.0 * np.asarray(one.W))
    np.testing.assert_array_equal(three.U, 3.0 * np.asarray(one.U))
    np.testing.assert_array_equal(three.b, one.b)  # the bias is not scaled
    assert np.max(np.abs(np.asarray(one.W))) > 0


#: Traced settings, two variants per scheme: (seed, scheme index, weight_scale, forget_bias).
TRACED = [(5, 0, 1.7, 0.3), (6, 1, 0.8, -1.0), (7, 2, 2.5, 2.0), (8, 0, 0.5, 1.0), (5, 1, 1.0, 0.0), (6, 2, 1.2, -2.0)]


def _traced_init(seed, index, gain, forget_bias):
    return init_lstm(
        jax.random.key(seed), 3, 4, scheme=index, weight_scale=gain, forget_bias=forget_bias, dtype=jnp.float64
    )


def _traced_args():
    seed, index, gain, fb = zip(*TRACED)
    return jnp.array(seed, jnp.uint32), jnp.array(index, jnp.int32), jnp.array(gain), jnp.array(fb)


def _concrete(seed, index, gain, forget_bias):
    return init_lstm(
        jax.random.key(seed), 3, 4, scheme=SCHEMES[index], weight_scale=gain, forget_bias=forget_bias,
        dtype=jnp.float64,
    )


@pytest.mark.slow
def test_traced_scheme_under_vmap_equals_the_string_scheme_exactly():
    out = jax.vmap(_traced_init)(*_traced_args())
    for v, settings in enumerate(TRACED):
        for got, want in zip(out, _concrete(*settings)):
            np.testing.assert_array_equal(got[v], want)
    assert len({np.asarray(u).tobytes() for u in out.U}) == len(TRACED)


@pytest.mark.slow
def test_traced_scheme_under_jit_equals_the_string_scheme():
    """Bit-identical for glorot_uniform and orthogonal; for normal XLA fuses the division by
    sqrt(fan_in) into the sampler differently under jit (as it does for a plain jit of
    ``normal(k) / c``), and the gain rounds once more: there the match is to two ulps."""
    out = jax.jit(jax.vmap(_traced_init))(*_traced_args())
    for v, settings in enumerate(TRACED):
        for got, want in zip(out, _concrete(*settings)):
            if SCHEMES[settings[1]] == "normal":
                np.testing.assert_allclose(got[v], want, rtol=4.5e-16, atol=0)
            else:
                np.testing.assert_array_equal(got[v], want)


@pytest.mark.slow
def test_seed_stream_matches_jax_random_key():
    a = init_lstm(jax.random.key(11), 3, 4, dtype=jnp.float64)
    b = init_lstm(jax.random.key(11), 3, 4, dtype=jnp.float64)
    c = init_lstm(jax.random.key(12), 3, 4, dtype=jnp.float64)
    np.testing.assert_array_equal(a.U, b.U)
    assert np.max(np.abs(np.asarray(a.U) - np.asarray(c.U))) > 1e-2
    assert np.max(np.abs(np.asarray(a.W) - np.asarray(a.U[:3]))) > 1e-2  # W and U use different keys


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_dtype_and_shapes(dtype, scheme):
    p = init_lstm(jax.random.key(0), 3, 4, scheme=scheme, dtype=dtype)
    assert isinstance(p, gf.LSTMParams)
    assert (p.W.shape, p.U.shape, p.b.shape) == ((3, 16), (4, 16), (16,))
    assert p.W.dtype == p.U.dtype == p.b.dtype == dtype


def test_unknown_scheme_names_the_argument():
    with pytest.raises(ValueError, match=r"scheme='xavier' is not a known initialisation; expected one of \['glorot"):
        init_lstm(jax.random.key(0), 3, 4, scheme="xavier")
    with pytest.raises(ValueError, match="scheme='Orthogonal'"):
        scheme_index("Orthogonal")


@pytest.mark.parametrize("index", [3, -1])
def test_out_of_range_scheme_index_names_the_argument(index):
    with pytest.raises(ValueError, match="scheme"):
        init_lstm(jax.random.key(0), 3, 4, scheme=index)


@pytest.mark.parametrize(("D", "H"), [(0, 4), (3, 0), (-1, 2)])
def test_non_positive_sizes_raise(D, H):
    with pytest.raises(ValueError, match="input_size and hidden_size must be >= 1"):
        init_lstm(jax.random.key(0), D, H)
