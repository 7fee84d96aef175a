"""benchmarks/bench_scaling.py runs (quick sizes) and records every hidden size; speed is not asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_scaling_quick_records_every_hidden_size_and_draws_the_figure(tmp_path):
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_scaling.py"), "--quick", "--out", str(tmp_path)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "bench_scaling.md").read_text().startswith("# bench_scaling")
    record = json.loads((tmp_path / "bench_scaling.json").read_text())
    assert [p["hidden_size"] for p in record["points"]] == [16, 32, 64]
    assert record["peak_flops_per_s"] > 0 and record["duration_s"] > 0
    for point in record["points"]:
        assert point["batched_matmul"]["in_loop_flops_per_s"] > 0 and point["floors"]["batched_matmul_s"] > 0
        assert point["bound_by"] in ("matmul rate", "overhead/latency", "memory traffic")
        assert point["speedup_vs_jax_jacrev"] > 0 and 0 < point["xla_memory_ratio_vs_jax_jacrev"]
        for method in ("gradflow", "jax_jacrev"):
            result = point["methods"][method]
            assert result["median_s"] >= result["best_s"] > 0 and result["s_per_variant_step"] > 0
            assert result["fraction_of_peak"] > 0 and result["fraction_of_batched"] > 0
            assert result["xla_memory"]["total_bytes"] > 0
    for suffix in ("png", "pdf"):
        assert (tmp_path / f"bench_scaling.{suffix}").stat().st_size > 1000
    # the figure is redrawn from the stored record alone
    (tmp_path / "bench_scaling.png").unlink()
    redraw = subprocess.run([*cmd, "--plot-only"], check=False, capture_output=True, text=True, env=env, timeout=300)
    assert redraw.returncode == 0, redraw.stderr[-3000:]
    assert (tmp_path / "bench_scaling.png").exists()
    assert json.loads((tmp_path / "bench_scaling.json").read_text()) == record
