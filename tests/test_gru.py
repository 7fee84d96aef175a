"""The GRU cell against NumPy and PyTorch, its closed-form pullback against jax.jacrev, and GRU lag profiles
against explicit products of float64 Jacobians, deep ones included."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow.flow.engine import step_lag_norms
from gradflow.flow.networks import model_profiles
from gradflow.lstm.gru import (
    GRUParams,
    gru_linearisation,
    gru_pullback,
    gru_pullback_apply,
    gru_pullback_fn,
    gru_recurrent_blocks_transposed,
    gru_step,
    gru_unroll,
)
from gradflow.lstm.model import Layer, Model

NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda v: np.maximum(v, 0.0),
    "linear": lambda v: v,
    "softsign": lambda v: v / (1.0 + np.abs(v)),
}
NUMPY_GATES = {
    "sigmoid": lambda v: 1.0 / (1.0 + np.exp(-v)),
    "hard_sigmoid": lambda v: np.clip(v + 3.0, 0.0, 6.0) / 6.0,
}
ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("softsign", "sigmoid"), ("linear", "hard_sigmoid"),
                    ("relu", "sigmoid")]
CONVENTIONS = [True, False]


def random_gru(rng, D, H, *, scale=1.0, update_bias=0.0) -> GRUParams:
    """Float64 GRU weights: kernels N(0, scale^2/fan_in), biases N(0, 0.25), ``update_bias`` added to b_z."""
    W = rng.normal(size=(D, 3 * H)) * scale / np.sqrt(D)
    U = rng.normal(size=(H, 3 * H)) * scale / np.sqrt(H)
    b, beta = rng.normal(size=3 * H) * 0.5, rng.normal(size=3 * H) * 0.5
    b[H: 2 * H] += update_bias
    return GRUParams(*(jnp.asarray(a, jnp.float64) for a in (W, U, b, beta)))


def numpy_gru_step(params: GRUParams, h, x, *, act, gate, reset_after):
    """The GRU equations written out in NumPy float64, gate blocks (r, z, n)."""
    W, U, b, beta = (np.asarray(a) for a in params)
    H = U.shape[0]
    blocks = [slice(k * H, (k + 1) * H) for k in range(3)]
    r = NUMPY_GATES[gate](x @ W[:, blocks[0]] + b[blocks[0]] + h @ U[:, blocks[0]] + beta[blocks[0]])
    z = NUMPY_GATES[gate](x @ W[:, blocks[1]] + b[blocks[1]] + h @ U[:, blocks[1]] + beta[blocks[1]])
    if reset_after:
        pre_n = x @ W[:, blocks[2]] + b[blocks[2]] + r * (h @ U[:, blocks[2]] + beta[blocks[2]])
    else:
        pre_n = x @ W[:, blocks[2]] + b[blocks[2]] + (r * h) @ U[:, blocks[2]] + beta[blocks[2]]
    n = NUMPY_ACTIVATIONS[act](pre_n)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("reset_after", CONVENTIONS)
@pytest.mark.parametrize("act, gate", ACTIVATION_PAIRS)
def test_gru_step_and_unroll_equal_numpy(rng, reset_after, act, gate):
    D, H, T = 3, 4, 6
    params = random_gru(rng, D, H)
    xs = rng.normal(size=(T, D))
    options = {"activation": act, "recurrent_activation": gate, "reset_after": reset_after}
    hs = np.asarray(gru_unroll(params, jnp.asarray(xs), **options))
    h = np.zeros(H)
    for t in range(T):
        step = np.asarray(gru_step(params, jnp.asarray(h), jnp.asarray(xs[t]), **options))
        h = numpy_gru_step(params, h, xs[t], act=act, gate=gate, reset_after=reset_after)
        np.testing.assert_allclose(step, h, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(hs[t], h, rtol=1e-13, atol=1e-14)


def _step_jacobian(params, h, x, **options):
    return np.asarray(jax.jacrev(lambda v: gru_step(params, v, x, **options))(h))


@pytest.mark.parametrize("reset_after", CONVENTIONS)
@pytest.mark.parametrize("act, gate", ACTIVATION_PAIRS)
def test_gru_pullback_equals_jacrev(rng, reset_after, act, gate):
    D, H = 3, 6
    options = {"activation": act, "recurrent_activation": gate, "reset_after": reset_after}
    for _ in range(3):
        params = random_gru(rng, D, H, scale=1.5)
        h, x = jnp.asarray(rng.normal(size=H)), jnp.asarray(rng.normal(size=D))
        J = _step_jacobian(params, h, x, **options)
        for R in (1, 2, 4, H):  # reset before: rows through the kernels (2R <= H) or the formed matrix (2R > H)
            M = rng.normal(size=(R, H))
            expected = M @ J
            for pullback in (functools.partial(gru_pullback, params, **options), gru_pullback_fn(params, **options)):
                got = np.asarray(pullback(h, x, jnp.asarray(M)))
                np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("reset_after", CONVENTIONS)
def test_gru_linearisation_vectorises_over_time(rng, reset_after):
    D, H, T = 2, 5, 4
    params = random_gru(rng, D, H)
    hs, xs = jnp.asarray(rng.normal(size=(T, H))), jnp.asarray(rng.normal(size=(T, D)))
    options = {"activation": "softsign", "recurrent_activation": "sigmoid", "reset_after": reset_after}
    together = gru_linearisation(params, hs, xs, **options)
    U_T = gru_recurrent_blocks_transposed(params)
    for t in range(T):
        one = gru_linearisation(params, hs[t], xs[t], **options)
        for field_together, field_one in zip(together, one):
            np.testing.assert_allclose(np.asarray(field_together[t]), np.asarray(field_one), rtol=1e-14, atol=1e-15)
        step = jax.tree.map(lambda a, t=t: a[t], together)
        np.testing.assert_allclose(np.asarray(gru_pullback_apply(U_T, step, jnp.eye(H), reset_after=reset_after)),
                                   _step_jacobian(params, hs[t], xs[t], **options), rtol=1e-12, atol=1e-13)


def test_gru_pullback_rejects_unknown_activations(rng):
    params = random_gru(rng, 2, 3)
    with pytest.raises(ValueError, match="activation='sine'"):
        gru_pullback(params, jnp.zeros(3), jnp.zeros(2), jnp.eye(3), activation="sine")
    with pytest.raises(ValueError, match="recurrent_activation='step'"):
        gru_pullback(params, jnp.zeros(3), jnp.zeros(2), jnp.eye(3), recurrent_activation="step")
    with pytest.raises(ValueError, match="activation='sine'"):
        gru_pullback_fn(params, activation="sine")
    with pytest.raises(ValueError, match="recurrent_activation='step'"):
        gru_pullback_fn(params, recurrent_activation="step")


def renormalised_product_profile(jacobians) -> np.ndarray:
    """log10 ||J_T ... J_{T-k+1}||_F for k = 1..T from float64 Jacobians (J_1..J_T), as a log-sum of rescaled
    products: ``P <- (P J) / max|P J|`` with the log10 of every scale added up."""
    H = jacobians[0].shape[0]
    P, log_scale, out = np.eye(H), 0.0, []
    for J in jacobians[::-1]:
        P = P @ J
        scale = np.abs(P).max()
        P, log_scale = P / scale, log_scale + np.log10(scale)
        out.append(log_scale + np.log10(np.linalg.norm(P)))
    return np.array(out)


def reference_profile(params, xs, **options) -> np.ndarray:
    """The lag profile from explicit jacrev Jacobians of every step at the forward pass's states."""
    hs = np.asarray(gru_unroll(params, xs, **options))
    consumed = np.concatenate([np.zeros((1, hs.shape[1])), hs[:-1]])
    jacobians = jax.vmap(jax.jacrev(lambda h, x: gru_step(params, h, x, **options)))(jnp.asarray(consumed), xs)
    return renormalised_product_profile(list(np.asarray(jacobians)))


def _layer_options(layer: Layer) -> dict:
    return {"activation": layer.activation, "recurrent_activation": layer.recurrent_activation,
            "reset_after": layer.cell == "gru"}


@pytest.mark.parametrize("cell, act, gate", [("gru", "tanh", "sigmoid"), ("gru_reset_before", "relu", "hard_sigmoid"),
                                             ("gru", "softsign", "hard_sigmoid"), ("gru_reset_before", "tanh", "sigmoid")])
def test_model_profile_of_a_gru_layer_equals_the_product_of_jacobians(rng, cell, act, gate):
    D, H, T = 3, 4, 12
    layer = Layer(random_gru(rng, D, H, scale=1.2), cell=cell, activation=act, recurrent_activation=gate)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    profile = model_profiles(Model((layer,)), xs).layers[0]
    assert (profile.cell, profile.hidden_size) == ("gru", H)
    np.testing.assert_allclose(profile.log10_norm_h, reference_profile(layer.params, xs, **_layer_options(layer)),
                               rtol=0, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["gru", "gru_reset_before"])
def test_deep_gru_profile_below_1e_300_equals_the_renormalised_product(rng, cell):
    D, H, T = 2, 3, 200
    # z = sigmoid(-6) ~ 2.5e-3 and weak kernels: every step shrinks the Jacobian by ~2.5 decades.
    layer = Layer(random_gru(rng, D, H, scale=0.05, update_bias=-6.0), cell=cell)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    expected = reference_profile(layer.params, xs, **_layer_options(layer))
    assert expected[-1] < -300  # far below the smallest normal float64 squared, let alone float32
    got = model_profiles(Model((layer,)), xs).layers[0].log10_norm_h
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    step = jax.tree_util.Partial(gru_step, layer.params, reset_after=cell == "gru")
    closed = jax.tree_util.Partial(gru_pullback, layer.params, reset_after=cell == "gru")
    for pullback in (None, closed):  # the generic and the closed-form engine, whichever model_profiles uses
        np.testing.assert_allclose(np.asarray(step_lag_norms(step, jnp.zeros(H), xs, pullback=pullback)), expected,
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("act, gate", [("tanh", "sigmoid"), ("relu", "hard_sigmoid")])
def test_float32_profile_with_the_closed_form_tracks_float64(rng, act, gate):
    D, H, T = 3, 8, 40
    params = random_gru(rng, D, H, scale=1.2)
    xs = jnp.asarray(rng.normal(size=(T, D)))
    results = {}
    for dtype, reset_after in itertools.product((jnp.float32, jnp.float64), CONVENTIONS):
        p = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype), params)
        options = {"activation": act, "recurrent_activation": gate, "reset_after": reset_after}
        step = jax.tree_util.Partial(gru_step, p, **options)
        pullback = jax.tree_util.Partial(gru_pullback, p, **options)
        profile = step_lag_norms(step, jnp.zeros(H, dtype), xs.astype(dtype), pullback=pullback)
        assert profile.dtype == dtype
        results[dtype, reset_after] = np.asarray(profile, np.float64)
    for reset_after in CONVENTIONS:
        np.testing.assert_allclose(results[jnp.float32, reset_after], results[jnp.float64, reset_after],
                                   rtol=0, atol=2e-4)


@pytest.mark.parametrize("act, gate", [("tanh", "sigmoid")])
def test_gru_unroll_equals_torch_nn_gru(rng, act, gate):
    torch = pytest.importorskip("torch")
    D, H, T = 3, 5, 9
    torch.manual_seed(0)
    gru = torch.nn.GRU(D, H, dtype=torch.float64)
    xs = rng.normal(size=(T, D))
    with torch.no_grad():
        expected, _ = gru(torch.from_numpy(xs)[:, None, :])
    params = GRUParams(*(jnp.asarray(t.detach().numpy()) for t in
                         (gru.weight_ih_l0.T, gru.weight_hh_l0.T, gru.bias_ih_l0, gru.bias_hh_l0)))
    got = gru_unroll(params, jnp.asarray(xs), activation=act, recurrent_activation=gate, reset_after=True)
    np.testing.assert_allclose(np.asarray(got), expected[:, 0, :].numpy(), rtol=1e-13, atol=1e-14)
