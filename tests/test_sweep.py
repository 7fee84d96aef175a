"""The sweep (sweep_results) against a Python loop of lag_norms: chunking, padding, shape sweeps, dtypes, explosions, attrs.

Every sweep here uses input_size 2, chunks of 4 variants and decades 2, so runs of the same spec share
one compile of ``profile_variants`` (the same spec also serves tests/test_cli.py).
"""

import hashlib
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from conftest import LOG10_ATOL
from gradflow.config import parse_config
from gradflow.profiles.job import sweep_results
from gradflow.sweep.job import config_hash
from gradflow.flow.saturation import GATE_NAMES, saturation_fractions
from gradflow.flow.variants import ModelSpec, probe_inputs, profile_variants

DECADES = 2.0
FORGET_BIAS = [-1.0, 0.5, 2.0]
SEEDS = [0, 1]
INPUT_SEED = 3

#: 6 variants in chunks of 4: the second chunk is padded with two copies of the last variant.
BASE = """\
[model]
input_size = 2
hidden_size = 3

[grid]
forget_bias = [-1.0, 0.5, 2.0]
seed = [0, 1]

[data]
seq_len = 8
input_seed = 3

[analysis]
decades = 2.0
chunk_size = 4
"""


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` (which must occur) replaced by ``new``."""
    assert old in text
    return text.replace(old, new)


_init_lstm = jax.jit(gf.init_lstm, static_argnums=(1, 2), static_argnames=("scheme", "dtype"))


def _reference(*, hidden_size=3, seq_len=8, init_dtype=jnp.float32, wrt=gf.WRT):
    """float64 lag profiles by lag (fb, seed, T) from a loop of lag_norms over the variants.

    Weights and probe inputs are drawn in ``init_dtype`` as the sweep draws them, then cast to float64.
    """
    spec = ModelSpec(input_size=2, hidden_size=hidden_size, seq_len=seq_len)
    xs = jnp.asarray(probe_inputs(spec, seed=INPUT_SEED, dtype=init_dtype), jnp.float64)
    out = {w: np.empty((len(FORGET_BIAS), len(SEEDS), seq_len)) for w in wrt}
    for (i, fb), (j, seed) in itertools.product(enumerate(FORGET_BIAS), enumerate(SEEDS)):
        params = _init_lstm(jax.random.key(seed), 2, hidden_size, forget_bias=fb, dtype=init_dtype)
        params = gf.LSTMParams(*(jnp.asarray(a, jnp.float64) for a in params))
        for w in wrt:
            out[w][i, j] = np.asarray(gf.lag_norms(params, xs, wrt=w))
    return out


def _reference_horizon(lagged: np.ndarray, decades: float) -> np.ndarray:
    below = lagged < -decades
    return np.where(below.any(-1), np.argmax(below, -1) + 1.0, np.inf)


def _reference_decay_rate(lagged: np.ndarray) -> np.ndarray:
    lags = np.arange(1, lagged.shape[-1] + 1)
    flat = lagged.reshape(-1, lagged.shape[-1])
    return np.array([np.polyfit(lags, row, 1)[0] for row in flat]).reshape(lagged.shape[:-1])


@pytest.fixture(scope="module")
def base():
    return sweep_results(parse_config(BASE), show_progress=False)


@pytest.fixture(scope="module")
def reference32():
    return _reference()


def test_run_sweep_equals_a_loop_of_lag_norms(base, reference32):
    assert base.dims == ("forget_bias", "seed")
    np.testing.assert_array_equal(base.coords["forget_bias"], FORGET_BIAS)
    np.testing.assert_array_equal(base.coords["seed"], SEEDS)
    np.testing.assert_array_equal(base.coords["lag"], np.arange(1, 9))
    profiles = {f"{k}_{w}" for k in ("log10_norm", "horizon", "decay_rate") for w in ("h", "state")}
    assert set(base.data) == profiles | {f"saturation_{g}" for g in GATE_NAMES} | {"nonfinite"}
    assert not base.data["nonfinite"].any()
    horizons = []
    for w in gf.WRT:
        got, want = base.data[f"log10_norm_{w}"], reference32[w]
        assert got.shape == (3, 2, 8) and got.dtype == np.float32
        assert base.dims_of(f"log10_norm_{w}") == ("forget_bias", "seed", "lag")
        np.testing.assert_allclose(got, want, rtol=0, atol=LOG10_ATOL[np.dtype("float32")])
        assert np.min(np.abs(want + DECADES)) > 1e-3  # no horizon on a rounding edge
        assert base.data[f"horizon_{w}"].shape == (3, 2)
        np.testing.assert_array_equal(base.data[f"horizon_{w}"], _reference_horizon(want, DECADES))
        np.testing.assert_allclose(base.data[f"decay_rate_{w}"], _reference_decay_rate(want), rtol=0, atol=1e-4)
        horizons.append(_reference_horizon(want, DECADES))
    assert np.isinf(horizons).any() and np.isfinite(horizons).any()  # both cases are exercised


def test_saturation_fractions_are_those_of_each_variant(base):
    spec = ModelSpec(input_size=2, hidden_size=3, seq_len=8)
    xs = probe_inputs(spec, seed=INPUT_SEED, dtype=jnp.float32)
    for (i, fb), (j, seed) in itertools.product(enumerate(FORGET_BIAS), enumerate(SEEDS)):
        params = _init_lstm(jax.random.key(seed), 2, 3, forget_bias=fb, dtype=jnp.float32)
        want = saturation_fractions(params, xs)
        for gate in GATE_NAMES:
            # fractions of 24 entries: equal up to float32 summation order
            np.testing.assert_allclose(base.data[f"saturation_{gate}"][i, j], want[gate], rtol=0, atol=1e-6)
    assert base.data["saturation_forget"].max() > 0  # forget bias 2: some forget gates above 0.95


def test_chunks_that_do_not_divide_the_variants_give_the_same_results_as_one_chunk(base):
    one_chunk = sweep_results(parse_config(_replace(BASE, "chunk_size = 4", "chunk_size = 128")), show_progress=False)
    assert base.attrs["work_chunks"] == 2 and one_chunk.attrs["work_chunks"] == 1
    assert one_chunk.dims == base.dims and set(one_chunk.data) == set(base.data)
    for name, array in base.data.items():
        assert one_chunk.data[name].shape == array.shape
        np.testing.assert_array_equal(one_chunk.data[name], array, err_msg=name)


def test_new_grid_values_reuse_the_compiled_sweep(base):
    before = profile_variants._cache_size()
    other = sweep_results(parse_config(_replace(BASE, "[-1.0, 0.5, 2.0]", "[0.0, 1.0, 3.0]")), show_progress=False)
    assert profile_variants._cache_size() == before, "new grid values of the same shapes recompiled"
    np.testing.assert_array_equal(other.coords["forget_bias"], [0.0, 1.0, 3.0])
    assert np.max(np.abs(other.data["log10_norm_h"] - base.data["log10_norm_h"])) > 0.1


@pytest.mark.slow
def test_shorter_seq_len_is_nan_padded_past_its_own_length(base):
    both = sweep_results(parse_config(_replace(BASE, "seq_len = 8", "seq_len = [8, 12]")), show_progress=False)
    assert both.dims == ("seq_len", "forget_bias", "seed")
    np.testing.assert_array_equal(both.coords["seq_len"], [8, 12])
    np.testing.assert_array_equal(both.coords["lag"], np.arange(1, 13))
    for w in gf.WRT:
        profile = both.data[f"log10_norm_{w}"]
        assert profile.shape == (2, 3, 2, 12)
        np.testing.assert_array_equal(profile[0, ..., :8], base.data[f"log10_norm_{w}"])
        assert np.isnan(profile[0, ..., 8:]).all()
        assert np.isfinite(profile[1]).all()
        for kind in ("horizon", "decay_rate"):
            np.testing.assert_array_equal(both.data[f"{kind}_{w}"][0], base.data[f"{kind}_{w}"])
    want = _reference(seq_len=12, wrt=("h",))["h"]
    np.testing.assert_allclose(both.data["log10_norm_h"][1], want, rtol=0, atol=LOG10_ATOL[np.dtype("float32")])


@pytest.mark.slow
def test_a_list_of_hidden_sizes_is_a_leading_dim(base):
    both = sweep_results(parse_config(_replace(BASE, "hidden_size = 3", "hidden_size = [3, 4]")), show_progress=False)
    assert both.dims == ("hidden_size", "forget_bias", "seed")
    np.testing.assert_array_equal(both.coords["hidden_size"], [3, 4])
    assert both.data["log10_norm_h"].shape == (2, 3, 2, 8) and both.data["horizon_state"].shape == (2, 3, 2)
    for name, array in base.data.items():
        np.testing.assert_array_equal(both.data[name][0], array, err_msg=name)
    want = _reference(hidden_size=4, wrt=("h",))["h"]
    np.testing.assert_allclose(both.data["log10_norm_h"][1], want, rtol=0, atol=LOG10_ATOL[np.dtype("float32")])


@pytest.fixture(scope="module")
def float64_run():
    text = _replace(BASE, "chunk_size = 4", 'chunk_size = 4\ndtype = "float64"\nwrt = ["h"]')
    with jax.enable_x64(False):  # as in a plain session: the sweep turns float64 on itself
        return sweep_results(parse_config(text), show_progress=False)


@pytest.mark.slow
def test_float64_config_gives_float64_arrays_equal_to_a_float64_loop(float64_run):
    per_wrt = {"log10_norm_h", "horizon_h", "decay_rate_h"}
    assert set(float64_run.data) == per_wrt | {f"saturation_{g}" for g in GATE_NAMES} | {"nonfinite"}
    assert all(a.dtype == np.float64 for name, a in float64_run.data.items() if name != "nonfinite")
    want = _reference(init_dtype=jnp.float64, wrt=("h",))["h"]
    np.testing.assert_allclose(float64_run.data["log10_norm_h"], want, rtol=0, atol=LOG10_ATOL[np.dtype("float64")])
    np.testing.assert_array_equal(float64_run.data["horizon_h"], _reference_horizon(want, DECADES))
    assert float64_run.attrs["config"]["analysis"]["dtype"] == "float64"


def test_float64_config_agrees_with_float32(base, float64_run):
    np.testing.assert_allclose(float64_run.data["log10_norm_h"], base.data["log10_norm_h"], rtol=0, atol=1e-4)


def test_attrs_record_config_hash_and_environment(base):
    config = parse_config(BASE)
    attrs = base.attrs
    assert attrs["config"] == config.resolved()
    assert attrs["config_hash"] == config_hash(config)
    assert attrs["config_hash"] == hashlib.sha256(json.dumps(config.resolved(), sort_keys=True).encode()).hexdigest()
    assert attrs["config_source"] == BASE
    env = attrs["environment"]
    assert env["versions"]["jax"] == jax.__version__ and env["versions"]["numpy"] == np.__version__
    assert env["versions"]["gradflow"] == gf.__version__
    assert env["backend"] == jax.default_backend()
    assert env["devices"] == [str(d) for d in jax.devices()]
    if jax.config.jax_default_matmul_precision is None and jax.default_backend() == "cpu":
        assert env["matmul_precision"] == "default (full float32 on CPU)"
    assert attrs["chunk_shape"] == [2, 2] and attrs["work_chunks"] == 2  # 4 variants: 2 rows of 2
    assert json.loads(json.dumps(attrs)) == attrs  # JSON-ready as it is


#: relu, T = 48: weight scale 10 grows the norm to ~1e36 (its square overflows float32), 30 overflows
#: the forward pass to NaN; 0.5 and 3 stay moderate. Each chunk of 4 (one forget bias) holds both kinds.
EXPLODING = """\
[model]
input_size = 2
hidden_size = 3
activation = "relu"

[grid]
forget_bias = [1.0, 3.0]
weight_scale = [0.5, 3.0, 10.0, 30.0]

[data]
seq_len = 48

[analysis]
wrt = ["h"]
decades = 2.0
chunk_size = 4
"""


def test_an_exploding_variant_is_data_and_leaves_its_neighbours_intact():
    results = sweep_results(parse_config(EXPLODING), show_progress=False)
    profile, horizon = results.data["log10_norm_h"], results.data["horizon_h"]
    assert profile.shape == (2, 4, 48)
    # weight scale 30 overflows: NaN profile, NaN horizon and decay rate
    assert np.isnan(profile[:, 3]).all()
    assert np.isnan(horizon[:, 3]).all() and np.isnan(results.data["decay_rate_h"][:, 3]).all()
    # weight scale 10: finite but huge, a norm near 1e36
    assert np.isfinite(profile[:, 2]).all() and profile[:, 2].max() > 30
    # flagged: exactly the overflowing variants
    np.testing.assert_array_equal(results.data["nonfinite"], np.array([[False, False, False, True]] * 2))
    # the others equal a run without the exploding variants (same compile: chunks of 4)
    tame = sweep_results(parse_config(_replace(EXPLODING, "[0.5, 3.0, 10.0, 30.0]", "[0.5, 3.0]")), show_progress=False)
    assert np.isfinite(profile[:, :2]).all() and np.abs(profile[:, :2]).max() < 15
    np.testing.assert_allclose(profile[:, :2], tame.data["log10_norm_h"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(horizon[:, :2], tame.data["horizon_h"])


def test_progress_goes_to_stderr_only_when_asked(capsys):
    config = parse_config(BASE)
    sweep_results(config, show_progress=False)
    assert capsys.readouterr() == ("", "")
    sweep_results(config, show_progress=True)  # stderr is not a terminal here: log lines
    out, err = capsys.readouterr()
    assert out == ""
    assert "lag profiles: 2/2 chunks" in err and "variants/s" in err


def test_public_horizon_and_decay_rate_of_a_stored_profile_give_the_stored_values(tmp_path):
    """One orientation: profiles in the store are by lag, as gf.lag_norms returns them, so the public
    summaries applied to a stored profile reproduce the stored horizon and decay rate exactly."""
    gf.run_sweep(parse_config(BASE), tmp_path, show_progress=False)
    ds = gf.open_results(tmp_path)
    for w in gf.WRT:
        stored = jnp.asarray(ds[f"log10_norm_{w}"].values)
        assert ds[f"log10_norm_{w}"].dims[-1] == "lag" and int(ds["lag"][0]) == 1
        horizon = np.asarray(gf.horizon(stored, decades=DECADES))
        np.testing.assert_array_equal(horizon, ds[f"horizon_{w}"].values)
        assert np.isfinite(horizon).any()  # a horizon inside T is exercised, not only 'never'
        np.testing.assert_allclose(np.asarray(gf.decay_rate(stored)), ds[f"decay_rate_{w}"].values, rtol=1e-6)
        # the stored profile is the one the engine returns for that variant (index 0 = lag 1)
        params = _init_lstm(jax.random.key(SEEDS[0]), 2, 3, forget_bias=FORGET_BIAS[0], dtype=jnp.float32)
        xs = probe_inputs(ModelSpec(input_size=2, hidden_size=3, seq_len=8), seed=INPUT_SEED, dtype=jnp.float32)
        np.testing.assert_allclose(stored[0, 0], gf.lag_norms(params, xs, wrt=w), atol=LOG10_ATOL[np.dtype("float32")])
