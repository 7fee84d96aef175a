"""Analysis methods as a documented choice: the enum, sweep configs that name them, what the store keeps (with
error estimates), and the figures' error bands. Each stored number is checked against the function that defines it
or against the exact method."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

from gradflow.config import parse_config
from gradflow.flow.engine import lag_norms
from gradflow.flow.lyapunov import lstm_lyapunov_spectrum
from gradflow.flow.methods import (
    LYAPUNOV_WINDOWS,
    METHODS,
    Method,
    as_method,
    estimate_lag_norms,
    lyapunov_with_stderr,
)
from gradflow.flow.probes import probe_lag_norms
from gradflow.flow.variants import PROBE_STREAM, init_variants, probe_inputs
from gradflow.lstm.init import init_lstm
from gradflow.profiles.job import sweep_results
from gradflow.sweep.job import config_hash

matplotlib.use("Agg")

BASE = """
[model]
input_size = 2
hidden_size = 6
[grid]
forget_bias = [-1.0, 0.5, 2.0]
seed = [0, 1, 2]
[data]
seq_len = 36
input_seed = 3
[analysis]
wrt = ["h", "state"]
dtype = "float64"
"""


def _sweep(analysis: str = "", **replace):
    text = BASE + analysis
    for old, new in replace.items():
        text = text.replace(old, new)
    config = parse_config(text)
    return config, sweep_results(config)


def _variant(config, index: int):
    """The params and probe inputs of flat variant ``index`` of a sweep, as the sweep builds them."""
    ((_, spec),) = config.specs()
    values = {k: v[index: index + 1] for k, v in config.variants().values().items()}
    params = jax.tree_util.tree_map(lambda a: a[0], init_variants(spec, values, dtype=jnp.float64))
    return params, probe_inputs(spec, seed=config.data.input_seed, dtype=jnp.float64), int(values["seed"][0])


def test_the_enum_names_every_method_and_its_docstring_states_cost_memory_and_accuracy():
    assert METHODS == ("exact", "spectral", "probes") and as_method("probes") is Method.PROBES
    for word in ("cost per step", "memory", "accuracy", "exact", "spectral", "probes"):
        assert word in Method.__doc__
    with pytest.raises(ValueError, match=r"method='hutchinson' is not known; expected one of \['exact', 'spectral'"):
        as_method("hutchinson")


def test_estimate_lag_norms_dispatches_and_refuses_a_key_where_nothing_is_drawn(rng):
    params = init_lstm(jax.random.key(0), 2, 5, dtype=jnp.float64)
    xs = jnp.asarray(rng.normal(size=(12, 2)))
    exact = estimate_lag_norms(params, xs)
    assert exact.stderr is None and np.array_equal(exact.log10_norm, lag_norms(params, xs))
    spectral = estimate_lag_norms(params, xs, method="spectral", wrt="state")
    np.testing.assert_array_equal(spectral.log10_norm, lag_norms(params, xs, wrt="state", norm="spectral"))
    probes = estimate_lag_norms(params, xs, method="probes", key=jax.random.key(1), probes=4)
    np.testing.assert_array_equal(probes.stderr, probe_lag_norms(params, xs, jax.random.key(1), probes=4)[1])
    with pytest.raises(ValueError, match='key: method="probes" needs a PRNG key'):
        estimate_lag_norms(params, xs, method="probes")
    with pytest.raises(ValueError, match="key: method='exact' is exact and draws nothing"):
        estimate_lag_norms(params, xs, key=jax.random.key(1))


def test_configs_without_the_new_keys_keep_their_hash():
    """A store written before methods existed still resumes: the neutral values are left out of the hash."""
    plain = parse_config(BASE)
    assert not {"method", "probes", "lyapunov"} & set(plain.resolved()["analysis"])
    explicit = parse_config(BASE + 'method = "exact"\nlyapunov = 0\n')
    assert config_hash(explicit.resolved()) == config_hash(plain.resolved())
    hashes = {config_hash(parse_config(BASE + extra).resolved()) for extra in (
        "", 'method = "spectral"\n', 'method = "probes"\n', 'method = "probes"\nprobes = 8\n', "lyapunov = 2\n")}
    assert len(hashes) == 5


def test_a_probes_sweep_stores_each_variants_estimate_and_errors_that_cover_the_exact_profile():
    config, probed = _sweep('method = "probes"\nprobes = 32\n')
    _, exact = _sweep()
    assert set(probed.data) == set(exact.data) | {"stderr_log10_norm_h", "stderr_log10_norm_state"}
    # Each variant's probes come from its own seed: the stored estimate is probe_lag_norms with that key.
    for index in (0, 7):
        params, xs, seed = _variant(config, index)
        key = jax.random.fold_in(jax.random.key(seed), PROBE_STREAM)
        estimate, stderr = probe_lag_norms(params, xs, key, probes=32, wrt="state")
        np.testing.assert_allclose(probed.data["log10_norm_state"].reshape(9, -1)[index], estimate, atol=1e-12)
        np.testing.assert_allclose(probed.data["stderr_log10_norm_state"].reshape(9, -1)[index], stderr, atol=1e-12)
    # Calibration against exact: 32 probes cover about 92% at 2 s.e. (nominal 95%); a bar 2x too small covers ~68%.
    for wrt in ("h", "state"):
        z = np.abs(probed.data[f"log10_norm_{wrt}"] - exact.data[f"log10_norm_{wrt}"])
        z = z / probed.data[f"stderr_log10_norm_{wrt}"]
        assert 0.85 <= np.mean(z < 2) and 0.5 <= np.mean(z < 1) <= 0.85, (wrt, np.mean(z < 1), np.mean(z < 2))
        assert probed.attrs["config"]["analysis"]["method"] == "probes"


def test_a_probes_sweep_does_not_depend_on_how_variants_are_chunked():
    _, whole = _sweep('method = "probes"\nprobes = 8\n')
    _, chunked = _sweep('method = "probes"\nprobes = 8\nchunk_size = 2\n')
    for name in ("log10_norm_h", "stderr_log10_norm_h"):
        np.testing.assert_allclose(whole.data[name], chunked.data[name], rtol=0, atol=1e-13)


def test_a_spectral_sweep_stores_the_spectral_profile_between_its_frobenius_bounds():
    config, spectral = _sweep('method = "spectral"\n')
    _, frobenius = _sweep()
    params, xs, _ = _variant(config, 4)
    np.testing.assert_allclose(spectral.data["log10_norm_h"].reshape(9, -1)[4],
                               lag_norms(params, xs, norm="spectral"), atol=1e-12)
    assert "stderr_log10_norm_h" not in spectral.data
    for wrt, n in (("h", 6), ("state", 12)):
        s, f = spectral.data[f"log10_norm_{wrt}"], frobenius.data[f"log10_norm_{wrt}"]
        assert np.all(s <= f + 1e-12) and np.all(s >= f - 0.5 * math.log10(n) - 1e-12)
        assert np.any(s < f - 0.05)  # the two norms do differ: the column is not a copy


def test_a_lyapunov_sweep_stores_the_windowed_exponents_of_the_qr_method():
    config, results = _sweep("lyapunov = 3\n", **{"seq_len = 36": "seq_len = 45"})
    assert results.dims_of("lyapunov") == ("forget_bias", "seed", "exponent")
    assert results.data["lyapunov"].shape == results.data["stderr_lyapunov"].shape == (3, 3, 3)
    params, xs, _ = _variant(config, 5)
    window = 45 // (LYAPUNOV_WINDOWS + 1)
    # The windows after the first are the QR method's exponents over those steps, the first a transient.
    reference = lstm_lyapunov_spectrum(params, xs[: window * (LYAPUNOV_WINDOWS + 1)], k=3, transient=window)
    np.testing.assert_allclose(results.data["lyapunov"].reshape(9, 3)[5], reference, rtol=1e-10, atol=1e-12)
    lead = results.data["lyapunov"][..., 0]
    assert np.all(results.data["stderr_lyapunov"] > 0)
    # QR order is descending once aligned; over 40 steps close neighbours may still be swapped, rarely the leader.
    assert np.mean(np.diff(results.data["lyapunov"], axis=-1) <= 0) > 0.8
    assert lead[2].mean() > lead[0].mean()  # a larger forget bias remembers longer: a slower contraction


def test_the_lyapunov_standard_error_matches_the_spread_over_independent_input_sequences():
    """Over independent driving sequences the estimates scatter as much as their stated standard error."""
    params = init_lstm(jax.random.key(2), 3, 4, dtype=jnp.float64, weight_scale=2.0)
    keys = jax.random.split(jax.random.key(5), 16)
    xs = jax.vmap(lambda k: jax.random.normal(k, (360, 3), jnp.float64))(keys)
    lead, err = jax.vmap(lambda x: lyapunov_with_stderr(params, x, k=1))(xs)
    ratio = float(np.std(lead[:, 0], ddof=1) / np.sqrt(np.mean(np.square(err[:, 0]))))
    assert 0.5 < ratio < 2.0, ratio
    with pytest.raises(ValueError, match="xs: T = 10 steps is too short for 8 windows"):
        lyapunov_with_stderr(params, xs[0, :10], k=1)


def test_figures_draw_the_probes_error_bands_the_spectral_norm_and_the_lyapunov_exponents(tmp_path):
    import matplotlib.pyplot as plt

    from gradflow.plot.profiles import plot_all

    _, probed = _sweep('method = "probes"\nprobes = 8\nlyapunov = 2\n')
    before = set(plt.get_fignums())
    paths = plot_all(probed, tmp_path / "probes")
    assert {p.name for p in paths} >= {"lag_profiles.png", "lyapunov.png", "lyapunov.pdf"}
    assert set(plt.get_fignums()) == before  # every figure closed
    from gradflow.plot.profiles import lag_profiles_figure

    calls = []
    original = matplotlib.axes.Axes.fill_between
    matplotlib.axes.Axes.fill_between = lambda self, *a, **k: calls.append(a) or original(self, *a, **k)
    try:
        plt.close(lag_profiles_figure(probed))
        _, exact = _sweep()
        n_exact = len(calls)
        plt.close(lag_profiles_figure(exact))
    finally:
        matplotlib.axes.Axes.fill_between = original
    assert n_exact == 2 * 3 and len(calls) == n_exact  # one band per curve (3 forget biases x 2 wrt); none for exact
    lags, low, high = calls[0]
    assert np.all(high - low > 0) and len(lags) == 36
    _, spectral = _sweep('method = "spectral"\n')
    from gradflow.plot.profiles import profile_label

    assert r"\|_2" in profile_label(spectral, "h") and r"\|_F" in profile_label(exact, "h")
