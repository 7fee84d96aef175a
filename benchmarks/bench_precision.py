r"""How far the matmul precision moves lag profiles: full float32 against the platform's fast modes.

What is measured
----------------
``gradflow.lag_norms`` (wrt ``h``, float32) on LSTMs with forget biases -2, 0, 2 (one of them deep, far below
float32's range) computed under ``jax.default_matmul_precision(p)`` for p in ``highest`` (full float32), ``high``
(TF32-like 3-pass bf16 on TPU, TF32 on GPU where supported) and ``default`` (TF32 on NVIDIA GPUs, one bf16 pass on
TPU), each against a float64 reference. Reported per precision: the largest and median ``|error|`` in decades
against float64, and the largest difference from ``highest``. On CPU, XLA runs float32 matmuls in full float32
whatever the setting, so the three rows agree exactly; on a GPU or TPU the difference is what TF32 / bf16 cost.

Writes ``bench_precision.json`` and ``bench_precision.md`` to ``--out`` (default ``results/bench``)::

    python benchmarks/bench_precision.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from _common import markdown_table, run_metadata, write_results

import gradflow as gf

PRECISIONS = ("highest", "high", "default")


def _models(H: int, D: int, forget_biases) -> list[tuple[float, gf.LSTMParams]]:
    out = []
    for i, bias in enumerate(forget_biases):
        p = gf.init_lstm(jax.random.key(i), D, H, forget_bias=bias, dtype=jnp.float64)
        out.append((bias, p))
    return out


def run(*, H: int, D: int, T: int, forget_biases) -> dict:
    xs64 = jax.random.normal(jax.random.key(99), (T, D), jnp.float64)
    cases = []
    for bias, p64 in _models(H, D, forget_biases):
        reference = np.asarray(gf.lag_norms(p64, xs64))
        p32 = gf.LSTMParams(*(a.astype(jnp.float32) for a in p64))
        profiles = {}
        for precision in PRECISIONS:
            with jax.default_matmul_precision(precision):
                profiles[precision] = np.asarray(gf.lag_norms(p32, xs64.astype(jnp.float32)), np.float64)
        finite = np.isfinite(reference)
        rows = {}
        for precision, profile in profiles.items():
            error = np.abs(profile - reference)[finite]
            moved = np.abs(profile - profiles["highest"])[finite]
            rows[precision] = {"max_abs_error_decades": float(error.max()), "median_abs_error_decades":
                               float(np.median(error)), "max_difference_from_highest_decades": float(moved.max()),
                               "nonfinite_entries": int((~np.isfinite(profile)).sum())}
        cases.append({"forget_bias": bias, "min_log10_norm_float64": float(reference[finite].min()),
                      "precisions": rows})
    return {"sizes": {"H": H, "D": D, "T": T}, "cases": cases}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)  # the float64 reference; the measured profiles are float32
    sizes = {"H": 8, "D": 4, "T": 64} if args.quick else {"H": 128, "D": 8, "T": 512}
    meta = run_metadata()
    result = run(**sizes, forget_biases=(-2.0, 0.0, 2.0))
    record = {**meta, **result}
    rows = [[case["forget_bias"], f"{case['min_log10_norm_float64']:.1f}", precision,
             f"{r['max_abs_error_decades']:.2e}", f"{r['median_abs_error_decades']:.2e}",
             f"{r['max_difference_from_highest_decades']:.2e}", r["nonfinite_entries"]]
            for case in result["cases"] for precision, r in case["precisions"].items()]
    table = markdown_table(["forget bias", "deepest log10 norm (float64)", "matmul precision",
                            "max abs error (decades)", "median abs error", "max difference from highest",
                            "non-finite"], rows)
    markdown = "\n\n".join([
        "# bench_precision",
        f"float32 lag profiles (wrt h) under each matmul precision against float64; H = {sizes['H']}, "
        f"T = {sizes['T']}, D = {sizes['D']}. Devices {meta['devices']} ({meta['platform']}: "
        f"{meta['matmul_precision_note']}); jax {meta['versions']['jax']}; {meta['date']}.",
        table,
        "Regenerate: `python benchmarks/bench_precision.py` (on a GPU or TPU the rows differ by what TF32 or "
        "bf16 passes cost; `scripts/gpu_bench.sh` runs it there).",
    ])
    for path in write_results(args.out, "bench_precision", record, markdown):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
