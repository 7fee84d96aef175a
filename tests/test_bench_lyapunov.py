"""benchmarks/bench_lyapunov.py runs (quick sizes), records what it claims, and its correctness checks hold."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_lyapunov")
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_lyapunov.py"), "--quick", "--out", str(out)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "bench_lyapunov.md").read_text().startswith("# bench_lyapunov\n")
    return json.loads((out / "bench_lyapunov.json").read_text())


@pytest.mark.slow
def test_record_has_metadata_and_positive_timings(record):
    assert record["versions"]["jax"] and record["devices"] and record["date"]
    assert record["load_average_1min"] >= 0 and record["load_average_1min_end"] >= 0
    assert record["matmul_rate"]["flops_per_s"] > 0
    assert [s["H"] for s in record["sizes"]] == [16, 32]
    for size in record["sizes"]:
        H = size["H"]
        timings = [size["exact"]["timing"]] + [run["timing"] for run in size["lyapunov"]]
        for t in timings:
            assert t["compile_s"] > 0 and t["median_s"] >= t["best_s"] > 0 and len(t["repeats_s"]) == 2
        assert sorted({(r["k"], r["reortho_every"]) for r in size["lyapunov"]}) == [
            (k, r) for k in sorted({1, 8, H, 2 * H}) for r in (1, 10)]
        for run in size["lyapunov"]:
            assert run["ratio_to_exact_median"] == pytest.approx(run["timing"]["median_s"] /
                                                                 size["exact"]["timing"]["median_s"])


@pytest.mark.slow
def test_cost_grows_with_the_number_of_exponents(record):
    for size in record["sizes"]:
        for r in (1, 10):
            runs = sorted((run for run in size["lyapunov"] if run["reortho_every"] == r), key=lambda run: run["k"])
            flops = [run["flops"] for run in runs]
            assert flops == sorted(flops) and len(set(flops)) == len(flops)
        every_step = {run["k"]: run["timing"]["best_s"] for run in size["lyapunov"] if run["reortho_every"] == 1}
        H = size["H"]
        assert every_step[1] < every_step[H] < every_step[2 * H]  # factors of 3 and more apart at these sizes


@pytest.mark.slow
def test_leading_exponent_matches_the_spectral_slope_and_the_exact_bound(record):
    checks = [size["convergence"] for size in record["sizes"]] + record["long_runs"]
    assert checks
    for check in checks:
        lam, slope = check["lambda1"], check["spectral_slope_last_half"]
        assert lam < 0 and slope < 0  # the default init contracts
        assert abs(lam - slope) <= record["slope_rtol"] * abs(slope) and check["slope_agrees"]
        assert check["startup_offset_nats"] <= record["bound_atol"] and check["bound_holds"]
    for size in record["sizes"]:
        leading = [run["leading_exponent"] for run in size["lyapunov"]]
        assert max(leading) - min(leading) < 1e-5  # the first QR column does not depend on k or reortho_every
        assert size["convergence"]["lambda1"] == pytest.approx(leading[0], abs=1e-5)
        for run in size["lyapunov"]:
            if run["k"] <= size["H"]:
                assert run["max_abs_diff_reortho"] < 1e-4
