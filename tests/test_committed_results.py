"""The committed results/ are what their commands produce today (regenerate them when this fails)."""

from pathlib import Path

import pytest

from gradflow.cli import main
from gradflow.sweep.check import check_store
from gradflow.sweep.store import read_attributes
from gradflow.sweep.layout import STORE_NAME
from gradflow.workflows import job_of_store

RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.mark.slow
def test_results_default_is_what_gradflow_run_produces(tmp_path, capsys):
    """Every stored chunk and every figure byte for byte (the attributes hold dates and versions)."""
    assert main(["run", "--out", str(tmp_path), "--quiet"]) == 0
    capsys.readouterr()
    committed, fresh = RESULTS / "default", tmp_path
    for path in sorted((committed / STORE_NAME).rglob("*")):
        if path.is_file() and path.name not in (".zattrs", ".zmetadata"):
            twin = fresh / path.relative_to(committed)
            assert twin.read_bytes() == path.read_bytes(), path.relative_to(RESULTS)
    for figure in sorted((committed / "figures").iterdir()):
        assert (fresh / "figures" / figure.name).read_bytes() == figure.read_bytes(), figure.name
    assert (fresh / "config.toml").read_text() == (committed / "config.toml").read_text()


@pytest.mark.parametrize("name", ["default", "collapse_map"])
def test_committed_stores_are_healthy_and_belong_to_todays_config(name):
    """The stored config builds today the very job that wrote the store (same hash), and the store is whole."""
    job = job_of_store(RESULTS / name)
    assert job.config_hash() == read_attributes(RESULTS / name)["config_hash"]
    health = check_store(RESULTS / name, job, decode=True)
    assert health.ok and health.marked == health.total, health.summary()
