"""Results a user can carry away: labelled variables and coordinates with units, NetCDF export, coordinates
that hold the decimal values the config names, the code's commit, and an honest progress rate."""

import json
import re
import time

import numpy as np
import pytest
import xarray

import gradflow as gf
from gradflow.config import parse_config
from gradflow.profiles.job import run_sweep
from gradflow.sweep.layout import STORE_NAME
from gradflow.sweep.runner import VariantRate

CONFIG = """\
[model]
input_size = 2
hidden_size = 3

[grid]
forget_bias = [-1.0, 1.0]
weight_scale = {start = 0.25, stop = 4.0, num = 5, log = true}

[data]
seq_len = 6

[analysis]
chunk_size = 5
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("carry")
    run_sweep(parse_config(CONFIG), out, show_progress=False)
    return out


def test_every_variable_and_coordinate_says_what_it_is_and_in_what_units(store):
    ds = xarray.open_zarr(store / STORE_NAME)
    assert ds["log10_norm_h"].attrs["long_name"].startswith("log10 of the Frobenius norm")  # moved from test_results
    for name, var in ds.data_vars.items():
        assert var.attrs.get("long_name"), name
        assert var.dtype == bool or var.attrs.get("units"), name
    assert ds["horizon_h"].attrs["units"] == "steps" and ds["decay_rate_h"].attrs["units"] == "decades per step"
    for name in ds.coords:
        assert ds[name].attrs.get("long_name"), name
    assert ds["lag"].attrs["units"] == "steps" and ds["forget_bias"].attrs["long_name"] == "initial forget-gate bias"


def test_a_range_holds_the_values_it_names_so_they_can_be_selected(store):
    ds = gf.open_results(store)
    assert ds.weight_scale.values.tolist() == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert ds.horizon_h.sel(weight_scale=2.0).shape == (2,)


def test_the_store_exports_to_netcdf_and_reads_back(store, tmp_path):
    ds = gf.open_results(store)
    ds.to_netcdf(tmp_path / "results.nc")  # dict attributes made this fail
    back = xarray.open_dataset(tmp_path / "results.nc")
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values, err_msg=name)
    assert json.loads(back.attrs["config"]) == parse_config(CONFIG).resolved()
    assert back["horizon_h"].attrs["units"] == "steps"
    back.close()


def test_the_environment_records_the_code_commit(store):
    env = gf.sweep_results(parse_config(CONFIG)).attrs["environment"]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", env["git_commit"]), env["git_commit"]


def test_the_progress_rate_is_variants_finished_per_second_since_the_first_dispatch(monkeypatch):
    clock = iter([100.0, 101.0, 103.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock))
    rate = VariantRate()
    rate.start()
    rate.start()  # a later dispatch does not restart the clock
    assert rate.add(60) == "60 variants/s"
    assert rate.add(120) == "60 variants/s"  # 180 variants in 3 s
