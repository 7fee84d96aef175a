"""Grids and specs: flattening, validation, vmapped init and profiles against loops, no recompilation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from conftest import LOG10_ATOL
from gradflow.lstm.init import SCHEMES
from gradflow.flow.variants import GRID_DEFAULTS, Grid, ModelSpec, init_variants, probe_inputs, profile_variants

#: Every grid below has 6 variants of this spec, so the eager vmapped ops compile once.
SPEC = ModelSpec(input_size=3, hidden_size=4, seq_len=12)
#: Horizon threshold: some of the grid's profiles cross 10^-2 within 12 steps, some do not.
DECADES = 2.0


def _reference_horizon(lagged: np.ndarray, decades: float) -> float:
    below = np.flatnonzero(lagged < -decades)
    return float(below[0] + 1) if below.size else np.inf


def _reference_decay_rate(lagged: np.ndarray) -> float:
    lags = np.arange(1, lagged.size + 1)
    return float(np.polyfit(lags, lagged, 1)[0])


def test_grid_flattens_in_c_order_last_axis_fastest():
    fb, ws, seeds = [0.0, 1.0, 2.0], [0.5, 2.0], [3, 4]
    g = Grid(forget_bias=fb, weight_scale=ws, seed=seeds)
    assert g.names == ("forget_bias", "weight_scale", "seed")
    assert g.shape == (3, 2, 2) and g.size == 12
    F, Wg, S = np.meshgrid(fb, ws, seeds, indexing="ij")
    v = g.values()
    np.testing.assert_array_equal(v["forget_bias"], F.ravel())
    np.testing.assert_array_equal(v["weight_scale"], Wg.ravel())
    np.testing.assert_array_equal(v["seed"], S.ravel())
    assert v["forget_bias"].tolist()[:4] == [0.0, 0.0, 0.0, 0.0] and v["seed"].tolist()[:4] == [3, 4, 3, 4]
    # unravelling a flat index recovers the grid point
    i = np.ravel_multi_index((2, 0, 1), g.shape)
    assert (v["forget_bias"][i], v["weight_scale"][i], v["seed"][i]) == (2.0, 0.5, 4)


def test_grid_axis_order_is_the_keyword_order():
    v = Grid(seed=[0, 1], forget_bias=[5.0, 6.0, 7.0]).values()
    assert v["seed"].tolist() == [0, 0, 0, 1, 1, 1]
    assert v["forget_bias"].tolist() == [5.0, 6.0, 7.0] * 2


def test_grid_defaults_and_dtypes():
    v = Grid(forget_bias=[0.0, 2.0]).values()
    assert set(v) == set(GRID_DEFAULTS)
    np.testing.assert_array_equal(v["weight_scale"], [1.0, 1.0])
    np.testing.assert_array_equal(v["scheme"], [SCHEMES.index("orthogonal")] * 2)
    np.testing.assert_array_equal(v["seed"], [0, 0])
    assert (v["forget_bias"].dtype, v["weight_scale"].dtype) == (np.float64, np.float64)
    assert (v["scheme"].dtype, v["seed"].dtype) == (np.int32, np.uint32)
    empty = Grid()
    assert empty.shape == () and empty.size == 1
    assert {k: a.tolist() for k, a in empty.values().items()} == {
        "forget_bias": [1.0], "weight_scale": [1.0], "scheme": [1], "seed": [0]
    }


def test_grid_schemes_become_indices_and_scalars_become_axes():
    g = Grid(scheme=["normal", "glorot_uniform"], forget_bias=3.0)
    assert g.shape == (2, 1)
    v = g.values()
    assert v["scheme"].tolist() == [2, 0] and v["forget_bias"].tolist() == [3.0, 3.0]
    assert Grid(seed=np.arange(3)).values()["seed"].tolist() == [0, 1, 2]
    assert Grid(seed=[2.0]).values()["seed"].tolist() == [2]


@pytest.mark.parametrize(
    ("axes", "match"),
    [
        (
            {"learning_rate": [0.1]},
            r"unknown grid axis \['learning_rate'\]; "
            r"expected some of \['forget_bias', 'scheme', 'seed', 'weight_scale'\]",
        ),
        ({"forget_bias": []}, r"grid axis 'forget_bias' is empty"),
        ({"forget_bias": [0.0, np.nan]}, r"grid axis 'forget_bias' must hold finite numbers"),
        ({"weight_scale": [np.inf]}, r"grid axis 'weight_scale' must hold finite numbers"),
        ({"weight_scale": ["big"]}, r"grid axis 'weight_scale' must hold finite numbers"),
        ({"seed": [0, 0.5]}, r"grid axis 'seed' must hold integers in \[0, 2\*\*32\); got \[0\.0, 0\.5\]"),
        ({"scheme": ["orthogonal", "xavier"]}, r"scheme='xavier' is not a known initialisation"),
    ],
)
def test_grid_errors_name_the_axis(axes, match):
    with pytest.raises(ValueError, match=match):
        Grid(**axes)


def test_grid_rejects_out_of_range_scheme_index():
    with pytest.raises(ValueError, match="scheme"):
        Grid(scheme=[0, 7])


@pytest.mark.parametrize("seed", [2**32, -1])
def test_grid_rejects_seeds_that_uint32_cannot_hold(seed):
    with pytest.raises(ValueError, match="seed"):
        Grid(seed=[0, seed])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"input_size": 0}, "input_size must be a positive integer; got 0"),
        ({"hidden_size": -3}, "hidden_size must be a positive integer; got -3"),
        ({"seq_len": 2.0}, "seq_len must be a positive integer; got 2.0"),
        ({"hidden_size": True}, "hidden_size must be a positive integer; got True"),
        ({"activation": "gelu"}, "activation='gelu'"),
        ({"recurrent_activation": "tanh"}, "recurrent_activation='tanh'"),
    ],
)
def test_model_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelSpec(**{"input_size": 2, "hidden_size": 4, "seq_len": 12, **kwargs})


def test_model_spec_is_frozen_and_hashable():
    a, b = ModelSpec(2, 4, 12), ModelSpec(2, 4, 12, activation="tanh")
    assert a == b and hash(a) == hash(b) and len({a, b, ModelSpec(2, 5, 12)}) == 2
    assert ModelSpec(np.int64(2), 4, 12) == a  # numpy integers are accepted and compare equal
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.hidden_size = 8


@pytest.mark.slow
def test_init_variants_equals_a_loop_of_init_lstm():
    g = Grid(scheme=list(SCHEMES), seed=[0, 9], weight_scale=[1.3], forget_bias=[-0.5])
    v = g.values()
    got = init_variants(SPEC, v, dtype=jnp.float64)
    assert got.W.shape == (g.size, 3, 16) and got.U.shape == (g.size, 4, 16) and got.b.shape == (g.size, 16)
    assert got.U.dtype == jnp.float64
    for i in range(g.size):
        want = gf.init_lstm(
            jax.random.key(int(v["seed"][i])), SPEC.input_size, SPEC.hidden_size,
            scheme=SCHEMES[v["scheme"][i]], weight_scale=float(v["weight_scale"][i]),
            forget_bias=float(v["forget_bias"][i]), dtype=jnp.float64,
        )
        for a, w in zip(got, want):
            np.testing.assert_array_equal(a[i], w)


def test_probe_inputs_are_deterministic():
    a, b = probe_inputs(SPEC), probe_inputs(SPEC)
    assert a.shape == (SPEC.seq_len, SPEC.input_size) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
    c = probe_inputs(SPEC, seed=1, dtype=jnp.float64)
    assert c.dtype == jnp.float64 and np.max(np.abs(np.asarray(c) - np.asarray(a, np.float64))) > 0.1
    np.testing.assert_array_equal(probe_inputs(SPEC, seed=1, dtype=jnp.float64), c)


def _grid_a():
    return Grid(forget_bias=[-1.0, 2.0], scheme=["orthogonal", "normal", "glorot_uniform"])


@pytest.mark.slow
def test_profile_variants_equals_a_loop_of_lag_norms():
    g = _grid_a()
    v = g.values()
    xs = probe_inputs(SPEC, dtype=jnp.float64)
    out = profile_variants(SPEC, v, xs, decades=DECADES)
    params = [
        gf.init_lstm(
            jax.random.key(0), 3, 4, scheme=SCHEMES[v["scheme"][i]], forget_bias=float(v["forget_bias"][i]),
            dtype=jnp.float64,
        )
        for i in range(g.size)
    ]
    horizons = []
    for w in gf.WRT:
        assert out[f"log10_norm_{w}"].shape == (g.size, SPEC.seq_len) and out[f"horizon_{w}"].shape == (g.size,)
        assert out[f"log10_norm_{w}"].dtype == jnp.float64
        for i in range(g.size):
            lagged = np.asarray(gf.lag_norms(params[i], xs, wrt=w))
            np.testing.assert_allclose(out[f"log10_norm_{w}"][i], lagged, rtol=0, atol=LOG10_ATOL[np.dtype("float64")])
            assert np.min(np.abs(lagged + DECADES)) > 1e-6  # no horizon on a rounding edge
            assert float(out[f"horizon_{w}"][i]) == _reference_horizon(lagged, DECADES)
            np.testing.assert_allclose(float(out[f"decay_rate_{w}"][i]), _reference_decay_rate(lagged), rtol=1e-10)
            horizons.append(_reference_horizon(lagged, DECADES))
    assert np.isinf(horizons).any() and np.isfinite(horizons).any()  # both cases are exercised


def test_profile_variants_does_not_recompile_for_new_values():
    xs = probe_inputs(SPEC, dtype=jnp.float64)
    other = Grid(forget_bias=[0.0, 0.5, 3.0], scheme=["glorot_uniform", "orthogonal"], seed=[3])
    first = profile_variants(SPEC, _grid_a().values(), xs, decades=DECADES)
    before = profile_variants._cache_size()
    second = profile_variants(SPEC, other.values(), xs, decades=DECADES)
    third = profile_variants(SPEC, _grid_a().values(), xs + 1.0, decades=DECADES)
    assert profile_variants._cache_size() == before, "new values of the same shapes recompiled"
    # the new values were used, not baked in as constants
    assert np.max(np.abs(np.asarray(second["log10_norm_h"] - first["log10_norm_h"]))) > 0.1
    assert np.max(np.abs(np.asarray(third["log10_norm_h"] - first["log10_norm_h"]))) > 0.01
    assert (other.values()["forget_bias"][1], other.values()["scheme"][1]) == (0.0, SCHEMES.index("orthogonal"))
    p = gf.init_lstm(jax.random.key(3), 3, 4, scheme="orthogonal", forget_bias=0.0, dtype=jnp.float64)
    np.testing.assert_allclose(
        second["log10_norm_h"][1], np.asarray(gf.lag_norms(p, xs)), atol=LOG10_ATOL[np.dtype("float64")]
    )
    # what fixes shapes is static: another spec (or grid size) is a new compile
    profile_variants(dataclasses.replace(SPEC, hidden_size=3), _grid_a().values(), xs, decades=DECADES)
    assert profile_variants._cache_size() == before + 1


def test_decay_rate_of_a_batch_is_per_row():
    profile = jnp.array([[-1.0, -2.0, -3.0], [-0.5, -1.0, -1.5]])  # by lag 1, 2, 3
    np.testing.assert_allclose(gf.decay_rate(profile), [-1.0, -0.5], rtol=1e-12)
