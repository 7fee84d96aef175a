r"""Sweep throughput against chunk size and device count, memory estimate against XLA's plan, store overhead.

What is measured
----------------
- ``chunk_sizes``: one compiled call of :func:`gradflow.flow.variants.profile_variants` (both profiles,
  horizons, decay rates, saturation fractions) on n variants of the default config's spec
  (H = 32, T = 200, D = 8), for several n: variants per second (median of ``--repeats`` calls after a
  warm-up, ``block_until_ready``), and the memory estimate :func:`gradflow.flow.memory.chunk_bytes`
  against XLA's plan of the same executable (``memory_analysis()``: temporaries + arguments +
  outputs; on CPU that plan is the peak of the computation's buffers).
- ``devices``: the whole default sweep (975 variants) through ``gradflow sweep`` in a fresh process
  with ``JAX_NUM_CPU_DEVICES`` = 1, 2, 4 simulated CPU devices (second run of each, so compilation
  comes from the persistent cache): variants per second of the sweep. Simulated devices share this
  machine's cores, so this shows the sharding's overhead, not a speed-up.
- ``store_overhead``: the default sweep as the bare engine (the same compiled calls on the same
  chunks, results fetched to host, nothing stored) against :func:`gradflow.run_sweep` into a
  fresh store (creation, chunk writes, done markers, run log) and against a rerun of a finished
  store (resume bookkeeping alone). Target: the store costs under 10% of the bare engine.

Writes ``bench_sweep.json`` (every number plus device, versions, matmul precision and date) and
``bench_sweep.md`` to ``--out`` (default ``results/bench``). ``--quick``: tiny sizes, for the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import markdown_table, measure_matmul_rate, run_metadata, time_calls, write_results, xla_memory_bytes  # noqa: E402

from gradflow.flow.memory import chunk_bytes  # noqa: E402
from gradflow.config import DEFAULT_CONFIG, parse_config  # noqa: E402
from gradflow.sweep.devices import local_mesh  # noqa: E402
from gradflow.sweep.store import SweepLayout  # noqa: E402
from gradflow.profiles.job import profile_job, run_sweep  # noqa: E402
from gradflow.sweep.runner import pad_variants  # noqa: E402
from gradflow.flow.variants import Grid, probe_inputs, profile_variants  # noqa: E402

QUICK_CONFIG = DEFAULT_CONFIG.replace("num = 25", "num = 5").replace("num = 13", "num = 3").replace(
    "seq_len = 200", "seq_len = 40"
)


def _values(n: int) -> dict[str, np.ndarray]:
    grid = Grid(forget_bias=np.linspace(-3, 3, n))
    return grid.values()


def chunk_size_scan(config, sizes, repeats) -> list[dict]:
    spec = config.specs()[0][1]
    xs = probe_inputs(spec, seed=config.data.input_seed)
    rows = []
    for n in sizes:
        values = _values(n)
        kwargs = {"wrt": config.analysis.wrt, "decades": config.analysis.decades}
        compiled = profile_variants.lower(spec, values, xs, **kwargs).compile()
        timing = time_calls(lambda: profile_variants(spec, values, xs, **kwargs), repeats=repeats)
        plan = xla_memory_bytes(compiled)
        estimate = chunk_bytes(spec, n, n_profiles=len(config.analysis.wrt))
        rows.append({
            "variants": n,
            "median_s": timing.median_s,
            "variants_per_s": n / timing.median_s,
            "variant_steps_per_s": n * spec.seq_len / timing.median_s,
            "xla_plan_bytes": plan,
            "estimate_bytes": estimate,
            "estimate_over_plan": estimate / plan["total_bytes"],
        })
        print(f"chunk {n}: {n / timing.median_s:.0f} variants/s, estimate/plan {estimate / plan['total_bytes']:.2f}",
              file=sys.stderr, flush=True)
    return rows


def device_scan(config_text: str, counts, attempts: int = 2) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(config_text)
        for n in counts:
            env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n), "JAX_PLATFORMS": "cpu"}
            runs = []
            for attempt in range(attempts):  # all but the last fill the compilation cache
                out = Path(tmp) / f"d{n}-{attempt}"
                cmd = [sys.executable, "-m", "gradflow", "sweep", str(config), "--out", str(out), "--quiet", "--no-plot"]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode != 0:
                    raise RuntimeError(done.stderr[-3000:])
                runs.append(json.loads((out / "runs.jsonl").read_text().splitlines()[-1]))
            rows.append({"devices": n, "seconds": runs[-1]["seconds"], "variants_per_s": runs[-1]["variants_per_s"]})
            print(f"{n} devices: {runs[-1]['variants_per_s']:.0f} variants/s", file=sys.stderr, flush=True)
    return rows


def bare_engine(config) -> float:
    """The sweep's compiled calls on its chunks with outputs fetched to host, nothing stored: seconds."""
    job = profile_job(config)
    layout = SweepLayout(job)
    values = {k: np.asarray(v) for k, v in job.grid_values.items()}
    mesh = local_mesh()
    per_device = layout.chunks.variants_per_chunk
    start = time.perf_counter()
    for spec in range(job.n_specs):
        fn, args = job.chunk_function(spec, mesh)
        for j in range(layout.chunks.n_chunks):
            lo, hi = layout.chunks.flat_range(j)
            jax.tree.map(np.asarray, fn(pad_variants(values, lo, hi, per_device), *args))
    return time.perf_counter() - start


def store_overhead(config, repeats) -> dict:
    bare_engine(config)  # compile
    with tempfile.TemporaryDirectory() as tmp:
        run_sweep(config, Path(tmp) / "warm", show_progress=False)
        bare, stored, resumed = [], [], []
        for r in range(repeats):
            bare.append(bare_engine(config))
            start = time.perf_counter()
            run_sweep(config, Path(tmp) / f"s{r}", show_progress=False)
            stored.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_sweep(config, Path(tmp) / f"s{r}", show_progress=False)
            resumed.append(time.perf_counter() - start)
    b, s, z = statistics.median(bare), statistics.median(stored), statistics.median(resumed)
    return {
        "variants": config.variants().size * len(config.specs()),
        "bare_engine_s": b, "sweep_with_store_s": s, "rerun_of_finished_store_s": z,
        "bare_engine_all_s": bare, "sweep_with_store_all_s": stored,
        "overhead_fraction": (s - b) / b,
        "target": "store and resume bookkeeping under 10% of the bare engine",
        "met": (s - b) / b < 0.10,
    }


def markdown_report(record: dict) -> str:
    meta = record["metadata"]
    lines = [
        "# bench_sweep",
        "",
        f"Device: {meta['devices']} ({meta.get('cpu_model') or meta['platform']}, {meta['cpu_count']} cores); "
        f"jax {meta['versions']['jax']}; matmul precision {meta['matmul_precision']}; {meta['date']}. Machine float32 matmul rate "
        f"{record['matmul_rate']['flops_per_s'] / 1e9:.1f} GFLOP/s.",
        "",
        "## Variants per second against chunk size (one compiled call, default spec)",
        "",
        markdown_table(
            ["variants", "median s", "variants/s", "variant-steps/s", "XLA plan MiB", "estimate MiB", "estimate / plan"],
            [[r["variants"], r["median_s"], r["variants_per_s"], r["variant_steps_per_s"],
              r["xla_plan_bytes"]["total_bytes"] / 2**20, r["estimate_bytes"] / 2**20, r["estimate_over_plan"]]
             for r in record["chunk_sizes"]],
        ),
        "",
        "## Whole default sweep against simulated CPU devices (shared cores)",
        "",
        markdown_table(["devices", "seconds", "variants/s"],
                       [[r["devices"], r["seconds"], r["variants_per_s"]] for r in record["devices"]]),
        "",
        "## Store and resume overhead on the default sweep",
        "",
    ]
    o = record["store_overhead"]
    lines += [
        markdown_table(
            ["variants", "bare engine s", "sweep with store s", "rerun of finished store s", "overhead", "target met"],
            [[o["variants"], o["bare_engine_s"], o["sweep_with_store_s"], o["rerun_of_finished_store_s"],
              f"{100 * o['overhead_fraction']:.1f}%", o["met"]]],
        ),
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5, quick 2)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    text = QUICK_CONFIG if args.quick else DEFAULT_CONFIG
    config = parse_config(text)
    record = {
        "benchmark": "bench_sweep",
        "quick": args.quick,
        "repeats": repeats,
        "metadata": run_metadata(),
        "matmul_rate": measure_matmul_rate(size=512 if args.quick else 2048),
        "chunk_sizes": chunk_size_scan(config, [4, 16] if args.quick else [16, 64, 128, 256, 512, 1024], repeats),
        "devices": device_scan(text, [2], attempts=1) if args.quick else device_scan(text, [1, 2, 4]),
        "store_overhead": store_overhead(config, repeats),
    }
    record["load_average_1min_at_end"] = os.getloadavg()[0]
    json_path, md_path = write_results(args.out, "bench_sweep", record, markdown_report(record))
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
