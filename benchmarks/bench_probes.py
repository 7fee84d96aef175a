r"""Random-probe lag norms against the exact engine: speed, accuracy and coverage of the stated error bars.

What is measured
----------------
For a float32 LSTM (one variant, D = 8, default init) at each hidden size H and T steps:
``gradflow.flow.probes.probe_lag_norms`` with 16 probes (2 R H^2 multiply-adds per step) against the exact
``gradflow.lag_norms`` wrt ``h`` (2 H^3): compile time, median and best run time over the repeats, and their ratio
(target >= 7x at H = 512). Accuracy over ``--keys`` probe draws: median and 95th-percentile ``|estimate - exact|``
in decades over all lags (target median < 0.1) and the fraction of (key, lag) pairs with
``|estimate - exact| <= z stderr`` for z = 1 (nominal 68%) and z = 2 (nominal 95%). Lags share one probe set per key,
so coverage over lags is not over independent draws. The 1-minute load average at start and end is recorded:
other processes on the machine slow both methods.

Writes ``bench_probes.json`` and ``bench_probes.md`` to ``--out`` (default ``results/bench``)::

    python benchmarks/bench_probes.py [--quick] [--repeats N] [--keys K]
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from _common import compile_jax, markdown_table, run_metadata, time_calls, write_results

import gradflow as gf
from gradflow.flow.probes import probe_lag_norms

PROBES = 16


def run_size(*, H: int, T: int, D: int, repeats: int, keys: int) -> dict:
    params = gf.init_lstm(jax.random.key(H), D, H, dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (T, D), jnp.float32)
    key = jax.random.key(2)
    exact_fn, exact_compile = compile_jax(lambda p, x: gf.lag_norms(p, x), params, xs)
    probe_fn, probe_compile = compile_jax(lambda p, x, k: probe_lag_norms(p, x, k, probes=PROBES), params, xs, key)
    exact_t = time_calls(lambda: exact_fn(params, xs), repeats=repeats, compile_s=exact_compile)
    probe_t = time_calls(lambda: probe_fn(params, xs, key), repeats=repeats, compile_s=probe_compile)
    exact = np.asarray(exact_fn(params, xs), np.float64)
    draws = [probe_fn(params, xs, k) for k in jax.random.split(jax.random.key(3), keys)]
    est = np.stack([np.asarray(e, np.float64) for e, _ in draws])
    err = np.stack([np.asarray(s, np.float64) for _, s in draws])
    finite = np.isfinite(exact)[None, :] & np.isfinite(est)
    miss = np.abs(est - exact[None, :])[finite]
    bars = err[finite]
    return {
        "H": H, "T": T, "D": D, "probes": PROBES, "keys": keys,
        "exact": dataclasses.asdict(exact_t), "probes_timing": dataclasses.asdict(probe_t),
        "speedup_median": exact_t.median_s / probe_t.median_s,
        "median_abs_error_decades": float(np.median(miss)),
        "p95_abs_error_decades": float(np.quantile(miss, 0.95)),
        "median_stderr_decades": float(np.median(bars)),
        "coverage_z1": float(np.mean(miss <= bars)), "coverage_z2": float(np.mean(miss <= 2 * bars)),
        "deepest_exact_log10": float(exact[np.isfinite(exact)].min()),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3, quick 2)")
    parser.add_argument("--keys", type=int, default=None, help="probe draws for accuracy (default 20, quick 8)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    keys = args.keys or (8 if args.quick else 20)
    sizes = [(16, 64), (32, 64)] if args.quick else [(64, 512), (128, 512), (256, 512), (512, 512)]
    meta = run_metadata()
    results = [run_size(H=H, T=T, D=8, repeats=repeats, keys=keys) for H, T in sizes]
    record = {**meta, "load_average_1min_end": os.getloadavg()[0], "sizes": results}
    rows = [[r["H"], r["T"], r["exact"]["median_s"], r["probes_timing"]["median_s"], f"{r['speedup_median']:.1f}x",
             r["median_abs_error_decades"], r["p95_abs_error_decades"], r["median_stderr_decades"],
             f"{r['coverage_z1']:.0%}", f"{r['coverage_z2']:.0%}"] for r in results]
    table = markdown_table(["H", "T", "exact median s", f"{PROBES} probes median s", "speedup",
                            "median abs error (decades)", "p95 abs error", "median stderr", "within 1 stderr (68%)",
                            "within 2 stderr (95%)"], rows)
    markdown = "\n\n".join([
        "# bench_probes",
        (f"probe_lag_norms ({PROBES} Gaussian probes) against exact lag_norms, wrt h, float32, one variant, D = 8; "
        f"accuracy over {keys} probe draws. Devices {meta['devices']} ({meta['platform']}); jax "
        f"{meta['versions']['jax']}; load average {meta['load_average_1min']:.2f} at start, "
        f"{record['load_average_1min_end']:.2f} at end; {meta['date']}."),
        table,
        "Regenerate: `python benchmarks/bench_probes.py` (`--quick` for a smoke run).",
    ])
    for path in write_results(args.out, "bench_probes", record, markdown):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
