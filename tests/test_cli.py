"""The command line: 'run' writes arrays, metadata, config and figures; 'plot' redraws; errors exit 2."""

import contextlib
import io
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

from gradflow.cli import main
from gradflow.config import parse_config
from gradflow.sweep.results import Results
from gradflow.profiles.job import sweep_results

#: The spec, wrt, decades and chunk size of tests/test_sweep.py's BASE: the compile is shared.
CONFIG = """\
[model]
input_size = 2
hidden_size = 3

[grid]
forget_bias = [-1.0, 0.5, 2.0]
weight_scale = [1.0, 1.5]

[data]
seq_len = 8
input_seed = 3

[analysis]
decades = 2.0
chunk_size = 4
"""

FIGURES = sorted(f"{stem}.{ext}" for stem in ("lag_profiles", "horizon_h", "horizon_state", "decay_h", "decay_state",
                                               "saturation") for ext in ("pdf", "png"))
CACHE_OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """``gradflow run CONFIG --out OUT --quiet`` once: its exit code, stdout, stderr and paths.

    The compilation cache goes to a temporary directory (GRADFLOW_CACHE_DIR); JAX's cache settings are
    restored afterwards so later tests do not write to it.
    """
    root = tmp_path_factory.mktemp("cli")
    config, out, cache = root / "tiny.toml", root / "out", root / "xla-cache"
    config.write_text(CONFIG)
    before = {name: getattr(jax.config, name) for name in CACHE_OPTIONS}
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADFLOW_CACHE_DIR", str(cache))
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["run", str(config), "--out", str(out), "--quiet"])
        cache_dir = jax.config.jax_compilation_cache_dir
    for name, value in before.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    return {"code": code, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "config": config, "out": out,
            "cache": cache, "cache_dir": cache_dir}


def test_run_writes_results_config_and_figures(run):
    assert run["code"] == 0
    out = run["out"]
    assert sorted(os.listdir(out)) == ["config.toml", "figures", "results.zarr", "runs.jsonl"]
    assert (out / "config.toml").read_text() == CONFIG
    assert sorted(os.listdir(out / "figures")) == FIGURES
    assert all((out / "figures" / name).stat().st_size > 5000 for name in FIGURES)
    assert run["cache_dir"] == str(run["cache"])  # the compilation cache went where GRADFLOW_CACHE_DIR said
    # --quiet: a line saying what runs and one saying what was done, no progress lines
    first, second = run["stderr"].splitlines()
    assert first == f"gradflow run: 6 variants from {run['config']} -> {out / 'results.zarr'}"
    assert re.fullmatch(r"computed 2 work chunks in [0-9.]+ s; store 2/2 chunks done", second), second


def test_run_stores_what_the_library_computes(run):
    stored = Results.load(run["out"])
    want = sweep_results(parse_config(CONFIG), show_progress=False)
    assert stored.dims == want.dims == ("forget_bias", "weight_scale")
    assert stored.data.keys() == want.data.keys()
    for name, array in want.data.items():
        np.testing.assert_array_equal(stored.data[name], array, err_msg=name)
    for name, values in want.coords.items():
        np.testing.assert_array_equal(stored.coords[name], values)
    assert stored.attrs["config"] == want.attrs["config"] and stored.attrs["config_hash"] == want.attrs["config_hash"]


def test_run_summarises_horizons_on_stdout(run):
    stored = Results.load(run["out"])
    lines = run["stdout"].splitlines()
    for w in ("h", "state"):
        horizon = stored.data[f"horizon_{w}"]
        finite = horizon[np.isfinite(horizon)]
        never = int(np.isposinf(horizon).sum())
        assert (
            f"  horizon_{w}: median {np.median(finite):.0f} steps over {finite.size} variants; "
            f"{never} never fall below 1e-2 within T; 0 non-finite"
        ) in lines
    assert lines[-1].startswith(f"wrote {run['out'] / 'results.zarr'}, ") and f"{len(FIGURES)} files in" in lines[-1]


def test_plot_redraws_the_same_figures_from_stored_results(run, tmp_path, capsys):
    out = run["out"]
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sorted(os.path.basename(p) for p in printed) == FIGURES
    assert sorted(os.listdir(tmp_path / "again")) == FIGURES
    for name in FIGURES:  # deterministic, and drawn from the arrays alone
        assert (tmp_path / "again" / name).read_bytes() == (out / "figures" / name).read_bytes(), name


def test_plot_defaults_to_the_figures_folder(run, monkeypatch, capsys):
    calls = []
    from gradflow.plot.figures import FIGURES_BY_KIND

    monkeypatch.setitem(FIGURES_BY_KIND, "profiles", lambda results, directory: calls.append((results, directory)) or [])
    assert main(["plot", str(run["out"])]) == 0
    ((results, directory),) = calls
    assert directory == run["out"] / "figures"
    assert results.attrs["config_hash"] == Results.load(run["out"]).attrs["config_hash"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("hidden_size = 3", 'hidden_size = "3"'), r"\[model\]\.hidden_size must hold integers >= 1; got '3'"),
        (("[grid]", "[grids]"), r"unknown table\(s\) \['grids'\]"),
        (("chunk_size = 4", "chunk_size = 0"), r'\[analysis\]\.chunk_size must be a positive integer or "auto"; got 0'),
        (("seq_len = 8", "seq_len = = 8"), r"is not valid TOML"),
    ],
)
def test_a_malformed_config_exits_2_naming_the_key(tmp_path, capsys, edit, message):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace(*edit))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("gradflow run: error: ") and err.endswith("\n") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_missing_config_exits_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert f"config file '{missing}' does not exist" in capsys.readouterr().err


def test_plot_of_a_directory_without_results_exits_2(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gradflow plot: error: ") and f"'{tmp_path}' holds no gradflow results" in err
    assert os.listdir(tmp_path) == []


def test_an_out_of_range_seed_exits_2(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(CONFIG.replace("[grid]\n", "[grid]\nseed = [4294967296]\n"))
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "[grid].seed" in capsys.readouterr().err


def test_bad_arguments_exit_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "usage: gradflow" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2


def _python_m_gradflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gradflow", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_python_m_gradflow_help():
    done = _python_m_gradflow("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: gradflow")
    assert "run" in done.stdout and "plot" in done.stdout
    done = _python_m_gradflow("run", "--help")
    assert done.returncode == 0 and "--out" in done.stdout and "--quiet" in done.stdout
