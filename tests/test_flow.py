"""The exact engine against float64 references, analytic identities and deep explicit products."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from conftest import LOG10_ATOL
from reference import jacrev_lag_norms, loop_states, random_params, renormalised_product_norms, step_jacobians


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("wrt", ["h", "state"])
def test_lag_norms_match_jacrev_in_float64(rng, act, wrt):
    params = random_params(rng, 3, 5, scale=1.5)
    xs = jnp.asarray(rng.normal(size=(12, 3)))
    got = np.asarray(gf.lag_norms(params, xs, activation=act, wrt=wrt))
    want = jacrev_lag_norms(params, xs, wrt=wrt, act=act)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=LOG10_ATOL[np.dtype("float64")])


@pytest.mark.parametrize("wrt", ["h", "state"])
def test_lag_norms_float32_agree_with_float64(rng, wrt):
    params = random_params(rng, 3, 6)
    xs = rng.normal(size=(40, 3))
    p32 = gf.LSTMParams(*(a.astype(jnp.float32) for a in params))
    got = np.asarray(gf.lag_norms(p32, jnp.asarray(xs, jnp.float32), wrt=wrt))
    want = np.asarray(gf.lag_norms(params, jnp.asarray(xs), wrt=wrt))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=LOG10_ATOL[np.dtype("float32")])


@pytest.mark.parametrize("wrt", ["h", "state"])
def test_deep_profile_is_exact_in_float32_below_1e_minus_300(rng, wrt):
    H, T = 6, 800
    params = random_params(rng, 2, H, scale=0.8, forget_bias=-1.0)
    xs = rng.normal(size=(T, 2))
    dims = slice(0, H) if wrt == "h" else slice(None)
    want = renormalised_product_norms(step_jacobians(params, xs), dims, dims)
    assert want[-1] < -300, "the case must be deep enough to underflow float64 products"
    p32 = gf.LSTMParams(*(a.astype(jnp.float32) for a in params))
    got = np.asarray(gf.lag_norms(p32, jnp.asarray(xs, jnp.float32), wrt=wrt))
    assert np.all(np.isfinite(got))
    # float32 rounding of 800 products: measured 1.6e-7 of the depth; allow 1e-6 (3e-4 decades at 1e-330)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=LOG10_ATOL[np.dtype("float32")])


def test_naive_jacrev_underflows_where_the_engine_does_not(rng):
    H, T = 6, 200
    params = random_params(rng, 2, H, scale=0.5, forget_bias=-2.0, dtype=np.float32)
    xs = jnp.asarray(rng.normal(size=(T, 2)), jnp.float32)
    got = gf.lag_norms(params, xs)
    assert float(got[-1]) < -45  # lag T: below float32's range
    h0 = jnp.zeros(H, jnp.float32)

    def h_T(h_start):
        return gf.unroll(params, xs, h0=h_start, c0=h0).h[-1]

    naive = jnp.sqrt(jnp.sum(jax.jacrev(h_T)(h0) ** 2))
    assert float(naive) == 0.0 and np.isfinite(float(got[-1]))


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_forget_gate_identity(rng, forget_bias, dtype):
    """W = U = 0: ds_T/ds_t = f^(T-t) [[0, diag(o act'(c_T))], [0, I]] exactly; dh_T/dh_t = 0."""
    H, T = 4, 2000
    b = rng.normal(size=4 * H)
    b[H : 2 * H] = forget_bias
    params = gf.LSTMParams(jnp.zeros((3, 4 * H), dtype), jnp.zeros((H, 4 * H), dtype), jnp.asarray(b, dtype))
    xs = jnp.asarray(rng.normal(size=(T, 3)), dtype)

    state = np.asarray(gf.lag_norms(params, xs, wrt="state"), np.float64)
    c_T = np.asarray(gf.unroll(params, xs).c[-1], np.float64)
    o = 1 / (1 + np.exp(-b[3 * H :]))
    log10_f = np.log10(1 / (1 + np.exp(-forget_bias)))
    lags = np.arange(1, T + 1)
    want = lags * log10_f + 0.5 * np.log10(H + np.sum((o * (1 - np.tanh(c_T) ** 2)) ** 2))
    np.testing.assert_allclose(state, want, rtol=1e-6 if dtype == jnp.float32 else 1e-12, atol=LOG10_ATOL[np.dtype(dtype)])
    np.testing.assert_allclose(gf.decay_rate(jnp.asarray(state)), log10_f, rtol=1e-5)
    assert state[-1] < -50 if forget_bias == 0.0 else True  # the float32 range is left behind
    assert np.all(np.isneginf(np.asarray(gf.lag_norms(params, xs, wrt="h"))))


def _symmetric(rng, eigenvalues):
    Q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (Q * eigenvalues) @ Q.T


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_linear_recurrence_identity(rng, dtype):
    """s_t = s_{t-1} A + x_t: ds_T/ds_t = A^(T-t), ||A^k||_F^2 = sum_i lambda_i^(2k) for symmetric A."""
    lam = np.array([0.5, -0.45, 0.3, 0.1, -0.05])
    A = jnp.asarray(_symmetric(rng, lam), dtype)
    T = 1100
    xs = jnp.asarray(rng.normal(size=(T, 5)), dtype)
    got = np.asarray(gf.step_lag_norms(lambda s, x: s @ A + x, jnp.zeros(5, dtype), xs), np.float64)
    k = np.arange(1, T + 1)[:, None]
    want = 0.5 * np.logaddexp.reduce(2 * k * np.log(np.abs(lam)), axis=1) / np.log(10)
    assert want[-1] < -330
    np.testing.assert_allclose(got, want, rtol=2e-6 if dtype == jnp.float32 else 1e-12, atol=LOG10_ATOL[np.dtype(dtype)])


def test_out_and_in_dims_select_blocks(rng):
    """A block-diagonal linear map: the (0, 1) block of ds_T/ds_t is zero, the (1, 1) block 0.5^k."""
    A = jnp.diag(jnp.array([0.9, 0.5]))
    xs = jnp.zeros((20, 2))
    cross = gf.step_lag_norms(lambda s, x: s @ A + x, jnp.zeros(2), xs, out_dims=slice(0, 1), in_dims=slice(1, 2))
    own = gf.step_lag_norms(lambda s, x: s @ A + x, jnp.zeros(2), xs, out_dims=slice(1, 2), in_dims=slice(1, 2))
    assert np.all(np.isneginf(np.asarray(cross)))
    np.testing.assert_allclose(own, np.arange(1, 21) * np.log10(0.5), rtol=1e-12)


def _grad_wrt_states(params, xs, loss_fn):
    """dL/dh_t for t = 0..T (c_t fixed) by adding zero perturbations to h_t in a Python loop (float64)."""
    H = params.U.shape[0]

    def loss(eps):
        s = gf.LSTMState(jnp.zeros(H) + eps[0], jnp.zeros(H))
        hs = []
        for t, x in enumerate(xs):
            s = gf.lstm_step(params, s, x)
            s = gf.LSTMState(s.h + eps[t + 1], s.c)
            hs.append(s.h)
        return loss_fn(jnp.stack(hs))

    return np.log10(np.linalg.norm(np.asarray(jax.grad(loss)(jnp.zeros((len(xs) + 1, H)))), axis=1))


def test_loss_grad_norms_match_autodiff_in_float64(rng):
    params = random_params(rng, 3, 5, scale=1.2)
    xs = jnp.asarray(rng.normal(size=(15, 3)))
    targets = jnp.asarray(rng.normal(size=(15, 5)))

    def loss_fn(hs):
        return jnp.sum((hs - targets) ** 2 * jnp.linspace(0.0, 1.0, 15)[:, None])

    got = np.asarray(gf.loss_grad_norms(params, xs, loss_fn))
    np.testing.assert_allclose(got, _grad_wrt_states(params, xs, loss_fn), atol=1e-10)


def test_loss_grad_norms_deep_match_explicit_product(rng):
    """A loss on h_T only: dL/dh_t = (dL/dh_T) (A_T ... A_{t+1})[h rows, h cols]."""
    H, T = 5, 700
    params = random_params(rng, 2, H, scale=0.8, forget_bias=-1.5)
    xs = rng.normal(size=(T, 2))
    w = rng.normal(size=H)
    jac = step_jacobians(params, xs)
    # dL/ds_t = [w, 0] A_T ... A_{t+1}, a renormalised numpy product of explicit Jacobians
    v = np.concatenate([w, np.zeros(H)])
    log10_scale, ref = 0.0, np.empty(T + 1)
    ref[T] = np.log10(np.linalg.norm(w))
    for t in range(T - 1, -1, -1):
        v = v @ jac[t]
        ref[t] = log10_scale + np.log10(np.linalg.norm(v[:H]))
        scale = np.linalg.norm(v)
        v, log10_scale = v / scale, log10_scale + np.log10(scale)
    assert ref[0] < -300
    p32 = gf.LSTMParams(*(a.astype(jnp.float32) for a in params))
    w32 = jnp.asarray(w, jnp.float32)
    got = np.asarray(gf.loss_grad_norms(p32, jnp.asarray(xs, jnp.float32), lambda hs: hs[-1] @ w32))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=LOG10_ATOL[np.dtype("float32")])


def test_batched_variants_equal_a_loop(rng):
    V, T = 4, 30
    params = [random_params(rng, 3, 5, scale=s) for s in (0.5, 1.0, 2.0, 4.0)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    xs = jnp.asarray(rng.normal(size=(V, T, 3)))
    for wrt in ("h", "state"):
        batched = np.asarray(gf.lag_norms(stacked, xs, wrt=wrt))
        loop = np.stack([np.asarray(gf.lag_norms(p, x, wrt=wrt)) for p, x in zip(params, xs)])
        np.testing.assert_allclose(batched, loop, rtol=1e-12, atol=1e-12)
    shared = np.asarray(gf.lag_norms(stacked, xs[0]))
    np.testing.assert_allclose(shared[2], np.asarray(gf.lag_norms(params[2], xs[0])), atol=1e-12)
    h0 = jnp.asarray(rng.normal(size=(V, 5)))
    per_h0 = np.asarray(gf.lag_norms(stacked, xs, h0=h0))
    np.testing.assert_allclose(per_h0[1], np.asarray(gf.lag_norms(params[1], xs[1], h0=h0[1])), atol=1e-12)


def test_works_under_jit_and_vmap(rng):
    params = random_params(rng, 2, 4)
    xs = jnp.asarray(rng.normal(size=(3, 10, 2)))
    eager = np.stack([np.asarray(gf.lag_norms(params, x)) for x in xs])
    traced = jax.jit(jax.vmap(lambda x: gf.lag_norms(params, x)))(xs)
    np.testing.assert_allclose(traced, eager, atol=1e-12)


def test_exploding_variant_is_data_not_a_crash(rng):
    """A relu LSTM with huge weights overflows; its neighbour in the batch is untouched."""
    healthy = random_params(rng, 2, 4)
    wild = random_params(rng, 2, 4, scale=60.0, forget_bias=30.0)
    stacked = jax.tree.map(lambda *a: jnp.stack(a).astype(jnp.float32), healthy, wild)
    xs = jnp.asarray(rng.normal(size=(400, 2)), jnp.float32)
    out = np.asarray(gf.lag_norms(stacked, xs, activation="relu"))
    alone = np.asarray(gf.lag_norms(gf.LSTMParams(*(a[0] for a in stacked)), xs, activation="relu"))
    np.testing.assert_array_equal(out[0], alone)
    assert not np.all(np.isfinite(out[1])) or out[1].max() > 30  # overflowed or grew 30 decades
    assert np.all(np.isfinite(out[0]))


def test_horizon_and_decay_rate():
    profile = jnp.array([-1.0, -5.0, -9.0, -11.0, -12.0])  # lags 1..5
    assert float(gf.horizon(profile, decades=4.0)) == 2.0
    assert float(gf.horizon(profile, decades=20.0)) == np.inf
    assert np.isnan(float(gf.horizon(profile.at[1].set(jnp.nan))))
    lags = np.arange(1, 6)
    np.testing.assert_allclose(float(gf.decay_rate(profile)), np.polyfit(lags, np.asarray(profile), 1)[0], rtol=1e-12)
    assert float(gf.decay_rate(jnp.full(5, -jnp.inf))) == -np.inf
    with_zero = profile.at[-1].set(-jnp.inf)
    np.testing.assert_allclose(float(gf.decay_rate(with_zero)), np.polyfit(lags[:4], np.asarray(profile)[:4], 1)[0], rtol=1e-12)


def test_scan_states_match_the_reference_loop(rng):
    params = random_params(rng, 3, 4)
    xs = jnp.asarray(rng.normal(size=(9, 3)))
    ref = loop_states(params, xs)
    got = gf.unroll(params, xs)
    np.testing.assert_allclose(got.h, np.stack([s.h for s in ref[1:]]), atol=1e-14)
    np.testing.assert_allclose(got.c, np.stack([s.c for s in ref[1:]]), atol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activation": "gelu"}, "activation='gelu'"),
        ({"wrt": "c"}, "wrt='c'"),
        ({"recurrent_activation": "tanh"}, "recurrent_activation"),
    ],
)
def test_unknown_options_are_named(rng, kwargs, match):
    params = random_params(rng, 2, 3)
    with pytest.raises(ValueError, match=match):
        gf.lag_norms(params, jnp.ones((5, 2)), **kwargs)


def test_bad_inputs_are_named(rng):
    params = random_params(rng, 2, 3)
    with pytest.raises(ValueError, match=r"xs must have shape \(T, 2\)"):
        gf.lag_norms(params, jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="xs must hold at least one time step"):
        gf.lag_norms(params, jnp.ones((0, 2)))
    with pytest.raises(ValueError, match="xs must be finite"):
        gf.lag_norms(params, jnp.ones((5, 2)).at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="xs must be finite"):
        gf.loss_grad_norms(params, jnp.ones((5, 2)).at[0, 0].set(jnp.inf), jnp.sum)
    with pytest.raises(ValueError, match=r"params.b must have shape \(12,\)"):
        gf.lag_norms(params._replace(b=jnp.ones(11)), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="params.W must have shape"):
        gf.lag_norms(params._replace(W=jnp.ones((2, 8))), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="params.U must have shape"):
        gf.lag_norms(params._replace(U=jnp.ones((3, 11))), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match=r"h0 must have shape \(H,\) = \(3,\)"):
        gf.lag_norms(params, jnp.ones((5, 2)), h0=jnp.ones(4))
    with pytest.raises(TypeError, match="xs has dtype float32 but params.U has float64"):
        gf.lag_norms(params, jnp.ones((5, 2), jnp.float32))
    with pytest.raises(TypeError, match="xs must have a floating dtype"):
        gf.lag_norms(params, jnp.ones((5, 2), jnp.int32))


@pytest.mark.parametrize("wrt", ["h", "state"])
def test_lstm_fast_path_equals_the_generic_engine(rng, wrt):
    """lag_norms (closed-form pullback, coefficients up front) against step_lag_norms with autodiff."""
    H = 5
    params = random_params(rng, 3, H, scale=1.3)
    xs = jnp.asarray(rng.normal(size=(60, 3)))

    def step(s, x):
        new = gf.lstm_step(params, gf.LSTMState(s[:H], s[H:]), x, activation="softsign")
        return jnp.concatenate([new.h, new.c])

    dims = slice(0, H) if wrt == "h" else slice(None)
    want = gf.step_lag_norms(step, jnp.zeros(2 * H), xs, out_dims=dims, in_dims=dims)
    got = gf.lag_norms(params, xs, activation="softsign", wrt=wrt)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
