r"""GRU lag profiles: the generic vector-Jacobian engine against the closed-form pullback, with the LSTM for reference.

What is measured
----------------
The lag profile ``log10 ||dh_T / dh_t||_F`` for t = 0..T-1 of V GRU variants (vmapped, inputs ``xs`` (T, D)
shared), through ``gradflow.flow.engine.step_lag_norms``, in float32, by:

- ``gru_generic``: the engine's default pullback, batched vector-Jacobian products of ``gru_step``.
- ``gru_closed``: ``pullback=`` :func:`gradflow.lstm.gru.gru_pullback_fn` (closed form, see
  :func:`gradflow.lstm.gru.gru_pullback_apply`; what ``model_profiles`` uses for GRU layers).

each for both conventions (``reset_after`` True: PyTorch/Flax/Keras default; False: Keras ``reset_after=False``),
and ``lstm_closed``: ``gradflow.flow.engine.lstm_lag_profile`` (the LSTM's closed form, wrt h) on an LSTM of the
same H, vmapped the same way.

How
---
- Sizes: H = 32, 64, 128, 256, T = 256, D = 8, V = 4 (``--quick``: H = 8, 16, T = 32, V = 2). Kernels have
  N(0, 1/fan_in) entries, biases N(0, 0.01).
- Time: each method is compiled with ``jax.jit(fn).lower(...).compile()`` (compile time reported on its own),
  called once as a warm-up, then ``--repeats`` times with ``block_until_ready``; median and best reported, and
  the speedups from both (on a shared machine the best is the less disturbed figure).
- FLOPs per variant-step, counted from each algorithm with R = H cotangent rows: the generic GRU pullback pushes
  each row through the (H, 3H) kernel, 6 H^3; the closed form (reset after) builds an (H, H) matrix and applies
  it, 2 H^3 (+ O(H^2)); reset before forms ``U_n^T diag(d_r) U_r^T`` too, 4 H^3; the LSTM's closed form applies
  a (2H, H) matrix to H rows, 4 H^3. The achieved rate (own FLOPs / median time) is divided by the machine's
  float32 matmul rate (best of several jitted 2048^2 products).
- Agreement: the largest difference between the two GRU methods' profiles, in decades, per case.

Writes ``bench_gru.json`` (every number plus device, versions, matmul precision and date) and ``bench_gru.md``
to ``--out``. Regenerate with::

    python benchmarks/bench_gru.py
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    compile_jax,
    markdown_table,
    measure_matmul_rate,
    run_metadata,
    time_calls,
    write_results,
)

from gradflow.flow.engine import lstm_lag_profile, step_lag_norms
from gradflow.lstm.cell import LSTMParams
from gradflow.lstm.gru import GRUParams, gru_pullback_fn, gru_step

HIDDEN_SIZES, QUICK_HIDDEN_SIZES = (32, 64, 128, 256), (8, 16)
SEQ_LEN, QUICK_SEQ_LEN = 256, 32
VARIANTS, QUICK_VARIANTS = 4, 2
INPUT_SIZE = 8

#: Methods per case, and their FLOPs per variant-step as multiples of H^3 (R = H rows; see the docstring).
METHOD_FLOPS_PER_H3: dict[str, int] = {
    "gru_generic_reset_after": 6,
    "gru_closed_reset_after": 2,
    "gru_generic_reset_before": 6,
    "gru_closed_reset_before": 4,
    "lstm_closed": 4,
}


def gru_variants(key, V: int, D: int, H: int) -> GRUParams:
    """V GRU variants: kernels N(0, 1/fan_in), both biases N(0, 0.01)."""
    k = jax.random.split(key, 4)
    shapes = [(V, D, 3 * H), (V, H, 3 * H), (V, 3 * H), (V, 3 * H)]
    scales = [1 / np.sqrt(D), 1 / np.sqrt(H), 0.1, 0.1]
    return GRUParams(*(s * jax.random.normal(ki, shape, jnp.float32) for ki, shape, s in zip(k, shapes, scales)))


def lstm_variants(key, V: int, D: int, H: int) -> LSTMParams:
    """V LSTM variants: kernels N(0, 1/fan_in), bias N(0, 0.01)."""
    k = jax.random.split(key, 3)
    shapes = [(V, D, 4 * H), (V, H, 4 * H), (V, 4 * H)]
    scales = [1 / np.sqrt(D), 1 / np.sqrt(H), 0.1]
    return LSTMParams(*(s * jax.random.normal(ki, shape, jnp.float32) for ki, shape, s in zip(k, shapes, scales)))


def gru_profiles(params: GRUParams, xs: jax.Array, *, reset_after: bool, closed: bool) -> jax.Array:
    """Lag profiles (V, T) of V GRU variants through the engine, by the closed-form or the generic pullback."""

    def one(p):
        step = functools.partial(gru_step, p, reset_after=reset_after)
        pullback = gru_pullback_fn(p, reset_after=reset_after) if closed else None
        return step_lag_norms(step, jnp.zeros(p.hidden_size, xs.dtype), xs, pullback=pullback)

    return jax.vmap(one)(params)


def lstm_profiles(params: LSTMParams, xs: jax.Array) -> jax.Array:
    """Lag profiles (V, T) wrt h of V LSTM variants by the LSTM's closed-form engine path."""
    H = params.hidden_size

    def one(p):
        return lstm_lag_profile(p, jnp.zeros(2 * H, xs.dtype), xs, slice(0, H), "tanh", "sigmoid")

    return jax.vmap(one)(params)


def method_functions() -> dict:
    """``name -> fn(params, xs)`` for every method; the GRU ones take GRUParams, ``lstm_closed`` LSTMParams."""
    methods = {}
    for reset_after, convention in ((True, "reset_after"), (False, "reset_before")):
        for closed, kind in ((False, "generic"), (True, "closed")):
            methods[f"gru_{kind}_{convention}"] = functools.partial(gru_profiles, reset_after=reset_after,
                                                                    closed=closed)
    methods["lstm_closed"] = lstm_profiles
    return methods


def run_case(H: int, T: int, V: int, repeats: int, matmul_flops_per_s: float) -> dict:
    """Time every method at hidden size H; the GRU methods' agreement in decades."""
    key = jax.random.key(H)
    gru = gru_variants(key, V, INPUT_SIZE, H)
    lstm = lstm_variants(key, V, INPUT_SIZE, H)
    xs = jax.random.normal(jax.random.key(1), (T, INPUT_SIZE), jnp.float32)
    methods, profiles = {}, {}
    for name, fn in method_functions().items():
        params = lstm if name == "lstm_closed" else gru
        compiled, compile_s = compile_jax(fn, params, xs)
        call = functools.partial(compiled, params, xs)
        timing = time_calls(call, repeats=repeats, compile_s=compile_s)
        profiles[name] = np.asarray(call())
        flops = METHOD_FLOPS_PER_H3[name] * H**3 * V * T
        methods[name] = {
            "compile_s": compile_s,
            "first_call_s": timing.first_call_s,
            "median_s": timing.median_s,
            "best_s": timing.best_s,
            "repeats_s": list(timing.repeats_s),
            "variant_steps_per_s": V * T / timing.median_s,
            "flops_per_variant_step": METHOD_FLOPS_PER_H3[name] * H**3,
            "fraction_of_matmul_rate": flops / timing.median_s / matmul_flops_per_s,
        }
    speedups = {
        f"{convention}_{stat}": methods[f"gru_generic_{convention}"][f"{stat}_s"]
        / methods[f"gru_closed_{convention}"][f"{stat}_s"]
        for convention in ("reset_after", "reset_before") for stat in ("median", "best")
    }
    agreement = {
        convention: float(np.max(np.abs(profiles[f"gru_generic_{convention}"] - profiles[f"gru_closed_{convention}"])))
        for convention in ("reset_after", "reset_before")
    }
    return {
        "hidden_size": H, "seq_len": T, "variants": V, "input_size": INPUT_SIZE,
        "methods": methods,
        "closed_speedup_over_generic": speedups,
        "closed_over_lstm_closed": {
            c: methods["lstm_closed"]["median_s"] / methods[f"gru_closed_{c}"]["median_s"]
            for c in ("reset_after", "reset_before")
        },
        "max_abs_difference_decades": agreement,
        "min_log10_norm": float(np.min(profiles["gru_generic_reset_after"])),
    }


def markdown_report(record: dict) -> str:
    """The tables of ``bench_gru.md``."""
    meta = record["metadata"]
    rows = []
    for case in record["cases"]:
        m = case["methods"]
        for name in METHOD_FLOPS_PER_H3:
            convention = name.split("_", 2)[-1]
            speedups = [case["closed_speedup_over_generic"].get(f"{convention}_{stat}") if name.startswith("gru_closed")
                        else None for stat in ("median", "best")]
            rows.append([case["hidden_size"], name, m[name]["median_s"], m[name]["best_s"], m[name]["compile_s"],
                         m[name]["variant_steps_per_s"], m[name]["fraction_of_matmul_rate"], *speedups])
    agreement = [[c["hidden_size"], c["max_abs_difference_decades"]["reset_after"],
                  c["max_abs_difference_decades"]["reset_before"], c["min_log10_norm"]] for c in record["cases"]]
    return "\n\n".join([
        "# bench_gru: GRU lag profiles, generic VJP engine vs closed-form pullback (LSTM closed form for reference)",
        (f"Command: `{meta['command']}`. Date {meta['date']}; devices {meta['devices']} ({meta['cpu_model']}, "
        f"{meta['cpu_count']} CPUs, load {meta['load_average_1min']:.2f} at start, "
        f"{record['load_average_1min_end']:.2f} at end); jax {meta['versions']['jax']}; "
        f"matmul precision {meta['matmul_precision']} ({meta['matmul_precision_note']})."),
        (f"float32, T = {record['cases'][0]['seq_len']}, V = {record['cases'][0]['variants']} variants (vmapped), "
        f"D = {INPUT_SIZE}, {record['repeats']} repeats after a warm-up. Machine matmul rate "
        f"{record['matmul_rate']['flops_per_s'] / 1e9:.1f} GFLOP/s (best 2048^2 float32 product). "
        "`fraction` = the method's own FLOPs (generic GRU 6 H^3, closed reset after 2 H^3, closed reset before "
        "4 H^3, LSTM closed 4 H^3 per variant-step) / median time / matmul rate. `speedup` = generic / closed "
        "time, same convention, from the medians and from the bests."),
        markdown_table(["H", "method", "median s", "best s", "compile s", "variant-steps/s", "fraction",
                        "speedup (median)", "speedup (best)"], rows),
        "Agreement of the two GRU methods (max |difference| of log10 norms, decades) and the smallest norm reached:",
        markdown_table(["H", "reset after", "reset before", "min log10 norm"], agreement),
    ])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test suite)")
    parser.add_argument("--out", default="results/bench", help="output directory (default: results/bench)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 9, quick 2)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 9)
    sizes = QUICK_HIDDEN_SIZES if args.quick else HIDDEN_SIZES
    T, V = (QUICK_SEQ_LEN, QUICK_VARIANTS) if args.quick else (SEQ_LEN, VARIANTS)
    metadata = run_metadata()
    matmul = measure_matmul_rate(size=512 if args.quick else 2048)
    cases = [run_case(H, T, V, repeats, matmul["flops_per_s"]) for H in sizes]
    record = {"metadata": metadata, "repeats": repeats, "matmul_rate": matmul, "cases": cases,
              "load_average_1min_end": os.getloadavg()[0]}
    json_path, md_path = write_results(args.out, "bench_gru", record, markdown_report(record))
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
