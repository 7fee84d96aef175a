"""Store health: every kind of damage is found, a rerun (or ``gradflow check --repair``) repairs exactly it, and the
repaired store equals one never damaged. Each case once passed silently: NaN read as results, coordinates of 0,
25/24 chunks done forever, a blosc traceback, leftovers never cleaned, a torn log line swallowing the next record."""

import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import xarray

from gradflow.cli import main
from gradflow.config import parse_config
from gradflow.profiles.job import profile_job, run_sweep
from gradflow.sweep.check import check_store
from gradflow.sweep.layout import DONE_DIR, RUN_LOG, STORE_NAME
from gradflow.sweep.store import progress_of, remove_leftovers
from test_store import SMALL, _assert_same_store


@pytest.fixture(scope="module")
def reference(small_reference):
    return small_reference


@pytest.fixture
def store(tmp_path, reference):
    """A fresh copy of the finished reference store, to damage."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    return out


def _job():
    return profile_job(parse_config(SMALL))


def test_a_healthy_store_is_healthy_even_when_every_chunk_is_decoded(store):
    health = check_store(store, _job(), decode=True)
    assert health.ok and health.marked == health.total == 6, health.summary()


def test_a_deleted_chunk_is_found_and_a_rerun_recomputes_exactly_its_work_item(store, reference):
    (store / STORE_NAME / "horizon_h" / "0.1.0.0").unlink()  # activation tanh, forget bias row 1: work item (0, 1)
    health = check_store(store, _job())
    assert not health.ok and health.damaged == {(0, 1)}
    assert [p.where for p in health.problems] == ["horizon_h/0.1.0.0"]
    report = run_sweep(parse_config(SMALL), store, show_progress=False)
    assert report.computed == 1 and report.repaired and report.complete
    _assert_same_store(store, reference)


def test_a_deleted_variable_is_reallocated_and_recomputed(store, reference):
    shutil.rmtree(store / STORE_NAME / "decay_rate_state")
    health = check_store(store, _job())
    assert [p.kind for p in health.problems] == ["variable"] and len(health.damaged) == 6
    report = run_sweep(parse_config(SMALL), store, show_progress=False)
    assert report.computed == 6 and report.complete
    _assert_same_store(store, reference)


def test_a_deleted_coordinate_chunk_is_rewritten_not_read_as_zeros(store, reference):
    (store / STORE_NAME / "forget_bias" / "0").unlink()
    assert [p.kind for p in check_store(store, _job()).problems] == ["coordinate"]
    report = run_sweep(parse_config(SMALL), store, show_progress=False)
    assert report.computed == 0 and report.repaired
    np.testing.assert_array_equal(xarray.open_zarr(store / STORE_NAME)["forget_bias"].values, [-1.0, 0.0, 1.0])
    _assert_same_store(store, reference)


def test_a_stray_marker_is_not_counted_and_is_removed(store, reference):
    (store / STORE_NAME / DONE_DIR / "notes.txt").write_text("x")
    (store / STORE_NAME / DONE_DIR / "0-99").touch()  # a chunk the job does not have
    assert progress_of(store) == (6, 6)  # was 8/6: 'incomplete' forever, figures never drawn
    assert sorted(p.where for p in check_store(store, _job()).problems) == [".done/0-99", ".done/notes.txt"]
    run_sweep(parse_config(SMALL), store, show_progress=False)
    _assert_same_store(store, reference)


def test_a_corrupted_chunk_is_found_by_decoding_and_repaired_by_the_command_line(store, reference, capsys):
    chunk = store / STORE_NAME / "log10_norm_h" / "1.2.0.0.0"
    chunk.write_bytes(b"\x00garbage" * 8)
    assert check_store(store, _job()).ok  # the file is there: only decoding finds it
    assert main(["check", str(store)]) == 1
    assert "log10_norm_h/1.2.0.0.0: does not decode" in capsys.readouterr().out
    assert main(["check", str(store), "--repair", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unmarked 1 damaged work item(s)" in out and "recomputed 1 damaged work item(s)" in out
    assert main(["check", str(store)]) == 0
    _assert_same_store(store, reference)


def test_info_reports_the_health_of_the_store(store, capsys):
    (store / STORE_NAME / "horizon_h" / "0.1.0.0").unlink()
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    assert "health" in out and "horizon_h/0.1.0.0: missing" in out


def test_leftovers_of_dead_processes_are_removed_and_those_of_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    names = {
        "dead_tmp": f".results.zarr.tmp-{host}-{dead.stdout.strip()}-{'a' * 32}",
        "dead_old": f".results.zarr.old-{host}-{dead.stdout.strip()}-{'b' * 32}",
        "live_tmp": f".results.zarr.tmp-{host}-{os.getpid()}-{'c' * 32}",
        "other_host_recent": f".results.zarr.tmp-elsewhere-1-{'d' * 32}",
        "unrelated": ".results.zarr.notes",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
    removed = {p.name for p in remove_leftovers(tmp_path)}
    assert removed == {names["dead_tmp"], names["dead_old"]}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(names.values()) - removed)


def test_a_torn_last_line_of_the_run_log_does_not_swallow_the_next_record(store):
    log = store / RUN_LOG
    log.write_text(log.read_text() + '{"computed": 3, "path": "/tor')  # a writer killed mid-line
    run_sweep(parse_config(SMALL), store, show_progress=False)
    lines = log.read_text().splitlines()
    assert lines[-2] == '{"computed": 3, "path": "/tor'
    assert json.loads(lines[-1])["computed"] == 0


def test_a_store_of_a_kind_gradflow_does_not_know_is_refused_by_name(store, capsys):
    from gradflow.sweep.results import consolidate

    attrs = store / STORE_NAME / ".zattrs"
    attrs.write_text(attrs.read_text().replace('"kind": "profiles"', '"kind": "spectra"'))
    consolidate(store / STORE_NAME)
    assert main(["check", str(store)]) == 2
    assert "a job of kind 'spectra', which this gradflow does not know" in capsys.readouterr().err
