"""The sweep store: layout aligned with work chunks, resume after SIGKILL, shards and jax.distributed
processes filling one store, refusal of a different config, ``gradflow info``.

Subprocesses share the test suite's compilation cache, so each compiles at most once per machine.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray

from gradflow.cli import main
from gradflow.config import parse_config
from gradflow.sweep.layout import DONE_DIR, STORE_NAME
from gradflow.sweep.store import StoreMismatchError, progress_of
from gradflow.profiles.job import run_sweep

#: 24 variants in chunks of 4 (one activation x forget bias row): 6 chunks; the linear cell with
#: weight scale 1e30 overflows to NaN (stored as such and flagged).
SMALL = """\
[model]
input_size = 3
hidden_size = 4
activation = ["tanh", "linear"]

[grid]
forget_bias = [-1.0, 0.0, 1.0]
weight_scale = [1.0, 1e30]
seed = [0, 1]

[data]
seq_len = 20

[analysis]
chunk_size = 4
"""

#: 120 variants in 60 chunks of ~60 ms each on 2 cores: long enough to be killed in the middle.
SLOW = """\
[model]
input_size = 2
hidden_size = 8

[grid]
forget_bias = {start = -2.0, stop = 3.0, num = 60}
seed = [0, 1]

[data]
seq_len = 1500

[analysis]
chunk_size = 2
"""

CACHE = os.environ.get("GRADFLOW_TEST_CACHE_DIR", str(Path.home() / ".cache" / "gradflow" / "xla-tests"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "gradflow", *args]


def _env() -> dict:
    return {**os.environ, "GRADFLOW_CACHE_DIR": CACHE, "JAX_ENABLE_X64": "0", "JAX_PLATFORMS": "cpu"}


def _assert_same_store(got: Path, want: Path) -> None:
    """Equal variables, coordinates, config and chunking; the environment (date) may differ."""
    a, b = xarray.open_zarr(got / STORE_NAME), xarray.open_zarr(want / STORE_NAME)
    assert set(a.variables) == set(b.variables)
    for name in b.variables:
        assert a[name].dims == b[name].dims and a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for key in ("config", "config_hash", "config_source", "chunk_shape", "work_chunks"):
        assert a.attrs[key] == b.attrs[key], key
    assert sorted(os.listdir(got / STORE_NAME / DONE_DIR)) == sorted(os.listdir(want / STORE_NAME / DONE_DIR))


def wait_for_chunks(proc: subprocess.Popen, out: Path, n: int, *, timeout: float = 240) -> Path:
    """Wait until the sweep ``proc`` writing ``out`` has marked ``n`` chunks done; returns the marker folder."""
    markers = out / STORE_NAME / DONE_DIR
    deadline = time.monotonic() + timeout
    while not (markers.is_dir() and len(os.listdir(markers)) >= n):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no chunk finished in time"
        time.sleep(0.005)
    return markers


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """SMALL swept in this process: the reference the other runs must equal."""
    out = tmp_path_factory.mktemp("small")
    report = run_sweep(parse_config(SMALL), out, show_progress=False)
    assert report.complete and report.computed == 6
    return out


def test_store_layout_matches_work_chunks(small):
    ds = xarray.open_zarr(small / STORE_NAME)
    assert dict(ds.sizes) == {"activation": 2, "forget_bias": 3, "weight_scale": 2, "seed": 2, "lag": 20}
    assert ds["log10_norm_h"].dims == ("activation", "forget_bias", "weight_scale", "seed", "lag")
    assert ds["log10_norm_h"].encoding["chunks"] == (1, 1, 2, 2, 20)  # one work chunk = one stored chunk
    assert ds["horizon_h"].encoding["chunks"] == (1, 1, 2, 2)
    assert ds.activation.values.tolist() == ["tanh", "linear"] and ds.seed.values.tolist() == [0, 1]
    assert ds.attrs["matmul_precision"] and json.loads(ds.attrs["environment"])["versions"]["jax"]  # JSON: NetCDF-safe
    stored_chunks = [p for p in (small / STORE_NAME / "log10_norm_h").iterdir() if not p.name.startswith(".")]
    assert len(stored_chunks) == 6 and progress_of(small) == (6, 6)


def test_a_nonfinite_variant_is_stored_as_such_and_flagged(small):
    ds = xarray.open_zarr(small / STORE_NAME)
    flagged = ds["nonfinite"].values
    expected = np.zeros((2, 3, 2, 2), bool)
    expected[1, :, 1, :] = True  # linear cell, weight scale 1e30
    np.testing.assert_array_equal(flagged, expected)
    assert np.isnan(ds["log10_norm_h"].values[flagged]).all() and np.isnan(ds["horizon_h"].values[flagged]).all()
    kept = ds["log10_norm_h"].values[~flagged]
    assert not (np.isnan(kept) | np.isposinf(kept)).any()
    assert np.isneginf(kept).any()  # tanh at weight scale 1e30: saturated, exactly zero Jacobians (not flagged)


def test_rerunning_a_finished_sweep_computes_nothing(small):
    before = {p: p.stat().st_mtime_ns for p in (small / STORE_NAME / "log10_norm_h").iterdir()}
    report = run_sweep(parse_config(SMALL), small, show_progress=False)
    assert (report.computed, report.skipped, report.complete) == (0, 6, True)
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_a_different_config_is_refused_unless_overwrite(tmp_path, small, capsys):
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, show_progress=False)
    other = SMALL.replace("seed = [0, 1]", "seed = [0, 2]")
    with pytest.raises(StoreMismatchError, match="holds a sweep of a different config .* pass --overwrite"):
        run_sweep(parse_config(other), out, show_progress=False)
    config = tmp_path / "other.toml"
    config.write_text(other)
    assert main(["sweep", str(config), "--out", str(out), "--quiet", "--no-plot"]) == 2
    assert "holds a sweep of a different config" in capsys.readouterr().err
    _assert_same_store(out, small)  # untouched
    assert main(["sweep", str(config), "--out", str(out), "--quiet", "--no-plot", "--overwrite"]) == 0
    assert xarray.open_zarr(out / STORE_NAME).seed.values.tolist() == [0, 2]


@pytest.mark.slow
def test_two_shard_processes_fill_the_store_of_one_process(tmp_path, small):
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "sharded"
    procs = [
        subprocess.Popen(_cli("sweep", str(config), "--out", str(out), "--shard", f"{i}/2", "--quiet", "--no-plot"),
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        assert "computed 3 work chunks" in stderr  # each took its half
    _assert_same_store(out, small)


@pytest.mark.slow
def test_slurm_array_variables_pick_the_shard(tmp_path, small):
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "slurm"
    for task in (5, 6):  # an array --array=5-6
        env = {**_env(), "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "2"}
        done = subprocess.run(_cli("sweep", str(config), "--out", str(out), "--quiet", "--no-plot"),
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"(share {task - 5}/2)" in done.stderr
    _assert_same_store(out, small)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_jax_distributed_processes_fill_the_store_of_one_process(tmp_path, small):
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out, port = tmp_path / "distributed", _free_port()
    procs = [
        subprocess.Popen(
            _cli("sweep", str(config), "--out", str(out), "--quiet", "--no-plot", "--distributed",
                 "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)),
            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    for i, p in enumerate(procs):
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-3000:]
        assert f"(share {i}/2)" in stderr and "computed 3 work chunks" in stderr
    _assert_same_store(out, small)


@pytest.mark.slow
def test_a_sweep_killed_with_sigkill_resumes_to_the_uninterrupted_store(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text(SLOW)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli("sweep", str(config), "--out", str(killed), "--quiet", "--no-plot"),
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_chunks(proc, killed, 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stderr.close()
    done, total = progress_of(killed)
    assert proc.returncode == -signal.SIGKILL and 5 <= done < total == 60, (done, total)

    resumed = subprocess.run(_cli("sweep", str(config), "--out", str(killed), "--quiet", "--no-plot"),
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"computed {60 - done} work chunks, {done} already done" in resumed.stderr

    whole = tmp_path / "whole"
    uninterrupted = subprocess.run(_cli("sweep", str(config), "--out", str(whole), "--quiet", "--no-plot"),
                                   env=_env(), capture_output=True, text=True, timeout=300)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    _assert_same_store(killed, whole)


def test_info_summarises_the_store(small, capsys):
    assert main(["info", str(small)]) == 0
    text = capsys.readouterr().out
    assert f"{small / STORE_NAME}" in text and "progress      6/6 work chunks done" in text
    assert "activation (2), forget_bias (3), weight_scale (2), seed (2), lag (20)" in text
    assert "nonfinite                 true for 6 of 24 variants" in text
    assert "matmul precision default" in text and "jax " in text


@pytest.mark.slow
def test_plot_and_info_of_an_incomplete_store_say_so(tmp_path, capsys):
    out = tmp_path / "half"
    report = run_sweep(parse_config(SMALL), out, share=(0, 2), show_progress=False)
    assert (report.computed, report.done, report.complete) == (3, 3, False)
    assert main(["info", str(out)]) == 0
    assert "3/6 work chunks done (incomplete: rerun to resume)" in capsys.readouterr().out
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert "the store is incomplete (3/6 chunks)" in capsys.readouterr().err
    assert len(os.listdir(tmp_path / "figs")) == 12  # lag profiles, horizon and decay maps wrt h and state, saturation


def test_overwrite_replaces_only_a_different_config_and_resumes_the_same(tmp_path, small):
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, share=(0, 2), show_progress=False)
    # the same config with overwrite (a job array whose script says --overwrite) keeps what is done
    report = run_sweep(parse_config(SMALL), out, share=(1, 2), overwrite=True, show_progress=False)
    assert (report.computed, report.done, report.complete) == (3, 6, True)
    _assert_same_store(out, small)
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # nothing left aside


def test_a_store_without_its_attributes_is_refused_with_a_hint_and_replaced_with_overwrite(tmp_path, small):
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, show_progress=False)
    (out / STORE_NAME / ".zmetadata").unlink()
    (out / STORE_NAME / ".zattrs").unlink()  # nothing says which config it holds
    with pytest.raises(StoreMismatchError, match="holds no readable gradflow store .* pass --overwrite"):
        run_sweep(parse_config(SMALL), out, show_progress=False)
    run_sweep(parse_config(SMALL), out, overwrite=True, show_progress=False)
    _assert_same_store(out, small)


def test_a_lost_consolidated_metadata_is_rebuilt_by_a_rerun(tmp_path, small):
    """Before 0.2 a missing .zmetadata could only be cured by --overwrite (recomputing everything)."""
    out = tmp_path / "out"
    run_sweep(parse_config(SMALL), out, show_progress=False)
    (out / STORE_NAME / ".zmetadata").unlink()
    report = run_sweep(parse_config(SMALL), out, show_progress=False)
    assert report.computed == 0 and report.complete
    _assert_same_store(out, small)


def test_all_false_flags_and_zero_coordinates_are_written_not_left_to_a_fill_value(small):
    assert (small / STORE_NAME / "nonfinite" / "0.0.0.0").is_file()  # tanh chunk: no variant flagged
    assert (small / STORE_NAME / "seed" / "0").is_file()
    ds = xarray.open_zarr(small / STORE_NAME)
    assert ds.forget_bias.values.tolist() == [-1.0, 0.0, 1.0] and ds.nonfinite.dtype == bool
