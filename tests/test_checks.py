"""Boundary checks: the documented shapes pass, every rejection names the argument and what it expects."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.lstm.checks import check_lstm_inputs, is_concrete, require_finite, require_float
from reference import random_params

D, H, T, V = 3, 4, 5, 2


def _params(batched=False, dtype=jnp.float64):
    lead = (V,) if batched else ()
    return gf.LSTMParams(
        jnp.ones((*lead, D, 4 * H), dtype), jnp.ones((*lead, H, 4 * H), dtype), jnp.zeros((*lead, 4 * H), dtype)
    )


@pytest.mark.parametrize(
    ("batched", "xs_shape", "h0_shape", "c0_shape", "want"),
    [
        (False, (T, D), None, None, None),
        (False, (T, D), (H,), (H,), None),
        (False, (1, D), None, (H,), None),
        (True, (T, D), None, None, V),
        (True, (V, T, D), None, None, V),
        (True, (T, D), (H,), (V, H), V),
        (True, (V, T, D), (V, H), (H,), V),
    ],
)
def test_documented_shapes_are_accepted(batched, xs_shape, h0_shape, c0_shape, want):
    h0 = None if h0_shape is None else jnp.zeros(h0_shape)
    c0 = None if c0_shape is None else jnp.zeros(c0_shape)
    got = check_lstm_inputs(_params(batched), jnp.zeros(xs_shape), h0, c0)
    assert got == want and (got is None) == (not batched)


def _replace(params, **new):
    return params._replace(**{k: jnp.ones(v) for k, v in new.items()})


@pytest.mark.parametrize(
    ("batched", "change", "match"),
    [
        (False, {"U": (4 * H,)}, r"params\.U must have shape \(H, 4H\) or \(V, H, 4H\); got \(16,\)"),
        (False, {"U": (1, V, H, 4 * H)}, r"params\.U must have shape \(H, 4H\) or \(V, H, 4H\)"),
        (False, {"U": (H, 3 * H)}, r"params\.U must have shape \('H', '4H'\) with H >= 1; got \(4, 12\)"),
        (False, {"U": (0, 0)}, r"params\.U must have shape .* with H >= 1; got \(0, 0\)"),
        (True, {"U": (V, H, 12)}, r"params\.U must have shape \(2, 'H', '4H'\)"),
        (False, {"W": (D, 12)}, r"params\.W must have shape \('D', 16\) to match params\.U \(4, 16\); got \(3, 12\)"),
        (False, {"W": (V, D, 4 * H)}, r"params\.W must have shape \('D', 16\)"),
        (True, {"W": (3, D, 4 * H)}, r"params\.W must have shape \(2, 'D', 16\)"),
        (False, {"b": (12,)}, r"params\.b must have shape \(16,\) to match params\.U \(4, 16\); got \(12,\)"),
        (True, {"b": (4 * H,)}, r"params\.b must have shape \(2, 16\)"),
    ],
)
def test_bad_params_shapes_are_named(batched, change, match):
    params = _replace(_params(batched), **change)
    with pytest.raises(ValueError, match=match):
        check_lstm_inputs(params, jnp.zeros((T, D)))


@pytest.mark.parametrize(
    ("batched", "xs_shape", "match"),
    [
        (False, (T, D + 1), r"xs must have shape \(T, 3\) \(time-major; D = params\.W\.shape\[-2\]\); got \(5, 4\)"),
        (False, (V, T, D), r"xs must have shape \(T, 3\) \(time-major"),
        (False, (D,), r"xs must have shape \(T, 3\)"),
        (False, (), r"xs must have shape \(T, 3\)"),
        (True, (V + 1, T, D), r"xs must have shape \(T, 3\) or \(2, T, 3\) .*; got \(3, 5, 3\)"),
        (True, (V, T, D + 1), r"xs must have shape \(T, 3\) or \(2, T, 3\)"),
        (False, (0, D), r"xs must hold at least one time step; got shape \(0, 3\)"),
        (True, (V, 0, D), r"xs must hold at least one time step; got shape \(2, 0, 3\)"),
    ],
)
def test_bad_xs_shapes_are_named(batched, xs_shape, match):
    with pytest.raises(ValueError, match=match):
        check_lstm_inputs(_params(batched), jnp.zeros(xs_shape))


@pytest.mark.parametrize("name", ["h0", "c0"])
@pytest.mark.parametrize(
    ("batched", "shape", "match"),
    [
        (False, (H + 1,), r"must have shape \(H,\) = \(4,\); got \(5,\)"),
        (False, (V, H), r"must have shape \(H,\) = \(4,\); got \(2, 4\)"),
        (True, (V + 1, H), r"must have shape \(H,\) = \(4,\) or \(V, H\); got \(3, 4\)"),
        (True, (V, H, 1), r"must have shape \(H,\) = \(4,\) or \(V, H\); got \(2, 4, 1\)"),
    ],
)
def test_bad_initial_state_shapes_are_named(name, batched, shape, match):
    with pytest.raises(ValueError, match=f"{name} {match}"):
        check_lstm_inputs(_params(batched), jnp.zeros((T, D)), **{name: jnp.zeros(shape)})


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("xs", r"xs has dtype float32 but params\.U has float64; use one float dtype throughout"),
        ("h0", r"h0 has dtype float32 but params\.U has float64"),
        ("c0", r"c0 has dtype float32 but params\.U has float64"),
        ("W", r"params\.W has dtype float32 but params\.U has float64"),
        ("b", r"params\.b has dtype float32 but params\.U has float64"),
    ],
)
def test_dtype_mismatch_raises_type_error(arg, match):
    params, xs, state = _params(), jnp.zeros((T, D)), {"h0": jnp.zeros(H), "c0": jnp.zeros(H)}
    if arg == "xs":
        xs = xs.astype(jnp.float32)
    elif arg in state:
        state[arg] = state[arg].astype(jnp.float32)
    else:
        params = params._replace(**{arg: getattr(params, arg).astype(jnp.float32)})
    with pytest.raises(TypeError, match=match):
        check_lstm_inputs(params, xs, **state)


def test_integer_inputs_raise_type_error():
    with pytest.raises(TypeError, match="xs must have a floating dtype; got int32"):
        check_lstm_inputs(_params(), jnp.zeros((T, D), jnp.int32))
    with pytest.raises(TypeError, match=r"params\.W must have a floating dtype; got int64"):
        check_lstm_inputs(_params(dtype=jnp.int64), jnp.zeros((T, D), jnp.int64))
    with pytest.raises(TypeError, match="n must have a floating dtype; got int64"):
        require_float("n", np.arange(3))
    require_float("x", np.ones(2, np.float32))


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        ("xs", r"xs must be finite; it holds 1 NaN or infinite value\(s\) of 15"),
        ("U", r"params\.U must be finite; it holds 1 NaN or infinite value\(s\) of 64"),
        ("h0", r"h0 must be finite; it holds 1 NaN or infinite value\(s\) of 4"),
    ],
)
def test_concrete_non_finite_inputs_are_named(arg, match):
    params, xs, h0 = _params(), jnp.zeros((T, D)), jnp.zeros(H)
    if arg == "xs":
        xs = xs.at[1, 2].set(jnp.nan)
    elif arg == "h0":
        h0 = h0.at[0].set(jnp.inf)
    else:
        params = params._replace(U=params.U.at[0, 0].set(-jnp.inf))
    with pytest.raises(ValueError, match=match):
        check_lstm_inputs(params, xs, h0)


def test_require_finite_counts_and_skips_none_and_tracers():
    with pytest.raises(ValueError, match=r"x must be finite; it holds 2 NaN or infinite value\(s\) of 4"):
        require_finite("x", np.array([1.0, np.nan, np.inf, 0.0]))
    require_finite("x", None)
    require_finite("x", np.ones(3))
    seen = []

    def f(x):
        seen.append(is_concrete(x))
        require_finite("x", x)  # a tracer: no value to check, no error
        return x * 2

    out = jax.jit(f)(jnp.array([1.0, jnp.nan]))
    assert seen == [False] and np.isnan(np.asarray(out)[1]) and float(out[0]) == 2.0
    assert is_concrete(jnp.ones(2)) and is_concrete(np.ones(2))


def test_nan_variant_inside_jit_is_data_not_an_error(rng):
    """Eagerly a NaN input raises; inside jit it passes and only its own variant turns NaN."""
    params = jax.tree.map(lambda *a: jnp.stack(a), random_params(rng, D, H), random_params(rng, D, H, scale=2.0))
    xs = jnp.asarray(rng.normal(size=(V, 8, D)))
    bad = xs.at[1, 3, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="xs must be finite"):
        gf.lag_norms(params, bad)
    got = np.asarray(jax.jit(lambda p, x: gf.lag_norms(p, x))(params, bad))
    want = np.asarray(gf.lag_norms(gf.LSTMParams(*(a[0] for a in params)), xs[0]))
    np.testing.assert_allclose(got[0], want, rtol=0, atol=1e-12)
    assert np.all(np.isnan(got[1]))
    # a NaN weight in one variant, traced: the same
    nan_params = params._replace(U=params.U.at[0, 1, 2].set(jnp.nan))
    got = np.asarray(jax.jit(lambda p, x: gf.lag_norms(p, x))(nan_params, xs))
    assert np.all(np.isnan(got[0])) and np.all(np.isfinite(got[1]))
