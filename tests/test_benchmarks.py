"""The benchmark scripts run (quick sizes) and their correctness checks hold; speed is not asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_flow_quick_runs_and_gradflow_is_finite_where_the_peer_underflows(tmp_path):
    env = {**os.environ, "JAX_ENABLE_X64": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_flow.py"), "--quick", "--no-torch", "--no-rss", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "bench_flow.json").read_text())
    assert (tmp_path / "bench_flow.md").read_text().startswith("# bench_flow")
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
