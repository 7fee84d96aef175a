"""Results: exact round trip through results.zarr, xarray-readable dims, clear errors, atomic writes."""

import os
import re

import numpy as np
import pytest

import xarray

from gradflow.sweep.layout import STORE_NAME
from gradflow.sweep.results import Results, open_results


def _results(fill: float = 0.0) -> Results:
    """Two swept dims (one categorical), a lagged float32 profile with non-finite entries, a float64 horizon."""
    rng = np.random.default_rng(0)
    profile = (rng.normal(size=(2, 3, 5)) + fill).astype(np.float32)
    profile[0, 1, 3:] = np.nan
    profile[1, 2, 0] = -np.inf
    horizon = np.array([[1.0, np.inf, 3.0], [np.nan, 5.0, 2.0]]) + fill
    return Results(
        dims=("activation", "forget_bias"),
        coords={
            "activation": np.array(["tanh", "relu"]), "forget_bias": np.array([-1.0, 0.5, 2.0]), "lag": np.arange(1, 6)
        },
        data={"log10_norm_h": profile, "horizon_h": horizon, "count": np.arange(6, dtype=np.int32).reshape(2, 3)},
        attrs={
            "config": {"analysis": {"decades": 2.0, "wrt": ["h"]}, "grid": {"forget_bias": [-1.0, 0.5, 2.0]}},
            "config_hash": "ab" * 32,
            "environment": {"versions": {"jax": "0.0", "missing": None}, "x64_enabled": False},
            "timings": {"compile_and_first_chunk_s": [0.25], "total_s": 1.5},
            "n_variants": 6,
            "note": "unicode: λ → ∞",
        },
    )


def _assert_same(got: Results, want: Results) -> None:
    assert got.dims == want.dims and isinstance(got.dims, tuple)
    assert got.coords.keys() == want.coords.keys() and got.data.keys() == want.data.keys()
    for mapping in ("coords", "data"):
        for name, array in getattr(want, mapping).items():
            loaded = getattr(got, mapping)[name]
            assert loaded.dtype == array.dtype and loaded.shape == array.shape, name
            np.testing.assert_array_equal(loaded, array, err_msg=name)
    assert got.attrs == want.attrs


def test_save_and_load_round_trip_exactly(tmp_path):
    want = _results()
    path = want.save(tmp_path / "new" / "dir")
    assert path == tmp_path / "new" / "dir" / STORE_NAME
    got = Results.load(tmp_path / "new" / "dir")
    _assert_same(got, want)
    assert got.data["log10_norm_h"].dtype == np.float32 and got.coords["activation"].tolist() == ["tanh", "relu"]
    assert np.isnan(got.data["horizon_h"][1, 0]) and np.isposinf(got.data["horizon_h"][0, 1])


def test_xarray_opens_the_store_with_named_dims_and_coordinates(tmp_path):
    want = _results()
    want.save(tmp_path)
    ds = xarray.open_zarr(tmp_path / STORE_NAME)
    assert {name: var.dims for name, var in ds.data_vars.items()} == {
        "log10_norm_h": ("activation", "forget_bias", "lag"),
        "horizon_h": ("activation", "forget_bias"),
        "count": ("activation", "forget_bias"),
    }
    assert ds.attrs["n_variants"] == 6 and ds.attrs["note"] == "unicode: λ → ∞"
    picked = ds["horizon_h"].sel(activation="relu", forget_bias=0.5).item()
    assert picked == want.data["horizon_h"][1, 1] == 5.0
    assert open_results(tmp_path).sizes == ds.sizes


def test_numpy_values_in_attrs_are_stored_as_plain_json(tmp_path):
    r = _results()
    r.attrs.update(scalar=np.float32(0.5), integer=np.int64(3), array=np.array([[1, 2], [3, 4]]), pair=(1, 2))
    r.save(tmp_path)
    attrs = Results.load(tmp_path).attrs
    assert (attrs["scalar"], attrs["integer"], attrs["array"], attrs["pair"]) == (0.5, 3, [[1, 2], [3, 4]], [1, 2])
    assert type(attrs["integer"]) is int


def test_dims_of_adds_lag_only_to_lagged_variables():
    r = _results()
    assert r.dims_of("log10_norm_h") == ("activation", "forget_bias", "lag")
    assert r.dims_of("horizon_h") == ("activation", "forget_bias")
    with pytest.raises(KeyError):
        r.dims_of("horizon_state")


@pytest.mark.parametrize("present", [(), (STORE_NAME,)])
def test_loading_a_directory_without_results_names_it(tmp_path, present):
    for name in present:
        (tmp_path / name).mkdir()  # an empty or half-made store: no consolidated metadata
    with pytest.raises(FileNotFoundError, match=re.escape(f"{str(tmp_path)!r} holds no gradflow results")):
        Results.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Results.load(tmp_path / "nowhere")


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    _results().save(tmp_path)
    assert os.listdir(tmp_path) == [STORE_NAME]
    newer = _results(fill=10.0)
    newer.attrs["n_variants"] = 7
    newer.save(tmp_path)
    assert os.listdir(tmp_path) == [STORE_NAME]
    _assert_same(Results.load(tmp_path), newer)


def test_a_failed_save_leaves_the_previous_results_intact(tmp_path):
    old = _results()
    old.save(tmp_path)
    broken = _results(fill=10.0)
    broken.attrs["not_json"] = object()
    with pytest.raises(TypeError, match="cannot store object in the results' attributes"):
        broken.save(tmp_path)
    assert os.listdir(tmp_path) == [STORE_NAME]
    _assert_same(Results.load(tmp_path), old)
