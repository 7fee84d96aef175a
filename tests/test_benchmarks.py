"""The benchmark scripts run (quick sizes) and their correctness checks hold; speed is not asserted."""

import pytest
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(name: str, out: Path, *flags: str) -> dict:
    """Run ``benchmarks/{name}.py --quick`` into ``out``; its JSON record (the markdown table is checked too)."""
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", *flags, "--out", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / f"{name}.md").read_text().startswith(f"# {name}")
    return json.loads((out / f"{name}.json").read_text())


@pytest.mark.slow
def test_bench_flow_quick_runs_and_gradflow_is_finite_where_the_peer_underflows(tmp_path):
    record = _run_quick("bench_flow", tmp_path, "--no-torch", "--no-rss")
    deep = record["deep_case"]
    assert deep["float64_min_log10_norm"] < -38  # the case leaves float32's range
    assert deep["nonfinite_entries"]["gradflow"] == 0
    assert deep["neg_inf_entries"]["jax_jacrev"] > 0
    assert deep["gradflow_max_abs_error_decades"] < 1e-3
    for case in record["cases"]:
        for method in ("gradflow", "jax_jacrev"):
            timing = case["methods"][method]
            assert timing["variant_steps_per_s"] > 0 and timing["median_s"] >= timing["best_s"] > 0
    assert record["metadata"]["versions"]["jax"] and record["metadata"]["devices"]


@pytest.mark.slow
def test_bench_sweep_quick_runs_and_records_every_part(tmp_path):
    record = _run_quick("bench_sweep", tmp_path)
    assert [r["variants"] for r in record["chunk_sizes"]] == [4, 16]
    for row in record["chunk_sizes"]:
        assert row["variants_per_s"] > 0 and row["estimate_bytes"] >= row["xla_plan_bytes"]["total_bytes"]
    assert [r["devices"] for r in record["devices"]] == [2] and record["devices"][0]["variants_per_s"] > 0
    overhead = record["store_overhead"]
    assert overhead["variants"] == 45 and overhead["bare_engine_s"] > 0 and overhead["sweep_with_store_s"] > 0


@pytest.mark.slow
def test_bench_train_quick_runs_and_compares_vmapped_with_the_loop(tmp_path):
    record = _run_quick("bench_train", tmp_path)
    rows = record["result"]["sizes"]
    assert [r["variants"] for r in rows] == [1, 4]
    for row in rows:
        assert row["vmapped"]["median_s"] > 0 and row["loop"]["median_s"] > 0 and row["vmapped_over_one"] > 0


@pytest.mark.slow
def test_bench_gru_quick_runs_and_the_two_pullbacks_agree(tmp_path):
    record = _run_quick("bench_gru", tmp_path)
    assert record["cases"], record.keys()
    for case in record["cases"]:
        assert max(case["max_abs_difference_decades"].values()) < 1e-3  # closed form and generic VJP agree
        assert set(case["closed_speedup_over_generic"]) and all(
            v > 0 for v in case["closed_speedup_over_generic"].values())


def test_bench_precision_quick_runs_and_on_cpu_every_precision_is_full_float32(tmp_path):
    record = _run_quick("bench_precision", tmp_path)
    for case in record["cases"]:
        rows = case["precisions"]
        assert set(rows) == {"highest", "high", "default"}
        assert rows["highest"]["max_abs_error_decades"] < 1e-4  # float32 against float64
        if record["platform"] == "cpu":  # XLA's CPU matmuls ignore the setting: identical profiles
            assert all(r["max_difference_from_highest_decades"] == 0 for r in rows.values())


def test_bench_probes_quick_runs_and_its_error_bars_are_in_decades_of_the_right_size(tmp_path):
    record = _run_quick("bench_probes", tmp_path)
    for row in record["sizes"]:
        assert row["exact"]["median_s"] > 0 and row["probes_timing"]["median_s"] > 0
        # 16 probes: the relative spread of the squared-norm estimate is at most sqrt(2/16), about 0.08 decades.
        assert 0 < row["median_stderr_decades"] < 0.1 and row["median_abs_error_decades"] < 0.15
        assert 0.3 < row["coverage_z1"] <= row["coverage_z2"] <= 1


def test_gpu_bench_refuses_a_machine_without_an_accelerator_unless_told():
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_bench.sh"), "--quick"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable}, timeout=120)
    if "platform cpu" not in done.stderr:
        pytest.skip("an accelerator is present: the script would run")
    assert done.returncode == 2 and "--allow-cpu" in done.stderr
